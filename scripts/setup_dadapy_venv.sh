#!/usr/bin/env bash
# Create the separate virtual environment DADApy needs (numpy<2, jax) for
# scripts/bench_idest.py and scripts/bench_idest_dadapy.py. Usage: scripts/setup_dadapy_venv.sh [DIR]
set -euo pipefail
VENV="${1:-/tmp/dadapy-venv}"
python -m venv "$VENV"
"$VENV/bin/pip" install --quiet "numpy<2" dadapy
"$VENV/bin/python" -c "import dadapy, numpy; print('dadapy ready in $VENV with numpy', numpy.__version__)"
