"""The hand-made frame detector (audit/dark_field.py) against a learnt one (issue 18: "if a learnt
detector beats the hand-made one, use it; measure both").

    .venv/bin/python benchmarks/frame_detector.py [--train 1500] [--test 200]

The learnt detector: scikit-learn's HistGradientBoostingClassifier (tiny, torch-free at
inference) on a 16x16 grey thumbnail divided by the photo's central brightness (so skin tone
does not matter), plus the radial brightness profile; trained on the generator's photos with a
random frame style (positives) and with look-alikes or nothing (negatives), square and 4:3.

Measured, both detectors on the same images:
- per frame style and look-alike: recall / false-alarm rate on held-out generator photos;
- leave-one-style-out: the learnt detector retrained without one style, tested on that style
  (what happens with a device whose frame it never saw);
- the variants of tests/test_frame_detector.py painted by code neither detector was tuned on.
Also the time per image of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def features(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = grey.shape
    side = min(h, w)
    centre = grey[h // 2 - side // 4: h // 2 + side // 4, w // 2 - side // 4: w // 2 + side // 4]
    level = float(np.percentile(centre, 90)) + 1e-6
    thumb = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA) / level
    yy, xx = np.mgrid[0:h, 0:w]
    radius = np.hypot(xx + 0.5 - w / 2, yy + 0.5 - h / 2) / (side / 2)
    profile = [float(np.median(grey[(radius >= a) & (radius < a + 0.1)]) / level) if ((radius >= a) & (radius < a + 0.1)).any()
               else 1.0 for a in np.arange(0, 1.4, 0.1)]
    return np.concatenate([thumb.ravel(), profile]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=200)
    args = parser.parse_args()
    from sklearn.ensemble import HistGradientBoostingClassifier

    from lesionlens.data.dark_field import detect_dark_field
    from lesionlens.data.frames import FRAME_STYLES, LOOKALIKES
    from lesionlens.data.synth import sample_photo
    from test_frame_detector import UNTUNED_FRAMES, _lookalike, _variant

    aspects = [(1, 1), (4, 3)]

    def training_set(exclude: str = ""):
        styles = [s for s in FRAME_STYLES if s != exclude]
        x, y = [], []
        for i in range(args.train):
            aspect = aspects[(i // 2) % 2]  # both classes in both aspects
            if i % 2 == 0:
                rgb = sample_photo(i, 96, aspect, frame=styles[(i // 4) % len(styles)])[0]
                y.append(1)
            else:
                kinds = [*LOOKALIKES, ""]
                rgb = sample_photo(i, 96, aspect, lookalike=kinds[(i // 4) % len(kinds)])[0]
                y.append(0)
            x.append(features(rgb))
        return HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(np.stack(x), np.array(y))

    learnt = training_set()
    cases = [(f"style {s}", True, [sample_photo(90_000 + i, 96, aspects[i % 2], frame=s)[0] for i in range(args.test)])
             for s in FRAME_STYLES]
    cases += [(f"look-alike {k}", False, [sample_photo(95_000 + i, 96, aspects[i % 2], lookalike=k)[0]
                                          for i in range(args.test)]) for k in LOOKALIKES]
    cases += [(f"untuned {n}", True, [_variant(n, 30_000 + i)[0] for i in range(60)]) for n in UNTUNED_FRAMES]
    cases += [(f"untuned {n}", False, [_lookalike(n, 40_000 + i) for i in range(60)])
              for n in ("pillarbox", "sleeve", "strong_vignetting", "dark_lesion_at_edge")]
    print(f"{'images':34s} {'hand-made':>10s} {'learnt':>10s}   (share called a frame)")
    hand_time = learnt_time = 0.0
    for name, positive, images in cases:
        start = time.perf_counter()
        hand = np.mean([detect_dark_field(rgb).is_ring for rgb in images])
        hand_time += time.perf_counter() - start
        start = time.perf_counter()
        learnt_hits = np.mean(learnt.predict(np.stack([features(rgb) for rgb in images])) == 1)
        learnt_time += time.perf_counter() - start
        print(f"{name:34s} {100 * hand:9.1f}% {100 * learnt_hits:9.1f}%   ({'frames' if positive else 'not frames'})")
    n = sum(len(images) for _, _, images in cases)
    print(f"time per image: hand-made {1000 * hand_time / n:.2f} ms, learnt {1000 * learnt_time / n:.2f} ms "
          f"(ratio {learnt_time / hand_time:.2f})")
    print("leave-one-style-out (learnt, retrained without the style; hand-made for reference):")
    for style in FRAME_STYLES:
        model = training_set(exclude=style)
        images = [sample_photo(90_000 + i, 96, aspects[i % 2], frame=style)[0] for i in range(args.test)]
        recall = np.mean(model.predict(np.stack([features(rgb) for rgb in images])) == 1)
        hand = np.mean([detect_dark_field(rgb).is_ring for rgb in images])
        print(f"  without {style:8s}: learnt recall {100 * recall:5.1f}%, hand-made {100 * hand:5.1f}%")


if __name__ == "__main__":
    main()
