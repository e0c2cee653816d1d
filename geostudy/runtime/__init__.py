"""Runtime plumbing, away from the science: thread and BLAS settings (threads.py), forked
helpers (beside.py) and the sharing of jobs with one (balance.py), malloc settings (malloc.py),
progress lines and stage timers (progress.py). Nothing here changes a number."""
