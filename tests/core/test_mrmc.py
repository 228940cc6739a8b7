"""OR-MRMC validated against published output.

Data: Van Dyke et al. (1993), cine vs spin-echo MRI for aortic dissection, 5 readers x
114 cases (45 abnormal), transcribed from RJafroc ``inst/extdata/datasets/VD.lrc``.
Expected: OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce, Berbaum), trapezoidal AUC, jackknife
covariance, as kept in RJafroc ``tests/testthat/goodValues361/Iowa/VanDyke.txt``; the same
numbers appear in Hillis (2007, 2008) examples (F = 4.46, ddf_H = 15.26, p = 0.0517).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.readerstudy.mrmc import (
    _components,
    delong_cov,
    empirical_auc,
    obuchowski_rockette,
)

DATA = Path(__file__).parent / "data" / "vandyke.csv"


@pytest.fixture(scope="module")
def vandyke() -> tuple[np.ndarray, np.ndarray]:
    d = np.loadtxt(DATA, delimiter=",", comments="#", skiprows=4)
    readers = d[:, 0].astype(int)
    truth = d[readers == 0][:, 2].astype(bool)
    scores = np.stack([np.stack([d[readers == k][:, 3 + i] for k in range(5)]) for i in (0, 1)])
    return scores, truth


def test_or_matches_published_vandyke(vandyke: tuple[np.ndarray, np.ndarray]) -> None:
    scores, truth = vandyke
    res = obuchowski_rockette(scores, truth, tests=("1", "2"), readers=tuple("abcde"))
    assert res.test_means == pytest.approx((0.89703704, 0.94083736), abs=1e-8)
    assert res.ms_t == pytest.approx(0.00479617, abs=1e-8)
    assert res.ms_tr == pytest.approx(0.00055103, abs=1e-8)
    assert res.var_error == pytest.approx(0.00080229, abs=1e-8)
    assert res.cov1 == pytest.approx(0.00034661, abs=1e-8)
    assert res.cov2 == pytest.approx(0.00034407, abs=1e-8)
    assert res.cov3 == pytest.approx(0.00023903, abs=1e-8)
    assert round(res.f, 2) == 4.46
    assert round(res.df2, 2) == 15.26
    assert round(res.p, 4) == 0.0517
    # published difference is 1 - 2; ours is last minus first
    assert res.diff == pytest.approx(0.04380, abs=5e-6)
    assert res.se == pytest.approx(0.02075, abs=5e-6)
    assert res.ci == pytest.approx((-0.00036, 0.08796), abs=5e-6)
    assert res.fixed_readers_chi2 == pytest.approx(5.47595, abs=5e-5)
    assert round(res.fixed_readers_p, 4) == 0.0193
    assert res.single[0].se == pytest.approx(0.03317360, abs=1e-7)
    assert res.single[1].se == pytest.approx(0.02156637, abs=1e-7)
    assert (round(res.single[0].df, 2), round(res.single[1].df, 2)) == (12.74, 12.71)


def test_auc_and_delong_cross_checked(vandyke: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.metrics import roc_auc_score

    scores, truth = vandyke
    for i in range(2):
        for j in range(5):
            assert empirical_auc(scores[i, j], truth) == pytest.approx(
                roc_auc_score(truth, scores[i, j])
            )
    # DeLong by brute force over the psi matrix
    cov = delong_cov(scores[:, :2], truth)
    v = []
    for i in range(2):
        for j in range(2):
            s = scores[i, j]
            x, y = s[truth], s[~truth]
            psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
            v.append((psi.mean(1), psi.mean(0)))
            v10, v01 = _components(s, truth)
            assert np.allclose(v10, psi.mean(1)) and np.allclose(v01, psi.mean(0))
    brute = np.array(
        [
            [
                np.cov(a[0], b[0])[0, 1] / truth.sum() + np.cov(a[1], b[1])[0, 1] / (~truth).sum()
                for b in v
            ]
            for a in v
        ]
    )
    assert np.allclose(cov, brute)
    res = obuchowski_rockette(
        scores, truth, tests=("1", "2"), readers=tuple("abcde"), cov_method="delong"
    )
    assert 0.03 < res.p < 0.08 and res.ci[0] < res.diff < res.ci[1]


def test_null_study_has_calibrated_type_one_error() -> None:
    rng = np.random.default_rng(3)
    rejections = 0
    n_sim = 60
    for _ in range(n_sim):
        truth = np.arange(60) < 30
        case = rng.normal(0, 0.7, 60) + truth * 1.2
        s = case[None, None, :] + rng.normal(0, 1, (2, 4, 60))
        res = obuchowski_rockette(s, truth, tests=("u", "a"), readers=tuple("abcd"))
        rejections += res.p < 0.05
    assert rejections / n_sim < 0.15


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        obuchowski_rockette(
            np.zeros((2, 3, 4)), np.ones(4, bool), tests=("a", "b"), readers=tuple("abc")
        )


def test_reads_without_variance_give_no_p_value() -> None:
    """Every reader scores every case the same in both tests (all at chance): no difference
    and no variance is no evidence, so F and p are undefined, never p = 0."""
    truth = np.arange(8) < 4
    flat = np.zeros((2, 3, 8))
    res = obuchowski_rockette(flat, truth, tests=("u", "a"), readers=tuple("abc"))
    assert res.diff == 0.0
    assert np.isnan(res.f) and np.isnan(res.p) and np.isnan(res.fixed_readers_p)
