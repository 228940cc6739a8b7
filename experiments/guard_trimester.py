"""Which in-domain frames the domain guard withholds by trimester, and whether weighting the
first-trimester scans in its fit helps (docs/real-anatomy.md). Reads the feature cache of
``guard_probe.py`` (run with ``--id hc18:out/real-check/hc18_heldout.csv``, ``--id synth:...``
and ``--ood dicom:...``) and HC18's index for the trimesters::

    python experiments/guard_trimester.py --cache out/guard-probe.npz \\
        --manifest out/demo-real-train.csv --heldout out/real-check/hc18_heldout.csv \\
        --index ../shared/hc18-train/index.csv
"""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np

from fetal_viewer.core.model.guard import DomainGuard, fit_guard
from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.training.folds import inner_split
from fetal_viewer.core.training.manifest import read_manifest

EARLY_WEEKS = 14.0  # HC18's first trimester


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="out/guard-probe.npz")
    ap.add_argument("--manifest", required=True, help="the model's training manifest")
    ap.add_argument("--heldout", required=True, help="the held-out HC18 manifest (id_hc18)")
    ap.add_argument("--index", required=True, help="HC18's index.csv")
    args = ap.parse_args()
    d = np.load(args.cache)
    m = read_manifest(args.manifest, CLASSES)
    # the rows guard_probe.py took (its manifest_frames: inner split, 6,000 training rows)
    tr, va = inner_split(m.records, np.arange(len(m.records)), 0.2, 0)
    tr = np.sort(np.random.default_rng(0).choice(tr, len(d["train"]), replace=False))
    assert len(va) == len(d["val"]), "the cache was made from another manifest"

    def early(rows: np.ndarray) -> np.ndarray:
        recs = [m.records[i] for i in rows]
        return np.array([r.center == "H" and (r.ga_weeks or 99.0) < EARLY_WEEKS for r in recs])

    tr_e, va_e = early(tr), early(va)
    with open(args.index, newline="") as fh:
        index = {r["filename"]: r["trimester"] for r in csv.DictReader(fh)}
    with open(args.heldout, newline="") as fh:
        tri = np.array([index[r["path"].rsplit("/", 1)[-1]] for r in csv.DictReader(fh)])
    feats = {
        k: d[k][:, :512] for k in ("train", "val", "outliers", "id_hc18", "id_synth", "ood_dicom")
    }

    def report(name: str, g: DomainGuard) -> None:
        def flagged(x: np.ndarray) -> np.ndarray:
            return ~g.in_domain(g.score(x))

        h = flagged(feats["id_hc18"])
        out = {f"hc18 trimester {t}": h[tri == t].mean() for t in "123"}
        out |= {
            "val first trimester": flagged(feats["val"])[va_e].mean(),
            "val other": flagged(feats["val"])[~va_e].mean(),
            "pydicom-data": flagged(feats["ood_dicom"]).mean(),
            "synthesised lesions": flagged(feats["id_synth"]).mean(),
        }
        print(name, json.dumps({k: round(float(v), 3) for k, v in out.items()}), flush=True)

    def fit(k: int, in_threshold: bool, strata: bool = False) -> DomainGuard:
        y = d["train_y"] + (len(CLASSES) * tr_e if strata else 0)
        x = np.concatenate([feats["train"]] + [feats["train"][tr_e]] * (k - 1))
        y = np.concatenate([y] + [y[tr_e]] * (k - 1))
        v = feats["val"]
        if in_threshold:
            v = np.concatenate([v] + [v[va_e]] * (k - 1))
        return fit_guard(x, y, v, 97, outliers=feats["outliers"])

    report("as shipped", fit(1, False))
    for k in (3, 6):
        report(f"first trimester x{k} in the fit", fit(k, False))
        report(f"first trimester x{k} in the fit and the threshold", fit(k, True))
    report("one mean per class and trimester stratum", fit(1, False, strata=True))
    g = fit(1, False)
    dist, z = g.parts(feats["val"])
    probe = 1.0 / (1.0 + np.exp(-np.asarray(z)))
    for name, sel in (("first trimester", va_e), ("other", ~va_e)):
        print(
            f"validation {name}: median distance {np.median(dist[sel]):.1f}, "
            f"median probe probability {np.median(probe[sel]):.3f}"
        )


if __name__ == "__main__":
    main()
