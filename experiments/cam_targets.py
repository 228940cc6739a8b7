"""Pointing game of the stitched Grad-CAM with other class scores than the logit, for one center.

The product's Grad-CAM explains the true class's logit ``z_c``. A contrastive score explains
why the model chose ``c`` rather than another class (Prabhushankar et al. 2020): for this
network (global average pooling, one linear layer) Grad-CAM of any linear score ``w . z`` is
``relu((w @ W) . A)``, so every variant comes from the same ``layer4`` activations. This script
samples masked frames of one center (the same number per class, fixed seed), runs the four
shifted passes of ``gradcam-stitch`` once, and scores the stitched map of each score exactly as
``evaluate`` does (the maximum inside the mask; and within 15 px of it):

- ``logit``: ``z_c`` (the product's);
- ``vs-normal``: ``z_c - z_normal`` for the anomalies (``z_normal`` for normal frames);
- ``softmax``: ``p_c``, whose gradient contrasts ``c`` with the classes the model weighs
  against it, ``sum_k p_k (z_c - z_k)``;
- ``vs-mean``: ``z_c`` minus the mean logit.

.venv/bin/python experiments/cam_targets.py --model resources/models/demo/card.json \\
    --manifest out/demo-phantoms/manifest.csv --center D --per-class 100
"""

from __future__ import annotations

import json

import numpy as np
from cam_layers import masked_sample, sample_arguments  # the same frames as cam_layers

from fetal_viewer.core.cam.gradcam import STITCH, STRIDE, frame_heatmap, shifted
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.predictor import Predictor, softmax
from fetal_viewer.core.training.metrics import POINTING_TOLERANCE_PX, pointing_distance

SCORES = ("logit", "vs-normal", "softmax", "vs-mean")


def score_weights(kind: str, w: np.ndarray, c: int, p: np.ndarray, normal: int) -> np.ndarray:
    """The ``layer4`` channel weights of score ``kind`` for true class ``c``."""
    if kind == "logit" or (kind == "vs-normal" and c == normal):
        out = w[c]
    elif kind == "vs-normal":
        out = w[c] - w[normal]
    elif kind == "softmax":
        others = [k for k in range(len(w)) if k != c]
        mix = p[others].astype(np.float64) / max(1e-12, float(p[others].sum()))
        out = w[c] - mix @ w[others]
    elif kind == "vs-mean":
        out = w[c] - w.mean(axis=0)
    else:
        raise ValueError(kind)
    return np.asarray(out, dtype=np.float32)


def main() -> None:
    args = sample_arguments(__doc__).parse_args()

    loaded = load_checkpoint(args.model)
    predictor = Predictor(loaded, backend="torch")
    spec, classes = loaded.card.spec, list(loaded.card.classes)
    sample, pre, masks = masked_sample(args, classes, spec)
    x = np.stack([p.array for p in pre])
    black = -np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
    step = STRIDE // STITCH
    feats: dict[tuple[int, int], np.ndarray] = {}
    logits = []
    for a in range(STITCH):
        for b in range(STITCH):
            parts = []
            for s in range(0, len(x), 32):
                lg, f = predictor._forward(shifted(x[s : s + 32], a * step, b * step, black))
                parts.append(f)
                if a == b == 0:
                    logits.append(lg)
            feats[a, b] = np.concatenate(parts)
    probs = softmax(np.concatenate(logits))
    truth = np.array([classes.index(r.label) for r in sample])
    normal = classes.index("normal")
    side = feats[0, 0].shape[-1]
    print(f"{len(sample)} masked frames of center {args.center}, {args.per_class} per class")

    figures: dict[str, dict[str, float]] = {}
    for kind in SCORES:
        dist = []
        for i in range(len(sample)):
            w = score_weights(kind, predictor.fc_weight, int(truth[i]), probs[i], normal)
            cam = np.empty((side * STITCH, side * STITCH), np.float32)
            for (a, b), f in feats.items():
                cam[a::STITCH, b::STITCH] = np.maximum(np.einsum("k,khw->hw", w, f[i]), 0.0)
            dist.append(pointing_distance(frame_heatmap(cam, pre[i].geometry), masks[i]))
        d = np.array(dist)
        row = {"pointing_game": float(np.mean(d == 0))}
        row[f"pointing_game_{POINTING_TOLERANCE_PX}px"] = float(np.mean(d <= POINTING_TOLERANCE_PX))
        row |= {c: float(np.mean(d[truth == k] == 0)) for k, c in enumerate(classes)}
        figures[kind] = row
        per_class = ", ".join(f"{c} {row[c]:.2f}" for c in classes)
        print(f"{kind:10s} pointing {row['pointing_game']:.3f}  ({per_class})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
