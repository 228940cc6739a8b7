"""Metric code agrees with scikit-learn on fixed inputs (sklearn is a test-only dependency)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from fetal_viewer.core.training import metrics as M  # noqa: N812

CLASSES = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def multiclass() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 300
    y = rng.integers(0, 4, size=n)
    logits = rng.normal(size=(n, 4)) + 1.2 * np.eye(4)[y]
    # ties on purpose: rounding makes many equal scores
    probs = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)
    return y, probs


def test_confusion_and_per_class_stats_match_sklearn(multiclass: tuple) -> None:
    y, probs = multiclass
    pred = probs.argmax(1)
    cm = M.confusion_matrix(y, pred, 4)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(4)))
    stats = M.per_class_stats(cm, CLASSES)
    recall = skm.recall_score(y, pred, average=None, labels=range(4))
    precision = skm.precision_score(y, pred, average=None, labels=range(4))
    f1 = skm.f1_score(y, pred, average=None, labels=range(4))
    for k, c in enumerate(CLASSES):
        assert stats[c]["sensitivity"] == pytest.approx(recall[k])
        assert stats[c]["ppv"] == pytest.approx(precision[k])
        assert stats[c]["f1"] == pytest.approx(f1[k])
        # specificity = recall of the negative class; NPV = precision of the negative class
        neg_true, neg_pred = y != k, pred != k
        assert stats[c]["specificity"] == pytest.approx(skm.recall_score(neg_true, neg_pred))
        assert stats[c]["npv"] == pytest.approx(skm.precision_score(neg_true, neg_pred))
        assert stats[c]["support"] == (y == k).sum()


def test_binary_curves_and_areas_match_sklearn(multiclass: tuple) -> None:
    y, probs = multiclass
    for k in range(4):
        yk, sk = (y == k).astype(int), probs[:, k]
        fpr, tpr, thr = M.roc_curve(yk, sk)
        rf, rt, rth = skm.roc_curve(yk, sk, drop_intermediate=False)
        np.testing.assert_allclose(fpr, rf)
        np.testing.assert_allclose(tpr, rt)
        np.testing.assert_allclose(thr[1:], rth[1:])
        assert M.roc_auc(yk, sk) == pytest.approx(skm.roc_auc_score(yk, sk))
        assert np.trapezoid(tpr, fpr) == pytest.approx(skm.roc_auc_score(yk, sk))
        p, r, t = M.precision_recall_curve(yk, sk)
        sp, sr, st = skm.precision_recall_curve(yk, sk, drop_intermediate=False)
        np.testing.assert_allclose(p, sp)
        np.testing.assert_allclose(r, sr)
        np.testing.assert_allclose(t, st)
        assert M.average_precision(yk, sk) == pytest.approx(skm.average_precision_score(yk, sk))


def test_micro_macro_auroc_match_sklearn(multiclass: tuple) -> None:
    y, probs = multiclass
    onehot = np.eye(4)[y]
    s = M.auroc_summary(y, probs)
    assert s["micro_auroc"] == pytest.approx(skm.roc_auc_score(onehot, probs, average="micro"))
    assert s["macro_auroc"] == pytest.approx(skm.roc_auc_score(onehot, probs, average="macro"))
    per = skm.roc_auc_score(onehot, probs, average=None)
    for k in range(4):
        assert s[f"auroc/{k}"] == pytest.approx(per[k])
    cv = M.curves(y, probs, CLASSES)
    assert cv.auroc["micro"] == pytest.approx(s["micro_auroc"])
    assert cv.auroc["macro"] == pytest.approx(s["macro_auroc"])
    assert cv.ap["micro"] == pytest.approx(
        skm.average_precision_score(onehot, probs, average="micro")
    )
    assert cv.ap["macro"] == pytest.approx(
        skm.average_precision_score(onehot, probs, average="macro")
    )
    fpr, tpr = cv.roc["macro"]
    assert np.all(np.diff(fpr) >= 0) and tpr[0] >= 0 and tpr[-1] == pytest.approx(1.0)


def test_auroc_undefined_when_one_class_absent() -> None:
    assert np.isnan(M.roc_auc(np.ones(5), np.linspace(0, 1, 5)))
    s = M.auroc_summary(np.zeros(6, dtype=int), np.full((6, 3), 1 / 3))
    assert np.isnan(s["macro_auroc"])


def test_by_patient_means_frames() -> None:
    pids = ["p2", "p1", "p2", "p1", "p3"]
    y = np.array([1, 0, 1, 0, 2])
    probs = np.array([[0, 1, 0], [1, 0, 0], [0.5, 0.5, 0], [0.6, 0.4, 0], [0, 0, 1.0]])
    pt = M.by_patient(pids, y, probs)
    assert pt.ids == ["p1", "p2", "p3"]
    np.testing.assert_allclose(pt.probs[0], [0.8, 0.2, 0])
    np.testing.assert_allclose(pt.probs[1], [0.25, 0.75, 0])
    np.testing.assert_array_equal(pt.y, [0, 1, 2])


def test_by_patient_uses_the_cards_rule() -> None:
    # one patient, three frames: the mean calls class 0, the majority of frames class 1
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
    y = np.array([1, 1, 1])
    mean = M.by_patient(["p"] * 3, y, probs)
    vote = M.by_patient(["p"] * 3, y, probs, "vote")
    np.testing.assert_allclose(mean.probs[0], [1.6 / 3, 1.4 / 3])
    np.testing.assert_allclose(vote.probs[0], [1 / 3, 2 / 3])
    assert vote.probs.dtype == np.float64


def test_bootstrap_ci_covers_statistic_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 1.0, size=200)

    def mean(sample: np.ndarray) -> dict[str, float]:
        return {"mean": float(values[sample].mean())}

    ci = M.bootstrap_ci(mean, len(values), n_boot=400, seed=1)["mean"]
    assert ci[0] < values.mean() < ci[1]
    # width close to 2 * 1.96 * standard error
    assert ci[1] - ci[0] == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)
    assert M.bootstrap_ci(mean, len(values), n_boot=400, seed=1)["mean"] == ci


def test_localisation_metrics() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:20, 10:20] = True
    heat = np.zeros((40, 40), dtype=np.float32)
    heat[15, 15] = 1.0
    heat[30, 30] = 0.5
    assert M.pointing_game(heat, mask)
    assert M.energy_inside(heat, mask) == pytest.approx(1.0 / 1.5)
    heat[30, 30] = 2.0
    assert not M.pointing_game(heat, mask)
    # a coarser heatmap is resized onto the mask
    coarse = np.zeros((4, 4), dtype=np.float32)
    coarse[1, 1] = 1.0
    assert M.pointing_game(coarse, mask)
    # distance from the maximum to the mask: 0 inside, Euclidean outside, inf without a mask
    assert M.pointing_distance(coarse, mask) == 0.0
    heat = np.zeros((40, 40), dtype=np.float32)
    heat[25, 23] = 1.0  # 6 rows below and 4 columns right of the mask's corner (19, 19)
    assert not M.pointing_game(heat, mask)
    assert M.pointing_distance(heat, mask) == pytest.approx(np.hypot(6, 4))
    assert M.pointing_distance(heat, np.zeros_like(mask)) == float("inf")


def test_an_empty_heatmap_points_nowhere() -> None:
    # Grad-CAM is all zero when no cell raises the class's score; argmax would then pick the
    # top-left pixel, a hit whenever the mask reaches the corner
    mask = np.zeros((40, 40), dtype=bool)
    mask[:10, :10] = True
    empty = np.zeros((4, 4), dtype=np.float32)
    assert not M.pointing_game(empty, mask)
    assert M.pointing_distance(empty, mask) == float("inf")
    assert M.energy_inside(empty, mask) == 0.0
