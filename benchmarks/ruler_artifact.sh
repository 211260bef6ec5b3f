#!/usr/bin/env bash
# Issue 18's second artifact on the main job's settings: a ruler planted on 30% of the training
# melanomas (the main job plants the ring), ResNet50 trained at 96 px on 800 images, the dataset
# audit's finding on the metadata column `artifact`, `revise --artifact artifact=ruler` (its
# default method: augment), and the audit before and after on the main job's held-out photos.
#
#   benchmarks/ruler_artifact.sh [OUT]    (default out/; needs OUT/synth-heldout from a main job)
#
# Writes OUT/ruler/ and prints the comparison rows and the held-out metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
LL=.venv/bin/lesionlens
R="$OUT/ruler"
rm -rf "$R" && mkdir -p "$R"
$LL synth "$R/train" --n 800 --size 128 --seed 0 --artifact ruler --artifact-rate 0.3 --quiet
SECONDS=0
$LL train --data "$R/train/metadata.csv" --arch resnet50 --out "$R/run" --image-size 96 --quiet
echo "train $SECONDS s"
$LL evaluate "$R/run" --data "$OUT/synth-heldout" --out "$R/heldout-metrics.json" --quiet
# exit 1 only for unreadable images (none here); the audit's findings are what is printed below
$LL audit --data "$R/train" --run "$R/run" --heldout "$OUT/synth-heldout" --out "$R/run/audit" --n 300 --quiet
SECONDS=0
$LL revise "$R/run" --data "$R/train" --out "$R/revised" --artifact artifact=ruler --quiet
echo "revise $SECONDS s"
$LL evaluate "$R/revised" --data "$OUT/synth-heldout" --out "$R/revised-heldout-metrics.json" --quiet
$LL audit --data "$R/train" --run "$R/revised" --compare "$R/run" --heldout "$OUT/synth-heldout" \
  --out "$R/revised/audit" --n 300 --quiet
.venv/bin/python - "$R" <<'PY'
import json, sys
from pathlib import Path
r = Path(sys.argv[1])
data = json.loads((r / "run" / "audit" / "audit.json").read_text())
for f in data["findings"]:
    if f["kind"] == "metadata_association":
        print(f"data audit: {f['subject']}: flagged={f['flagged']} effect={f['effect_size']}")
for row in json.loads((r / "revised" / "audit" / "audit.json").read_text())["comparison"]["rows"]:
    print(f"{row['kind']}: {row['subject']}: {row['before']} -> {row['after']}")
for name in ("heldout-metrics.json", "revised-heldout-metrics.json"):
    m = json.loads((r / name).read_text())
    auc = m.get("positive_roc_auc", m.get("roc_auc"))
    print(f"{name}: ROC-AUC {auc:.3f}, sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f}")
PY
