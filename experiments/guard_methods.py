"""Which out-of-domain score should the domain guard use? Measured, not assumed.

For one model, extracts the pooled ``layer4`` features and the logits of
- its training frames (inner-train split of the training manifest: the statistics are fitted here),
- its inner-validation frames (the threshold is set here, at a percentile),
- in-domain test frames it never saw (e.g. unseen-seed phantoms),
- out-of-domain sets (real DICOM files without a fetal head, other real scans),
and scores each candidate: class-conditional Mahalanobis with a tied covariance (Lee et al.
2018), the same on L2-normalised features, k-nearest-neighbour distance on normalised
features (Sun et al. 2022), the energy score (Liu et al. 2020) and the max-softmax baseline.
Prints AUROC (in-domain test vs each out-of-domain set) and the share flagged at the 95th and
99th percentile of the validation scores. Run:

    python experiments/guard_methods.py --model resources/models/demo/card.json \
        --manifest out/demo-phantoms/manifest_ABC.csv --id out/unseen-phantoms/manifest.csv \
        --ood dicom:pydicom --ood hc18:../shared/hc18-train/images ...
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import warnings
from pathlib import Path

import numpy as np


def frames_of(spec: str, limit_per_file: int = 20) -> list[np.ndarray]:
    from fetal_viewer.core.io import read_frame

    warnings.simplefilter("ignore")
    if spec == "pydicom":
        import data_store
        import pydicom
        from pydicom.data import get_testdata_files

        root = os.path.dirname(data_store.__file__)
        files = sorted(
            set(glob.glob(root + "/**/*.dcm", recursive=True)) | set(get_testdata_files("*.dcm"))
        )
        out = []
        for f in files:
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
                if ds.get("Rows", 0) < 64 or ds.get("Columns", 0) < 64:
                    continue
                n = int(ds.get("NumberOfFrames", 1) or 1)
            except Exception:
                continue
            for i in range(min(n, limit_per_file)):
                try:
                    out.append(read_frame(f, i))
                except Exception:
                    break
        return out
    paths = sorted(p for p in Path(spec).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".dcm"})
    out = []
    for p in paths:
        with contextlib.suppress(Exception):
            out.append(read_frame(p, 0))
    return out


def manifest_frames(
    path: str, which: str = "all", limit: int = 0
) -> tuple[list[np.ndarray], list[str]]:
    from fetal_viewer.core.io import read_frame
    from fetal_viewer.core.model.labels import CLASSES
    from fetal_viewer.core.training.folds import inner_split
    from fetal_viewer.core.training.manifest import read_manifest

    m = read_manifest(path, CLASSES)
    idx = np.arange(len(m.records))
    if which != "all":
        tr, va = inner_split(m.records, idx, 0.2, 0)
        idx = tr if which == "train" else va
    if limit and len(idx) > limit:
        idx = np.sort(np.random.default_rng(0).choice(idx, limit, replace=False))
    recs = [m.records[i] for i in idx]

    class Lazy:
        def __len__(self):
            return len(recs)

        def __getitem__(self, i):
            return read_frame(recs[i].path, recs[i].frame)

    return Lazy(), [r.label for r in recs]


def features(predictor, frames, batch=32):
    from fetal_viewer.core.model.preprocess import preprocess

    logits, pooled = [], []
    for s in range(0, len(frames), batch):
        x = np.stack(
            [
                preprocess(frames[i], predictor.spec).array
                for i in range(s, min(len(frames), s + batch))
            ]
        )
        lg, ft = predictor._forward(x)
        logits.append(lg)
        # mean (what the classifier reads), spatial std and max of the layer4 map
        pooled.append(
            np.concatenate([ft.mean(axis=(2, 3)), ft.std(axis=(2, 3)), ft.max(axis=(2, 3))], 1)
        )
    return np.concatenate(logits), np.concatenate(pooled)


def auroc(id_scores, ood_scores):
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    return float(roc_auc_score(y, np.r_[id_scores, ood_scores]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True, help="the model's training manifest")
    ap.add_argument("--id", required=True, help="in-domain frames the model never saw (manifest)")
    ap.add_argument("--ood", action="append", default=[], help="NAME:SPEC (folder or 'pydicom')")
    ap.add_argument("--train-limit", type=int, default=6000)
    ap.add_argument("--out", default="out/guard-methods.json")
    args = ap.parse_args()

    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.model.predictor import Predictor

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pred = Predictor(load_checkpoint(args.model), backend="onnxruntime")
    classes = list(pred.classes)
    tr_f, tr_y = manifest_frames(args.manifest, "train", args.train_limit)
    _, tr_p = features(pred, tr_f)
    del tr_f
    va_f, _ = manifest_frames(args.manifest, "val", 3000)
    va_l, va_p = features(pred, va_f)
    del va_f
    id_f, _ = manifest_frames(args.id)
    id_l, id_p = features(pred, id_f)
    sets = {}
    for spec in args.ood:
        name, _, where = spec.partition(":")
        fr = frames_of(where)
        sets[name] = features(pred, fr)
        print(f"{name}: {len(fr)} frames")

    y = np.array([classes.index(v) for v in tr_y])
    np.savez_compressed(
        Path(args.out).with_suffix(".npz"),
        y=y,
        tr_p=tr_p,
        va_l=va_l,
        va_p=va_p,
        id_l=id_l,
        id_p=id_p,
        **{f"{k}_l": v[0] for k, v in sets.items()},
        **{f"{k}_p": v[1] for k, v in sets.items()},
    )
    d = tr_p.shape[1] // 3
    variants = {"mean": slice(0, d), "mean+std": slice(0, 2 * d), "all": slice(0, 3 * d)}
    tr_all, va_all, id_all = tr_p, va_p, id_p
    sets_all = dict(sets)
    for vname, sl in variants.items():
        tr_p, va_p, id_p = tr_all[:, sl], va_all[:, sl], id_all[:, sl]
        sets = {k: (v[0], v[1][:, sl]) for k, v in sets_all.items()}
        print("== features:", vname)
        score_all(classes, y, tr_p, va_l, va_p, id_l, id_p, sets)


def score_all(classes, y, tr_p, va_l, va_p, id_l, id_p, sets):

    def l2(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    def maha_fit(x):
        mu = np.stack([x[y == c].mean(0) for c in range(len(classes))])
        r = x - mu[y]
        cov = r.T @ r / len(x)
        cov += 1e-3 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        return mu, np.linalg.inv(cov)

    def maha_score(x, mu, prec):
        d = x[:, None, :] - mu[None]
        return np.einsum("ncd,de,nce->nc", d, prec, d).min(1)

    mu, prec = maha_fit(tr_p)
    mu2, prec2 = maha_fit(l2(tr_p))
    bank = l2(tr_p)

    def knn(x, k=10):
        sims = l2(x) @ bank.T
        return -np.sort(sims, axis=1)[:, -k]

    def energy(lg):
        m = lg.max(1, keepdims=True)
        return -(m[:, 0] + np.log(np.exp(lg - m).sum(1)))

    def msp(lg):
        e = np.exp(lg - lg.max(1, keepdims=True))
        return -(e / e.sum(1, keepdims=True)).max(1)

    methods = {
        "mahalanobis": lambda lg, p: maha_score(p, mu, prec),
        "mahalanobis-l2": lambda lg, p: maha_score(l2(p), mu2, prec2),
        "knn10": lambda lg, p: knn(p),
        "energy": lambda lg, p: energy(lg),
        "msp": lambda lg, p: msp(lg),
    }
    report = {}
    for name, fn in methods.items():
        v = fn(va_l, va_p)
        i = fn(id_l, id_p)
        row = {"id_test_auroc": {}, "flagged": {}}
        thr = {q: float(np.percentile(v, q)) for q in (95, 99, 99.5)}
        row["flagged"]["id_test"] = {q: float((i > t).mean()) for q, t in thr.items()}
        for sname, (lg, p) in sets.items():
            o = fn(lg, p)
            row["id_test_auroc"][sname] = auroc(i, o)
            row["flagged"][sname] = {q: float((o > t).mean()) for q, t in thr.items()}
        report[name] = row
        print(name, json.dumps(row))
    return report


if __name__ == "__main__":
    main()
