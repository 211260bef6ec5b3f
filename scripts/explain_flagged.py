"""Heatmaps for the first flagged cases of a predictions CSV (the main job's "explain flagged
cases" step): LRP and CRP for each, written as the `lesionlens explain` command writes them.

    .venv/bin/python scripts/explain_flagged.py RUN PREDICTIONS.csv OUT_DIR [--cases 3]

A case flagged for the positive class is explained for that class, even where another class is
likelier: the reader wants the evidence for the alarm. One process: torch and the explanation
libraries import once, not once per heatmap."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from lesionlens.explain.files import explain_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--methods", default="lrp,crp")
    args = parser.parse_args()

    positive = json.loads((args.run / "model.json").read_text()).get("positive_class")
    with args.predictions.open(newline="") as f:
        flagged = [row for row in csv.DictReader(f) if row["flagged"] == "1"][: args.cases]
    for row in flagged:
        image = Path(row["path"])
        target = positive if positive and "positive" in row["flag_reason"] else None
        for method in args.methods.split(","):
            png, summary = explain_file(args.run, image, method, target, args.out / f"{image.stem}.{method}.png",
                                        concepts=4)
            print(f"{method} for {summary['target_label']!r} ({row['flag_reason']}): {png}")
    print(f"{len(flagged)} flagged case(s) explained in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
