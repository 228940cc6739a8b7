"""Rings of the head finder: centre votes, closed paths, ellipse fits pulled onto the ridge.

Steps 4 and 5 of the method in :mod:`fetal_viewer.core.measure.head`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.head.ellipse import _Ellipse, _fit, _plausible, _profiles
from fetal_viewer.core.measure.head.image import _N_ORIENT

#: at most this many ridge pixels vote
_MAX_VOTERS = 3000
#: candidate rings (centre and radius) tried per frame
_N_CENTRES = 8
#: largest radius voted for (fraction of the longest side) and radius bins of the votes
_R_VOTE_MAX = 0.45
_N_RADIUS_BINS = 8
#: a ring's path stays within this factor of its voted radius
_RING_WINDOW = 1.8
#: vote map cell (working pixels)
_VOTE_CELL = 4
#: polar grid for the ring search: angles, log-spaced radii
_N_ANGLES = 128
_N_RADII = 160
#: head radius searched, as a fraction of the working copy's longest side
_R_MIN, _R_MAX = 0.04, 0.70
#: dynamic programme: largest radius step per angle (radii bins), cost per squared step
_DP_STEP = 3
_DP_PENALTY = 0.15


def _vote(ridge: NDArray[np.float32], orient: NDArray[np.uint8], thr: float) -> NDArray:
    """Candidate rings ``(k, 3)``: centre x, y and radius (working pixels), strongest first.

    Each strong ridge pixel votes along its normal, both ways, at every radius; votes are
    binned by centre (``_VOTE_CELL`` pixels) and by radius (log bins), so concentric rings
    (a head inside the amniotic sac) are told apart.
    """
    import cv2

    h, w = ridge.shape
    ys, xs = np.nonzero(ridge > thr)
    wts = ridge[ys, xs]
    if len(wts) > _MAX_VOTERS:
        top = np.argpartition(wts, -_MAX_VOTERS)[-_MAX_VOTERS:]
        ys, xs, wts = ys[top], xs[top], wts[top]
    t = np.pi * orient[ys, xs] / _N_ORIENT
    side = max(h, w)
    r_lo, r_hi = _R_MIN * side, _R_VOTE_MAX * side
    radii = np.arange(r_lo, r_hi, 3.0)
    rbin = np.minimum(
        (np.log(radii / r_lo) / np.log(r_hi / r_lo) * _N_RADIUS_BINS).astype(np.int64),
        _N_RADIUS_BINS - 1,
    )
    q = _VOTE_CELL
    gh, gw = (h + q - 1) // q, (w + q - 1) // q
    acc = np.zeros(_N_RADIUS_BINS * gh * gw, np.float64)
    for sign in (1.0, -1.0):
        vx = xs[:, None] + sign * np.cos(t)[:, None] * radii[None, :]
        vy = ys[:, None] + sign * np.sin(t)[:, None] * radii[None, :]
        ok = (vx >= 0) & (vx < w) & (vy >= 0) & (vy < h)
        cells = (
            np.broadcast_to(rbin[None, :], vx.shape)[ok] * (gh * gw)
            + (vy[ok] / q).astype(np.int64) * gw
            + (vx[ok] / q).astype(np.int64)
        )
        acc += np.bincount(cells, np.broadcast_to(wts[:, None], vx.shape)[ok], acc.size)
    grid = acc.reshape(_N_RADIUS_BINS, gh, gw).astype(np.float32)
    grid = np.stack([cv2.GaussianBlur(g, (0, 0), 2.0) for g in grid])
    # smooth a little across radius bins: an ellipse's votes spread over neighbouring bins
    grid[1:-1] = 0.25 * grid[:-2] + 0.5 * grid[1:-1] + 0.25 * grid[2:]
    dil = np.stack([cv2.dilate(g, np.ones((7, 7), np.uint8)) for g in grid])
    dil = np.maximum(dil, np.maximum(np.roll(dil, 1, axis=0), np.roll(dil, -1, axis=0)))
    peaks = np.argwhere((grid == dil) & (grid > 0))
    if len(peaks) == 0:
        return np.zeros((0, 3))
    vals = grid[peaks[:, 0], peaks[:, 1], peaks[:, 2]]
    order = np.argsort(-vals)
    peaks, vals = peaks[order], vals[order]
    peaks = peaks[vals > 0.2 * vals[0]][:_N_CENTRES]
    edges = r_lo * (r_hi / r_lo) ** (np.arange(_N_RADIUS_BINS + 1) / _N_RADIUS_BINS)
    r = np.sqrt(edges[peaks[:, 0]] * edges[peaks[:, 0] + 1])
    return np.stack([(peaks[:, 2] + 0.5) * q, (peaks[:, 1] + 0.5) * q, r], axis=1)


def _polar(ridge: NDArray[np.float32], centres: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Log-polar samples ``(C, angles, radii)`` of ``ridge`` around each centre, with the
    sample positions ``X, Y`` of the same shape."""
    import cv2

    radii = _polar_radii(max(ridge.shape))
    th = 2.0 * np.pi * np.arange(_N_ANGLES) / _N_ANGLES
    X = centres[:, 0, None, None] + np.cos(th)[None, :, None] * radii[None, None, :]
    Y = centres[:, 1, None, None] + np.sin(th)[None, :, None] * radii[None, None, :]
    c, na, nr = X.shape
    vals = cv2.remap(
        ridge,
        X.reshape(c * na, nr).astype(np.float32),
        Y.reshape(c * na, nr).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.asarray(vals).reshape(c, na, nr), X, Y


def _polar_radii(side: int) -> NDArray:
    return np.geomspace(_R_MIN * side, _R_MAX * side, _N_RADII)


def _ring_paths(polar: NDArray) -> NDArray[np.int64]:
    """Brightest closed path per centre: radius index ``(C, angles)``.

    Dynamic programming over one and a half turns, radius changing by at most
    ``_DP_STEP`` bins per angle at a cost growing with the step squared; the last full
    turn is kept (its start has forgotten the arbitrary first angle).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    c, na, nr = polar.shape
    k = _DP_STEP
    ext = np.concatenate([polar, polar[:, : na // 2]], axis=1).astype(np.float32)
    n = ext.shape[1]
    steps = np.arange(-k, k + 1)
    cost = (_DP_PENALTY * steps * steps).astype(np.float32)
    score = ext[:, 0].copy()
    padded = np.full((c, nr + 2 * k), -np.inf, np.float32)
    back = np.zeros((c, n, nr), np.int8)
    # view[c, r, j] = padded[c, r + j] = score[c, r + j - k]: arriving from bin r + steps[j]
    view = sliding_window_view(padded, 2 * k + 1, axis=1)
    for i in range(1, n):
        padded[:, k : k + nr] = score
        windows = view - cost
        arg = np.argmax(windows, axis=2)
        score = np.take_along_axis(windows, arg[:, :, None], axis=2)[:, :, 0] + ext[:, i]
        back[:, i] = arg - k
    r = np.empty((c, n), np.int64)
    r[:, -1] = np.argmax(score, axis=1)
    rows = np.arange(c)
    for i in range(n - 1, 0, -1):
        r[:, i - 1] = r[:, i] + back[rows, i, r[:, i]]
    out = np.empty((c, na), np.int64)
    out[:, np.arange(n - na, n) % na] = r[:, n - na :]
    return out


def _trace(ridge: NDArray[np.float32], rings: NDArray) -> list[_Ellipse]:
    """One ellipse per candidate ring from the brightest closed path around its centre,
    within a factor ``_RING_WINDOW`` of its voted radius (re-centred once)."""
    h, w = ridge.shape
    n = len(rings)
    alive = [True] * n
    ells: list[_Ellipse | None] = [None] * n
    cur = rings[:, :2].astype(np.float64)
    radii = _polar_radii(max(h, w))
    outside = (radii[None, :] < rings[:, 2, None] / _RING_WINDOW) | (
        radii[None, :] > rings[:, 2, None] * _RING_WINDOW
    )
    pts_last: list[NDArray | None] = [None] * n
    ang = np.arange(_N_ANGLES)
    for _ in range(2):
        idx = [i for i in range(n) if alive[i]]
        if not idx:
            break
        polar, X, Y = _polar(ridge, cur[idx])
        polar = np.where(outside[idx][:, None, :], -1e3, polar)
        paths = _ring_paths(polar)
        for j, i in enumerate(idx):
            sup = polar[j, ang, paths[j]]
            pos = sup > 0
            if pos.sum() < 10:
                alive[i] = False
                continue
            ok = sup > 0.25 * float(np.median(sup[pos]))
            pts = np.stack([X[j, ang, paths[j]], Y[j, ang, paths[j]]], axis=1)
            e = _fit(pts[ok])
            if e is None or not _plausible(e, h, w):
                alive[i] = False
                continue
            ells[i] = e
            pts_last[i] = np.where(ok[:, None], pts, np.nan)
            cur[i] = (e[0], e[1])
    out: list[_Ellipse] = []
    for i, found in enumerate(ells):
        path = pts_last[i]
        if found is None or path is None:
            continue
        out.append(_best_sector_fit(found, path, ridge))
    return out


def _best_sector_fit(e: _Ellipse, pts: NDArray, ridge: NDArray[np.float32]) -> _Ellipse:
    """The path's fit, or a fit leaving out two neighbouring 45-degree sectors, whichever
    lies best on the ridge (a stretch of path that followed another echo is dropped)."""
    h, w = ridge.shape
    sector = np.arange(len(pts)) * 8 // len(pts)
    valid = np.isfinite(pts[:, 0])
    best, best_s = e, _support(e, ridge)
    for k in range(8):
        keep = valid & (sector != k) & (sector != (k + 1) % 8)
        if keep.sum() < 10:
            continue
        f = _fit(pts[keep])
        if f is None or not _plausible(f, h, w):
            continue
        s = _support(f, ridge)
        if s > best_s:
            best, best_s = f, s
    return best


def _support(e: _Ellipse, ridge: NDArray[np.float32]) -> float:
    """Mean ridge strength at most 1.5 px from ``e``, over its points inside the image."""
    offsets = np.arange(-1.5, 1.51, 0.5)
    _, _, _, _, vals = _profiles(ridge, e, offsets)
    inside = (vals >= 0).all(axis=1)
    if inside.sum() < 0.3 * len(vals):
        return 0.0
    return float(vals[inside].max(axis=1).mean() * math.sqrt(inside.mean()))


def _refine(e: _Ellipse, ridge: NDArray[np.float32], thr: float) -> _Ellipse | None:
    """Pull ``e`` onto the ridge: strongest ridge along each normal in shrinking bands."""
    h, w = ridge.shape
    for band in (6.0, 4.0, 3.0, 2.0):
        offsets = np.arange(-band, band + 0.01, 0.5)
        x, y, nx, ny, vals = _profiles(ridge, e, offsets)
        j = np.argmax(vals, axis=1)
        peak = vals[np.arange(len(j)), j]
        good = peak > 0.5 * thr
        if good.sum() < 12:
            break
        pts = np.stack([x + nx * offsets[j], y + ny * offsets[j]], axis=1)
        f = _fit(pts[good])
        if f is None or not _plausible(f, h, w):
            break
        e = f
    return e
