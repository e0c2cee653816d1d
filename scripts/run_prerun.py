#!/usr/bin/env python
"""The geometry study of GPT-2's token clouds, end to end: the command line of geostudy/cli.py
(the same as the `geostudy` console script and `python -m geostudy`).

    python scripts/run_prerun.py                       # GPT-2 small, the shipped corpus, everything
    python scripts/run_prerun.py --model path/to/model_dir --corpus prompts.jsonl --out runs/mine

Writes activations, tables (CSV + JSON), plots and report.html into one run folder (default:
runs/<model>-<corpus>-<hash of the options>). Started again with the same options, an
interrupted run resumes where it stopped, after checking the checksums of what it finished.
One run at a time per folder: a second one exits 2 at once, naming the first. Bad input, a busy
folder and a full disk exit 2 with one line saying what is wrong. Run it from the repository
root with PYTHONPATH=. or after `pip install -e .`.
"""

import sys

try:
    from geostudy.cli import main
except ModuleNotFoundError as err:  # run from a checkout without PYTHONPATH or an install
    if err.name != "geostudy":
        raise
    sys.exit("error: the geostudy package cannot be imported: run `pip install -e .` in the repository, or run "
             "this script with PYTHONPATH set to the repository, or run `python -m geostudy` from the repository root")

if __name__ == "__main__":
    sys.exit(main())
