"""The corpus-scale protocol (`--represent last|mean`): a streamed corpus cut into sequences, one
point per sequence (its last token or its mean), activations in a chunked store, intrinsic
dimension on disjoint partitions with error bars, layers compared by neighbourhood overlap and
CKA, and an untrained control. The token study (`--represent tokens`) is geostudy/pipeline/."""
