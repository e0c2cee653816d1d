"""geostudy: how the token cloud of GPT-2 changes shape, layer by layer and sub-layer by sub-layer.

It joins `gpt2np` (the model's intermediate tensors) and `idest` (intrinsic-dimension
estimators): for each prompt of a corpus, and for the pooled corpus, at every chosen site in
depth order, it measures the intrinsic dimension (TwoNN, MLE, GRIDE, PCA), norms, cosines and
the log-volume of the token cloud, and reads the residual stream through the logit lens; then
writes tidy tables (CSV + JSON), plots and a self-contained HTML report.

    import geostudy
    run = geostudy.run_study("gpt2")                     # the shipped corpus, everything
    run = geostudy.run_study("path/to/model_dir", corpus="my_prompts.jsonl", out="runs/mine",
                             sites=["blocks.*.hook_resid_post"], estimators=["twonn", "pca"],
                             drop_positions=[0])
    # run / "tables" / "results.csv": prompt_id, genre, topic, site, ..., quantity, param, value, error
    # run / "report.html": open it in a browser

    # the corpus-scale protocol: one point per sequence (the last token's residual stream, or
    # the mean over the sequence), TwoNN/MLE/GRIDE/PCA on disjoint partitions, mean +- std
    run = geostudy.run_scale_study("gpt2", corpus="docs.jsonl", represent="last", window=20,
                                   partitions=5, partition_size=10_000, untrained=True)

    corpus = geostudy.load_corpus()                      # the shipped 30 prompts (or a path)
    geostudy.resolve_sites("default", model.cfg)          # the sites, in depth order, with labels

Bad input (missing or malformed corpus, empty or too long text, unknown site, unwritable output
folder, model or tokenizer that cannot be loaded) raises `geostudy.StudyError` before any work.
The command line: ``geostudy`` (or ``python -m geostudy``, or ``python scripts/run_prerun.py``).

The package's folders, lowest layer first (each imports only from the layers before it; the
test tests/test_study_architecture.py checks it):

    errors.py      StudyError
    runtime/       threads, forked helpers (beside, balance), malloc settings, progress: no science
    rundir/        the run folder: layout, checks, lock, atomic writes, markers, manifest, disk space
    corpus.py, sites.py   the inputs: prompts, and which tensors are analysed
    measure/       geometry, logit lens, estimators, and analyse_cloud joining them
    store/         the activation store (one safetensors file per prompt)
    options.py     every option parsed and checked once
    plan.py        StudyPlan and prepare_study: everything loaded once, before any work
    outputs/       tables, the figure list, drawing, the report
    pipeline/      the executor interface, per-prompt and pooled tasks, resume checks, execute
    scale/         the corpus-scale protocol, in the same layers: sources and sequences (inputs),
                   partitions, analyses, compare (measure), forward and the Zarr store (store),
                   options, plan, tables (outputs), tasks and study (pipeline)
    cli.py         the command line
"""

from .corpus import SHIPPED_CORPUS, Corpus, Prompt, load_corpus
from .errors import StudyError
from .measure.estimators import ESTIMATORS, EstimatorSettings
from .outputs import tables
from .pipeline.study import execute, run_study
from .plan import StudyPlan, prepare_study
from .scale.plan import ScalePlan, prepare_scale_study
from .scale.study import execute_scale, run_scale_study
from .sites import Site, default_site_names, resolve_sites

__version__ = "0.1.0"

__all__ = [
    "run_study", "prepare_study", "execute", "StudyPlan", "load_corpus", "Corpus", "Prompt",
    "SHIPPED_CORPUS", "StudyError", "ESTIMATORS", "EstimatorSettings", "Site", "resolve_sites",
    "default_site_names", "tables", "run_scale_study", "prepare_scale_study", "execute_scale", "ScalePlan",
]
