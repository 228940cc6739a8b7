"""Can a model tell sham-edited normal scans from untouched ones? (docs/real-anatomy.md)

Lesions are synthesised into real scans with quilted fills, skull re-texturing and warps;
the normal class gets the same edits, lesion-free (:func:`onreal.sham`). If the edits left a
trace a network could see, a model could learn "edited means anomaly" instead of anatomy.
For scans of subjects the model never trained on, this takes each scan untouched and
sham-edited, extracts the model's pooled layer4 features (what its classifier reads), and
fits a logistic regression to tell the two apart, cross-validated by subject (5 folds).
AUROC near 0.5: the features carry no trace. As a check that the probe has power, the same
probe is run on untouched scans against the same scans with a lesion synthesised.

    python experiments/sham_check.py --model resources/models/demo/card.json \
        --images ../shared/hc18-train/images --index ../shared/hc18-train/index.csv \
        --subjects-mod 5 --n 150
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--subjects-mod", type=int, default=5, help="held-out: subject %% MOD == 0")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import cv2
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fetal_viewer.core.measure.head import find_head
    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.model.predictor import Predictor
    from fetal_viewer.core.phantoms.onreal import LESIONS, sham, synthesise

    with open(args.index, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["subject_prefix"]) % args.subjects_mod == 0]
    rng = np.random.default_rng(args.seed)
    rows = [rows[i] for i in rng.permutation(len(rows))[: args.n]]
    untouched, edited, lesion, groups = [], [], [], []
    for r in rows:
        g = cv2.imread(str(Path(args.images) / r["filename"]), cv2.IMREAD_GRAYSCALE)
        head = find_head(g)
        if head is None:
            continue
        untouched.append(g)
        edited.append(sham(g, head, rng, int(rng.choice((2, 3)))).image)
        lesion.append(synthesise(g, head, str(rng.choice(LESIONS)), rng).image)
        groups.append(r["subject_prefix"])
    pred = Predictor(load_checkpoint(args.model), backend="onnxruntime")
    pred.guard = None

    def feats(frames: list[np.ndarray]) -> np.ndarray:
        out = pred.predict(frames, with_features=True).features
        assert out is not None
        return out

    fu, fe, fl = feats(untouched), feats(edited), feats(lesion)
    g = np.array(groups)

    def probe(a: np.ndarray, b: np.ndarray) -> float:
        x = np.r_[a, b]
        y = np.r_[np.zeros(len(a)), np.ones(len(b))]
        gg = np.r_[g, g]
        scores = np.zeros(len(y))
        for tr, te in GroupKFold(5).split(x, y, gg):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            clf.fit(x[tr], y[tr])
            scores[te] = clf.predict_proba(x[te])[:, 1]
        return float(roc_auc_score(y, scores))

    result = {
        "model": args.model,
        "scans": len(untouched),
        "sham_vs_untouched_auroc": round(probe(fu, fe), 4),
        "lesion_vs_untouched_auroc": round(probe(fu, fl), 4),
        "called_normal": {
            "untouched": round(float((pred.predict(untouched).probs.argmax(1) == 0).mean()), 4),
            "sham": round(float((pred.predict(edited).probs.argmax(1) == 0).mean()), 4),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
