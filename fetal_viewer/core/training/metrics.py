"""Classification and localisation metrics, computed with numpy/scipy only.

Conventions follow scikit-learn (its definitions are what reviewers expect, and the tests
check agreement on fixed inputs): ROC AUC is the trapezoid under the ROC curve (equal to the
Mann-Whitney statistic with ties counted half), average precision is the step-wise sum
``sum((R_n - R_{n-1}) P_n)``, micro AUROC pools the one-vs-rest decisions, macro AUROC is the
unweighted mean of the per-class values. Confidence intervals are percentile intervals from
a bootstrap over patients (a patient's frames move together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from fetal_viewer.core.cam.gradcam import is_empty
from fetal_viewer.core.model.aggregation import DEFAULT_RULE, aggregate

FloatArray = np.ndarray


# --------------------------------------------------------------------------- confusion


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are the reference class, columns the prediction."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def per_class_stats(cm: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Sensitivity, specificity, PPV, NPV and F1 of each class, one-vs-rest."""
    total = cm.sum()
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(classes):
        tp = float(cm[k, k])
        fn = float(cm[k].sum() - tp)
        fp = float(cm[:, k].sum() - tp)
        tn = float(total - tp - fn - fp)
        sens = _ratio(tp, tp + fn)
        ppv = _ratio(tp, tp + fp)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        out[name] = {
            "sensitivity": sens,
            "specificity": _ratio(tn, tn + fp),
            "ppv": ppv,
            "npv": _ratio(tn, tn + fn),
            "f1": f1,
            "support": tp + fn,
        }
    return out


# --------------------------------------------------------------------------- curves


