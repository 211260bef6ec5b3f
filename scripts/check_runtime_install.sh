#!/usr/bin/env bash
# The production install: `lesionlens[runtime]` alone in a fresh venv (no torch, timm, zennit),
# then `lesionlens predict` on a model exported with the full install. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/lesionlens synth "$WORK/data" --n 24 --size 48 --quiet
.venv/bin/python -c "import sys; from lesionlens.training.rundir import random_run; random_run(sys.argv[1], 'resnet50', size=32)" "$WORK/run"
.venv/bin/lesionlens export "$WORK/run" --out "$WORK/onnx" 2>/dev/null
"${PYTHON:-python3}" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q ".[runtime]"
"$WORK/venv/bin/python" - <<'PY'
import importlib.util
heavy = [m for m in ("torch", "timm", "zennit", "crp", "gradio") if importlib.util.find_spec(m)]
assert not heavy, f"the runtime extra installed {heavy}"
PY
"$WORK/venv/bin/lesionlens" predict "$WORK/onnx/model.onnx" "$WORK/data" --out "$WORK/predictions.csv" --quiet
rows=$(($(wc -l < "$WORK/predictions.csv") - 1))
[ "$rows" -eq 24 ] || { echo "runtime-only predict wrote $rows rows, expected 24" >&2; exit 1; }
echo "runtime-only install: predict classified $rows images without torch"
