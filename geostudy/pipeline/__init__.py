"""The pipeline: the study's stages in order (study.py), the per-prompt tasks (prompts.py), the
pooled-corpus tasks (pooled.py), what a resumed run can skip (resume.py), all run through the
small executor interface of executor.py."""
