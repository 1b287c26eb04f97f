#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install Huoyan with its dev tools.
# torch is pinned to the CPU build 2.13.0; nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,backbones,edge]"
