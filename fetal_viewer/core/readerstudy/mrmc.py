"""Obuchowski-Rockette (OR) multi-reader multi-case analysis with Hillis' improvements.

Model (Obuchowski & Rockette 1995): the figure of merit (FOM) of reader j in test i is
``theta_ij = mu + tau_i + R_j + (tau R)_ij + e_ij`` with correlated errors whose
covariances (Var, Cov1: same reader other test, Cov2: other reader same test, Cov3: other
reader other test) are estimated from the cases by the jackknife or by DeLong's method.

Random readers and random cases (Hillis 2007; Hillis, Berbaum & Metz 2008):
``F = MS(T) / [MS(T*R) + r * max(Cov2 - Cov3, 0)]`` on ``(t - 1, ddf_H)`` degrees of
freedom with ``ddf_H = [MS(T*R) + r max(Cov2-Cov3,0)]^2 / {MS(T*R)^2 / [(t-1)(r-1)]}``.
Also given: fixed readers (chi-square), and single-test CIs with ``ddf_H_single``.

Validated in ``tests/core/test_mrmc.py`` against the published OR-DBM MRMC 2.51 output
for the Van Dyke et al. (1993) data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

Array = NDArray[np.float64]


def _components(scores: Array, truth: NDArray[np.bool_]) -> tuple[Array, Array]:
    """DeLong structural components of the empirical AUC of one score vector.

    V10[a] for each diseased case a: P(non-diseased score < x_a) + 0.5 P(=);
    V01[b] for each non-diseased case b: P(diseased score > y_b) + 0.5 P(=).
    """
    x = scores[truth]
    y = scores[~truth]
    ys = np.sort(y)
    xs = np.sort(x)
    v10 = (np.searchsorted(ys, x, "left") + np.searchsorted(ys, x, "right")) / (2.0 * len(y))
    v01 = (
        (len(x) - np.searchsorted(xs, y, "right")) + (len(x) - np.searchsorted(xs, y, "left"))
    ) / (2.0 * len(x))
    return v10, v01


def empirical_auc(scores: Array, truth: NDArray[np.bool_]) -> float:
    """Trapezoidal (Mann-Whitney) AUC; ties count one half."""
    v10, _ = _components(np.asarray(scores, float), np.asarray(truth, bool))
    return float(v10.mean())


def fom_matrix(scores: Array, truth: NDArray[np.bool_], fom: str = "auc") -> Array:
    """FOM per (test, reader) from scores of shape (t, r, K)."""
    t, r, _ = scores.shape
    out = np.empty((t, r))
    for i in range(t):
        for j in range(r):
            if fom == "auc":
                out[i, j] = empirical_auc(scores[i, j], truth)
            else:  # "accuracy": scores are 0/1 correctness
                out[i, j] = scores[i, j].mean()
    return out


def jackknife_values(scores: Array, truth: NDArray[np.bool_], fom: str = "auc") -> Array:
    """Leave-one-case-out FOMs, shape (t, r, K), in closed form (no K-fold loop)."""
    t, r, K = scores.shape
    out = np.empty((t, r, K))
    m = int(truth.sum())
    n = K - m
    for i in range(t):
        for j in range(r):
            s = scores[i, j]
            if fom == "auc":
                v10, v01 = _components(s, truth)
                total = v10.sum() * n  # sum over all (diseased, non-diseased) pairs
                loo = np.empty(K)
                loo[truth] = (total - v10 * n) / ((m - 1) * n)
                loo[~truth] = (total - v01 * m) / (m * (n - 1))
            else:
                loo = (s.sum() - s) / (K - 1)
            out[i, j] = loo
    return out


def jackknife_cov(values: Array) -> Array:
    """Jackknife covariance of the (t*r) FOMs from leave-one-out values (t, r, K)."""
    t, r, K = values.shape
    flat = values.reshape(t * r, K)
    dev = flat - flat.mean(axis=1, keepdims=True)
    return (K - 1) / K * (dev @ dev.T)


def delong_cov(scores: Array, truth: NDArray[np.bool_]) -> Array:
    """DeLong, DeLong & Clarke-Pearson (1988) covariance of the (t*r) empirical AUCs."""
    t, r, _ = scores.shape
    v10s, v01s = [], []
    for i in range(t):
        for j in range(r):
            v10, v01 = _components(scores[i, j], truth)
            v10s.append(v10)
            v01s.append(v01)
    a = np.atleast_2d(np.cov(np.array(v10s)))
    b = np.atleast_2d(np.cov(np.array(v01s)))
    return a / len(v10s[0]) + b / len(v01s[0])


@dataclass(frozen=True)
class SingleTest:
    test: str
    fom: float
    se: float
    df: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class ORResult:
    """Result of :func:`obuchowski_rockette`. ``diff`` is the last test minus the first."""

    fom_name: str
    cov_method: str
    tests: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    n_positive: int
    theta: tuple[tuple[float, ...], ...]  # (t, r)
    test_means: tuple[float, ...]
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_tr: float
    f: float
    df1: float
    df2: float
    p: float
    diff: float
    se: float
    ci: tuple[float, float]
    fixed_readers_chi2: float
    fixed_readers_p: float
    fixed_readers_se: float
    fixed_readers_ci: tuple[float, float]
    single: tuple[SingleTest, ...]
    alpha: float = 0.05


def _mean_cov(cov: Array, t: int, r: int) -> tuple[float, float, float, float]:
    var, c1, c2, c3 = [], [], [], []
    for i in range(t):
        for j in range(r):
            for ii in range(t):
                for jj in range(r):
                    v = cov[i * r + j, ii * r + jj]
                    if i == ii and j == jj:
                        var.append(v)
                    elif j == jj:
                        c1.append(v)
                    elif i == ii:
                        c2.append(v)
                    else:
                        c3.append(v)

    def mean(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs else 0.0

    return mean(var), mean(c1), mean(c2), mean(c3)


def or_from_cov(
    theta: Array,
    cov: Array,
    *,
    tests: tuple[str, ...],
    readers: tuple[str, ...],
    fom_name: str,
    cov_method: str,
    n_cases: int,
    n_positive: int,
    alpha: float = 0.05,
) -> ORResult:
    """The OR analysis from FOMs (t, r) and their error covariance (t*r, t*r)."""
    t, r = theta.shape
    if t < 2 or r < 2:
        raise ValueError("OR analysis needs at least two tests and two readers")
    var, c1, c2, c3 = _mean_cov(cov, t, r)
    mi = theta.mean(axis=1)
    mj = theta.mean(axis=0)
    mm = theta.mean()
    ms_t = r * float(((mi - mm) ** 2).sum()) / (t - 1)
    ms_tr = float(((theta - mi[:, None] - mj[None, :] + mm) ** 2).sum()) / ((t - 1) * (r - 1))
    den = ms_tr + r * max(c2 - c3, 0.0)
    # with no variance at all, a difference between the tests is certain (F infinite), and
    # no difference is no evidence either way (F and p undefined, never "significant")
    nothing = float("inf") if ms_t > 0 else float("nan")
    f = ms_t / den if den > 0 else nothing
    df2 = den**2 / (ms_tr**2 / ((t - 1) * (r - 1))) if ms_tr > 0 else float("inf")
    p = float(stats.f.sf(f, t - 1, df2))
    diff = float(mi[-1] - mi[0])
    se = float(np.sqrt(2.0 / r * den))
    tq = float(stats.t.ppf(1 - alpha / 2, df2))
    ci = (diff - tq * se, diff + tq * se)
    fden = var - c1 + (r - 1) * max(c2 - c3, 0.0)
    chi2 = (t - 1) * ms_t / fden if fden > 0 else nothing
    p_fixed = float(stats.chi2.sf(chi2, t - 1))
    se_fixed = float(np.sqrt(2.0 / r * fden)) if fden > 0 else 0.0
    z = float(stats.norm.ppf(1 - alpha / 2))
    single = []
    for i in range(t):
        ms_r = float(((theta[i] - mi[i]) ** 2).sum()) / (r - 1)
        block = cov[i * r : (i + 1) * r, i * r : (i + 1) * r]
        off = block[~np.eye(r, dtype=bool)]
        cov2_i = float(off.mean())
        d = ms_r + r * max(cov2_i, 0.0)
        se_i = float(np.sqrt(d / r))
        df_i = d**2 / (ms_r**2 / (r - 1)) if ms_r > 0 else float("inf")
        q = float(stats.t.ppf(1 - alpha / 2, df_i))
        single.append(
            SingleTest(tests[i], float(mi[i]), se_i, df_i, (mi[i] - q * se_i, mi[i] + q * se_i))
        )
    return ORResult(
        fom_name=fom_name,
        cov_method=cov_method,
        tests=tests,
        readers=readers,
        n_cases=n_cases,
        n_positive=n_positive,
        theta=tuple(tuple(float(v) for v in row) for row in theta),
        test_means=tuple(float(v) for v in mi),
        var_error=var,
        cov1=c1,
        cov2=c2,
        cov3=c3,
        ms_t=ms_t,
        ms_tr=ms_tr,
        f=f,
        df1=float(t - 1),
        df2=df2,
        p=p,
        diff=diff,
        se=se,
        ci=ci,
        fixed_readers_chi2=chi2,
        fixed_readers_p=p_fixed,
        fixed_readers_se=se_fixed,
        fixed_readers_ci=(diff - z * se_fixed, diff + z * se_fixed),
        single=tuple(single),
        alpha=alpha,
    )


def obuchowski_rockette(
    scores: Array,
    truth: NDArray[np.bool_],
    *,
    tests: tuple[str, ...],
    readers: tuple[str, ...],
    fom: str = "auc",
    cov_method: str = "jackknife",
    alpha: float = 0.05,
) -> ORResult:
    """OR analysis of a fully crossed study.

    ``scores``: shape (t, r, K), every reader's score of every case in every test (for
    ``fom="accuracy"``: 1 if the read was correct, else 0). ``truth``: (K,) bool,
    positive (diseased) cases. ``cov_method``: ``"jackknife"`` or ``"delong"`` (AUC only).
    """
    scores = np.asarray(scores, float)
    truth = np.asarray(truth, bool)
    if scores.ndim != 3 or scores.shape[2] != truth.shape[0]:
        raise ValueError("scores must have shape (tests, readers, cases) matching truth")
    if fom == "auc" and (truth.all() or not truth.any()):
        raise ValueError("AUC needs both positive and negative cases")
    theta = fom_matrix(scores, truth, fom)
    if cov_method == "delong":
        if fom != "auc":
            raise ValueError("DeLong covariance is defined for the AUC only")
        cov = delong_cov(scores, truth)
    elif cov_method == "jackknife":
        cov = jackknife_cov(jackknife_values(scores, truth, fom))
    else:
        raise ValueError(f"unknown covariance method {cov_method!r}")
    return or_from_cov(
        theta,
        cov,
        tests=tests,
        readers=readers,
        fom_name=fom,
        cov_method=cov_method,
        n_cases=int(truth.shape[0]),
        n_positive=int(truth.sum()),
        alpha=alpha,
    )
