#!/usr/bin/env bash
# Set up, then run the main job on embedded defaults: generate the sample line, train,
# inspect, print a summary and where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/huoyan demo --out "${1:-huoyan-demo}"
