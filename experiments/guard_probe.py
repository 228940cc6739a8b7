"""The domain guard's outlier probe: which synthetic outliers it needs, and what its threshold
rule costs. Measured, not assumed (docs/domain-guard.md).

For one model, extracts the pooled ``layer4`` features of
- its training frames (inner-train split of its training manifest; ``--train-limit`` of them),
- its inner-validation frames (the thresholds are set here; their center and class are kept),
- the synthetic outliers of each kind (:mod:`fetal_viewer.core.phantoms.outliers`),
- held-out in-domain frames (``--id NAME:MANIFEST``, e.g. unseen HC18 subjects, lesions
  synthesised into them) and foreign frames (``--ood NAME:FOLDER``, e.g. pydicom-data),
caches them in ``--out`` (.npz) and reports, for the guard as ``fit_guard`` fits it:
1. every set's share flagged with each kind of outlier left out (does the probe generalise
   to a kind it never saw?);
2. the share flagged by the distance and the probe read apart (either against its own 99th
   percentile) and together (the joint score, at the 96th to 99th percentile).

    python experiments/guard_probe.py --model resources/models/demo/card.json \\
        --manifest out/demo-real-train.csv --id hc18:out/real-check/hc18_heldout.csv \\
        --id synth:out/hc18-synth/manifest_heldout.csv --ood dicom:$(python -c \\
        'import data_store, os; print(os.path.dirname(data_store.__file__))')/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from guard_methods import features, manifest_frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True, help="the model's training manifest")
    ap.add_argument("--id", action="append", default=[], help="NAME:MANIFEST, in domain")
    ap.add_argument("--ood", action="append", default=[], help="NAME:FOLDER, out of domain")
    ap.add_argument("--train-limit", type=int, default=6000)
    ap.add_argument("--per-kind", type=int, default=250)
    ap.add_argument("--out", default="out/guard-probe.npz")
    args = ap.parse_args()

    cache = Path(args.out)
    if not cache.exists():
        extract(args, cache)
    report(np.load(cache))


def extract(args: argparse.Namespace, cache: Path) -> None:
    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.model.labels import CLASSES
    from fetal_viewer.core.model.predictor import Predictor
    from fetal_viewer.core.phantoms.outliers import KINDS, SyntheticOutliers
    from fetal_viewer.core.training.folds import inner_split
    from fetal_viewer.core.training.guard_fit import PathFrames
    from fetal_viewer.core.training.manifest import read_manifest

    pred = Predictor(load_checkpoint(args.model), backend="onnxruntime")
    arrays: dict[str, np.ndarray] = {}
    tr_f, tr_y = manifest_frames(args.manifest, "train", args.train_limit)
    arrays["train"] = features(pred, tr_f)[1][:, :512]
    arrays["train_y"] = np.array([CLASSES.index(v) for v in tr_y])
    va_f, _ = manifest_frames(args.manifest, "val", 3000)
    arrays["val"] = features(pred, va_f)[1][:, :512]
    # the same rows manifest_frames took, for their centers and classes
    m = read_manifest(args.manifest, CLASSES)
    _, va = inner_split(m.records, np.arange(len(m.records)), 0.2, 0)
    if len(va) > 3000:
        va = np.sort(np.random.default_rng(0).choice(va, 3000, replace=False))
    arrays["val_center"] = np.array([m.records[i].center for i in va])
    arrays["val_label"] = np.array([m.records[i].label for i in va])
    n = args.per_kind * len(KINDS)
    outliers = SyntheticOutliers(tr_f, n, seed=1)
    feats = features(pred, outliers)[1][:, :512]
    arrays["outliers"] = feats
    arrays["outlier_kind"] = np.array([KINDS[i % len(KINDS)] for i in range(n)])
    for spec in args.id:
        name, _, path = spec.partition(":")
        frames, labels = manifest_frames(path)
        arrays[f"id_{name}"] = features(pred, frames)[1][:, :512]
        arrays[f"id_{name}_label"] = np.array(labels)
    for spec in args.ood:
        name, _, path = spec.partition(":")
        arrays[f"ood_{name}"] = features(pred, PathFrames([path]))[1][:, :512]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **arrays)


def report(d: np.lib.npyio.NpzFile) -> None:
    from fetal_viewer.core.model.guard import BACKSTOP_PERCENTILE, DEFAULT_PERCENTILE, fit_guard

    sets = {k: d[k] for k in d.files if k.startswith(("id_", "ood_")) and d[k].ndim == 2}
    kinds = d["outlier_kind"]

    def flagged(hit) -> dict[str, float]:  # type: ignore[no-untyped-def]
        out = {k: round(float(hit(v).mean()), 3) for k, v in sets.items()}
        for k in sets:
            if f"{k}_label" in d.files:
                lab = d[f"{k}_label"]
                h = hit(sets[k])
                out |= {f"{k}:{c}": round(float(h[lab == c].mean()), 3) for c in np.unique(lab)}
        out["validation"] = round(float(hit(d["val"]).mean()), 3)
        return out

    def of(guard):  # type: ignore[no-untyped-def]
        return lambda x: ~guard.in_domain(guard.score(x))

    distance_only = fit_guard(d["train"], d["train_y"], d["val"], 99)
    print("distance alone, 99th:", json.dumps(flagged(of(distance_only))))
    # the rule shipped before the joint score: either part against its own 99th percentile
    full = fit_guard(d["train"], d["train_y"], d["val"], 99, outliers=d["outliers"])
    dist, odds = full.parts(d["val"])
    assert odds is not None
    t_d, t_z = np.percentile(dist, 99), np.percentile(odds, 99)

    def either(x):  # type: ignore[no-untyped-def]
        dx, zx = full.parts(x)
        return (dx > t_d) | (zx > t_z)

    print("distance or probe, each at its 99th:", json.dumps(flagged(either)))
    for pct in (99.0, 98.0, 97.5, 97.0, 96.0):
        g = fit_guard(d["train"], d["train_y"], d["val"], pct, outliers=d["outliers"])
        print(
            f"joint at the {pct:g}th, backstop at the {max(pct, BACKSTOP_PERCENTILE):g}th:",
            json.dumps(flagged(of(g))),
        )
    pct = DEFAULT_PERCENTILE
    for kind in np.unique(kinds):
        g = fit_guard(
            d["train"], d["train_y"], d["val"], pct, outliers=d["outliers"][kinds != kind]
        )
        left_out = d["outliers"][kinds == kind]
        share = float((~g.in_domain(g.score(left_out))).mean())
        print(f"without {kind}: {kind} flagged {share:.3f};", json.dumps(flagged(of(g))))


if __name__ == "__main__":
    main()
