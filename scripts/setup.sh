#!/usr/bin/env bash
# Create .venv and install lesionlens with every extra. Idempotent: a second run is quick.
# torch/torchvision are pinned to the releases this project is tested with (<= 2.14.1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, on its own line: pip takes these two from the local wheel cache when present.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[dev]"
# Quantus (explain-eval's localisation metrics) without its opencv-python requirement: see
# pyproject.toml's [explain] extra; its other dependencies come with that extra.
.venv/bin/python -m pip install -q --no-deps "quantus==0.6.0"
