"""Where a set of real images falls for a model's domain guard, against the lesions synthesised
into HC18 scans and each kind of synthetic outlier (docs/real-anatomy.md, candidate 12).

For each set: the median distance (as a share of the backstop), the probe's median outlier
probability and the share withheld; then the direction in which each real set's mean pooled
feature lies away from the synthesised heads', as a cosine with each outlier kind's:

    python experiments/guard_shift.py resources/models/demo/card.json INDEX.csv out/hc18-synth

INDEX.csv is a real collection's index (``path``, ``label``; experiments/real_collection.py).
"""

from __future__ import annotations

import argparse
import csv
import random

import numpy as np

from fetal_viewer.core.io import read_frame
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.guard import _sigmoid, _unit
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.core.phantoms.outliers import KINDS, SyntheticOutliers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("card")
    ap.add_argument("index", help="a real collection's index.csv (path, label)")
    ap.add_argument("synth", help="a phantoms --backgrounds folder")
    ap.add_argument("--per-set", type=int, default=150)
    args = ap.parse_args()
    loaded = load_checkpoint(args.card)
    guard = loaded.guard
    assert guard is not None and guard.probe is not None, "the card has no guard with a probe"
    predictor = Predictor(loaded, backend="onnxruntime")
    predictor.guard = None
    predictor.second_look = False
    classes = loaded.card.classes
    rng = random.Random(0)

    def sample(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
        return rows if len(rows) <= n else rng.sample(rows, n)

    with open(args.index, newline="") as fh:
        real = list(csv.DictReader(fh))
    sets: dict[str, list[np.ndarray]] = {}
    for label in ("encephalocele", "normal", "other-anomaly"):
        rows = sample([r for r in real if r["label"] == label], args.per_set)
        sets[f"real {label}"] = [read_frame(r["path"], 0) for r in rows]
    with open(f"{args.synth}/manifest.csv", newline="") as fh:
        synth = list(csv.DictReader(fh))
    for c in classes:
        rows = sample([r for r in synth if r["label"] == c], 80)
        sets[f"synth {c}"] = [
            read_frame(f"{args.synth}/{r['path']}", int(r["frame"] or 0)) for r in rows
        ]
    outliers = SyntheticOutliers(sets["synth normal"], 25 * len(KINDS), seed=0)
    for k, kind in enumerate(KINDS):
        sets[f"outlier {kind}"] = [outliers[i] for i in range(k, len(outliers), len(KINDS))]

    feats = {}
    for name, frames in sets.items():
        pred = predictor.predict(frames, with_features=True)
        assert pred.features is not None
        feats[name] = pred.features
    print(f"{'set':28s}   n  distance/backstop  p(outlier)  withheld")
    for name, f in feats.items():
        d, lo = guard.parts(f)
        assert lo is not None
        held = float(np.mean(guard.score(f) > guard.threshold))
        print(
            f"{name:28s} {len(f):3d}  {np.median(d) / guard.distance_threshold:17.2f}"
            f"  {np.median(_sigmoid(lo)):10.2f}  {held:8.2f}"
        )
    heads = np.concatenate([_unit(feats[f"synth {c}"].astype(np.float64)) for c in classes]).mean(0)

    def shift(name: str) -> np.ndarray:
        v = _unit(feats[name].astype(np.float64)).mean(0) - heads
        return v / np.linalg.norm(v)

    for name in (n for n in feats if n.startswith("real")):
        cos = {k: float(shift(name) @ shift(f"outlier {k}")) for k in KINDS}
        ranked = sorted(cos.items(), key=lambda t: -t[1])
        print(f"{name}: shift from the synthesised heads, cosine with each outlier kind's:")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in ranked))


if __name__ == "__main__":
    main()
