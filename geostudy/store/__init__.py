"""The activation store: one safetensors file per prompt (activations.py). A store for
corpus-scale runs (chunked, e.g. Zarr) would sit beside it with the same save/load functions."""
