#!/usr/bin/env bash
# The main job, end to end on built-in synthetic data:
#   synthesise a training set and a separate held-out set, train a small model, evaluate it,
#   export it to ONNX (validated against PyTorch), and predict the held-out images with the
#   torch-free runtime.
# Everything lands in ${OUT:-out/} . ~5 minutes on a 2-core CPU after setup.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=${OUT:-out}
ARCH=${ARCH:-resnet50}
rm -rf "$OUT"
LL=.venv/bin/lesionlens
$LL synth "$OUT/synth-train" --n 1000 --size 96 --seed 0 --artifact ring --artifact-rate 0.3 --quiet
$LL synth "$OUT/synth-heldout" --n 300 --size 96 --seed 1 --quiet
$LL train --data "$OUT/synth-train/metadata.csv" --arch "$ARCH" --out "$OUT/run" \
  --epochs 10 --image-size 64 --batch-size 32 --lr 1e-3 --quiet
$LL evaluate "$OUT/run" --data "$OUT/synth-heldout" --out "$OUT/heldout-metrics.json" --quiet
$LL export "$OUT/run" --out "$OUT/onnx" --uint8-input --int8
# predict exits 1 when an input is unreadable; the synthetic set has none, so any failure is real
$LL predict "$OUT/onnx/model.onnx" "$OUT/synth-heldout" --out "$OUT/predictions.csv" --quiet
echo "main job done: run in $OUT/run, held-out metrics in $OUT/heldout-metrics.json,"
echo "  ONNX models in $OUT/onnx (validation.json), predictions in $OUT/predictions.csv"