def _binary_clf_curve(
    y: np.ndarray, score: np.ndarray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    score, y = score[order], y[order]
    distinct = np.where(np.diff(score))[0]
    ends = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[ends]
    fps = 1 + ends - tps
    return fps, tps, score[ends]


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(fpr, tpr, thresholds) at every distinct score, starting at (0, 0) with threshold inf."""
    fps, tps, thr = _binary_clf_curve(y, score)
    fps = np.r_[0.0, fps]
    tps = np.r_[0.0, tps]
    thr = np.r_[np.inf, thr]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, thr


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (nan when only one class is present)."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall_curve(
    y: np.ndarray, score: np.ndarray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(precision, recall, thresholds) with recall decreasing, ending at (1, 0)."""
    fps, tps, thr = _binary_clf_curve(y, score)
    ps = tps + fps
    precision = np.divide(tps, ps, out=np.zeros_like(tps), where=ps != 0)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    if not np.asarray(y).astype(bool).any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, score)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y), n_classes), dtype=np.int64)
    out[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1
    return out


def auroc_summary(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Per-class (``auroc/<k>``), micro and macro AUROC of a multi-class problem."""
    n_classes = probs.shape[1]
    onehot = one_hot(y, n_classes)
    per = [roc_auc(onehot[:, k], probs[:, k]) for k in range(n_classes)]
    out = {f"auroc/{k}": v for k, v in enumerate(per)}
    out["micro_auroc"] = roc_auc(onehot.ravel(), probs.ravel())
    valid = [v for v in per if not np.isnan(v)]
    out["macro_auroc"] = float(np.mean(valid)) if len(valid) == n_classes else float("nan")
    return out


@dataclass(frozen=True)
class Curves:
    """ROC and PR curves per class and averaged (micro, macro) for plotting and JSON."""

    roc: dict[str, tuple[FloatArray, FloatArray]]  # name -> (fpr, tpr)
    pr: dict[str, tuple[FloatArray, FloatArray]]  # name -> (recall, precision)
    auroc: dict[str, float]
    ap: dict[str, float]


def curves(y: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> Curves:
    onehot = one_hot(y, len(classes))
    roc: dict[str, tuple[FloatArray, FloatArray]] = {}
    pr: dict[str, tuple[FloatArray, FloatArray]] = {}
    auroc: dict[str, float] = {}
    ap: dict[str, float] = {}
    for k, name in enumerate(classes):
        if onehot[:, k].all() or not onehot[:, k].any():
            continue
        fpr, tpr, _ = roc_curve(onehot[:, k], probs[:, k])
        roc[name] = (fpr, tpr)
        auroc[name] = roc_auc(onehot[:, k], probs[:, k])
        precision, recall, _ = precision_recall_curve(onehot[:, k], probs[:, k])
        pr[name] = (recall, precision)
        ap[name] = average_precision(onehot[:, k], probs[:, k])
    fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    roc["micro"] = (fpr, tpr)
    auroc["micro"] = roc_auc(onehot.ravel(), probs.ravel())
    precision, recall, _ = precision_recall_curve(onehot.ravel(), probs.ravel())
    pr["micro"] = (recall, precision)
    ap["micro"] = average_precision(onehot.ravel(), probs.ravel())
    names = [c for c in classes if c in roc]
    if names:
        # macro curves: mean of the per-class curves on a common grid
        grid = np.unique(np.concatenate([roc[c][0] for c in names]))
        mean_tpr = np.mean([np.interp(grid, roc[c][0], roc[c][1]) for c in names], axis=0)
        roc["macro"] = (grid, mean_tpr)
        auroc["macro"] = float(np.mean([auroc[c] for c in names]))
        rgrid = np.linspace(0.0, 1.0, 201)
        mean_p = np.mean([np.interp(rgrid, pr[c][0][::-1], pr[c][1][::-1]) for c in names], axis=0)
        pr["macro"] = (rgrid, mean_p)
        ap["macro"] = float(np.mean([ap[c] for c in names]))
    return Curves(roc, pr, auroc, ap)


# --------------------------------------------------------------------------- patients


@dataclass(frozen=True)
class PatientTable:
    ids: list[str]
    y: np.ndarray  # (P,) reference class index
    probs: np.ndarray  # (P, C) the frame probabilities aggregated by one rule
    rows: list[np.ndarray]  # image indices of each patient


def by_patient(
    patient_ids: Sequence[str], y: np.ndarray, probs: np.ndarray, rule: str = DEFAULT_RULE
) -> PatientTable:
    """Aggregate frame probabilities per patient by ``rule`` (the model card's, the paper's
    mean by default), as the viewer does."""
    order: dict[str, list[int]] = {}
    for i, pid in enumerate(patient_ids):
        order.setdefault(pid, []).append(i)
    ids = sorted(order)
    rows = [np.asarray(order[p], dtype=np.int64) for p in ids]
    py = np.array([int(y[r[0]]) for r in rows], dtype=np.int64)
    pp = np.stack([aggregate(probs[r], rule, np.float64) for r in rows]) if rows else probs[:0]
    return PatientTable(ids, py, pp, rows)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n_units: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile CI of each named statistic over ``n_boot`` resamples of the units.

    ``statistic`` receives the resampled unit indices (patients). Resamples where a
    statistic is undefined (nan: a class absent) are left out of that statistic's interval.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        sample = rng.integers(0, n_units, size=n_units)
        for key, value in statistic(sample).items():
            draws.setdefault(key, []).append(value)
    out: dict[str, tuple[float, float]] = {}
    for key, values in draws.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            out[key] = (float("nan"), float("nan"))
        else:
            lo, hi = np.quantile(arr, [alpha / 2, 1 - alpha / 2])
            out[key] = (float(lo), float(hi))
    return out


# --------------------------------------------------------------------------- localisation


def _fit(heatmap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if heatmap.shape == shape[:2]:
        return heatmap
    import cv2

    return np.asarray(
        cv2.resize(heatmap.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    )


def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """True when the heatmap's maximum falls inside the lesion mask; an empty map (no heat
    anywhere, as Grad-CAM gives when no cell raises the class's score) points nowhere."""
    h = _fit(np.asarray(heatmap, dtype=np.float32), mask.shape)
    if is_empty(h):
        return False
    r, c = np.unravel_index(int(np.argmax(h)), h.shape)
    return bool(mask[r, c])


#: the pointing game's tolerance in Zhang et al. 2016 (pixels of the annotated image): a hit is
#: a maximum within this distance of the object
POINTING_TOLERANCE_PX = 15


def pointing_distance(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Distance in mask pixels from the heatmap's maximum to the nearest mask pixel: 0 inside
    the mask (a :func:`pointing_game` hit), ``inf`` for an empty mask or an empty map."""
    h = _fit(np.asarray(heatmap, dtype=np.float32), mask.shape)
    if is_empty(h):
        return float("inf")
    r, c = np.unravel_index(int(np.argmax(h)), h.shape)
    m = np.asarray(mask, dtype=bool)
    if m[r, c]:
        return 0.0
    ys, xs = np.nonzero(m)
    if not len(ys):
        return float("inf")
    return float(np.sqrt(((ys - r) ** 2 + (xs - c) ** 2).min()))


def energy_inside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the (non-negative) heatmap energy that lies inside the mask; 0 for an empty
    map, which shows the reader nothing inside the lesion (leaving such frames out would let a
    model raise the figure by erasing its maps where it would score low)."""
    h = np.clip(_fit(np.asarray(heatmap, dtype=np.float32), mask.shape), 0.0, None)
    total = float(h.sum())
    return float(h[mask.astype(bool)].sum() / total) if total > 0 else 0.0
