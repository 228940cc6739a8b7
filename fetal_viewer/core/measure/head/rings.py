"""Rings of the head finder: centre votes, closed paths, ellipse fits pulled onto the ridge.

Steps 4 and 5 of the method in :mod:`fetal_viewer.core.measure.head`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.head.ellipse import (
    _Ellipse,
    _fit,
    _median,
    _plausible,
    _profiles,
    _profiles_many,
)
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
#: voters whose votes are made together (a speed setting only: see :func:`_vote`)
_VOTE_BLOCK = 256
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
    if len(wts) == 0:  # no votes, no peaks
        return np.zeros((0, 3))
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
    n_cells = _N_RADIUS_BINS * gh * gw
    rbin_cell = rbin * (gh * gw)  # first cell of each radius's bin
    # Written for speed (this runs on every frame the model reads), with the same sums as
    # voting all at once: the votes are made a block of voters at a time (temporaries of
    # all voters x radii are megabytes, and fresh memory costs more than the arithmetic),
    # a vote outside the frame goes to a spare cell past the map rather than being masked
    # out, and each sign's votes are counted by one ``bincount`` in (voter, radius) order,
    # so every cell adds up the same weights in the same order.
    cos_t, sin_t = np.cos(t), np.sin(t)
    cells = np.empty((2, len(wts), len(radii)), np.int64)  # one layer per sign
    for lo in range(0, len(wts), _VOTE_BLOCK):
        block = slice(lo, lo + _VOTE_BLOCK)
        bx, by = xs[block, None], ys[block, None]
        # (-cos) * r is -(cos * r) exactly: one product serves both signs
        dx, dy = cos_t[block, None] * radii, sin_t[block, None] * radii
        for layer, (vx, vy) in enumerate([(bx + dx, by + dy), (bx - dx, by - dy)]):
            ok = (vx >= 0) & (vx < w) & (vy >= 0) & (vy < h)
            cell = (vy / q).astype(np.int64) * gw + (vx / q).astype(np.int64) + rbin_cell
            cells[layer, block] = np.where(ok, cell, n_cells)
    vote_wts = np.repeat(wts, len(radii))  # voter by voter, as the cells are laid out
    acc = np.zeros(n_cells, np.float64)
    for layer in range(2):
        acc += np.bincount(cells[layer].ravel(), vote_wts, n_cells + 1)[:n_cells]
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


def _polar(ridge: NDArray[np.float32], centres: NDArray) -> NDArray:
    """Log-polar samples ``(C, angles, radii)`` of ``ridge`` around each centre; sample
    ``(a, r)`` of centre ``(cx, cy)`` lies at ``(cx + dx[a, r], cy + dy[a, r])`` with
    ``dx, dy = _polar_offsets(max(ridge.shape))``."""
    import cv2

    dx, dy = _polar_offsets(max(ridge.shape))
    c, (na, nr) = len(centres), dx.shape
    # the sample positions are worked out in float64 and rounded once to OpenCV's float32
    map_x, map_y = np.empty((2, c, na, nr), np.float32)
    np.add(centres[:, 0, None, None], dx, out=map_x, dtype=np.float64, casting="same_kind")
    np.add(centres[:, 1, None, None], dy, out=map_y, dtype=np.float64, casting="same_kind")
    vals = cv2.remap(
        ridge,
        map_x.reshape(c * na, nr),
        map_y.reshape(c * na, nr),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.asarray(vals).reshape(c, na, nr)


@functools.lru_cache(maxsize=8)
def _polar_offsets(side: int) -> tuple[NDArray, NDArray]:
    """Offsets ``(angles, radii)`` in x and y of the polar grid's samples from its centre,
    read-only; the same for every frame of one size, so made once."""
    radii = _polar_radii(side)
    th = 2.0 * np.pi * np.arange(_N_ANGLES) / _N_ANGLES
    dx, dy = np.cos(th)[:, None] * radii[None, :], np.sin(th)[:, None] * radii[None, :]
    dx.flags.writeable = False
    dy.flags.writeable = False
    return dx, dy


def _polar_radii(side: int) -> NDArray:
    return np.geomspace(_R_MIN * side, _R_MAX * side, _N_RADII)


def _ring_paths(polar: NDArray) -> NDArray[np.int64]:
    """Brightest closed path per centre: radius index ``(C, angles)``.

    Dynamic programming over one and a half turns, radius changing by at most
    ``_DP_STEP`` bins per angle at a cost growing with the step squared; the last full
    turn is kept (its start has forgotten the arbitrary first angle).

    Speed (this runs on every frame the model reads): the forward pass keeps only the
    best score per bin (a maximum over the ``2 * _DP_STEP + 1`` steps, with the candidates
    on the last axis so that each angle is three whole-array operations); which step won
    is worked out again, as the first of equals like ``argmax``, only for the one bin per
    candidate that the path goes through while walking back. The scores (finite: ridge
    strengths and -1e3) and the path are exactly those of keeping every ``argmax``.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    c, na, nr = polar.shape
    k = _DP_STEP
    n = na + na // 2
    # ext[i, r, j]: candidate j's ridge at angle i (one and a half turns) and radius bin r
    ext = np.empty((n, nr, c), np.float32)
    ext[:na] = polar.transpose(1, 2, 0)
    ext[na:] = polar[:, : na // 2].transpose(1, 2, 0)
    steps = np.arange(-k, k + 1)
    cost = (_DP_PENALTY * steps * steps).astype(np.float32)
    # score[i, k + r, j]: best path of candidate j up to angle i ending at radius bin r;
    # the -inf margins stand for the bins a step may not leave the grid to
    width = nr + 2 * k
    score = np.full((n, width, c), -np.inf, np.float32)
    score[0, k : k + nr] = ext[0]
    # arriving[i, j, r]: score[i, r + j] (= bin r + steps[j] at angle i), a view
    arriving = sliding_window_view(score, nr, axis=1).transpose(0, 1, 3, 2)
    less_cost = np.empty((2 * k + 1, nr, c), np.float32)
    for i in range(1, n):
        np.subtract(arriving[i - 1], cost[:, None, None], out=less_cost)
        best = score[i, k : k + nr]
        np.maximum.reduce(less_cost, axis=0, out=best)
        best += ext[i]
    # walking back over the last full turn (all that is kept), with the path's cell at
    # each angle as a flat index into ``score``: the cell one angle back that a step of
    # ``steps[j]`` arrives from is ``back[j]`` away
    flat = score.reshape(-1)
    back = (steps - width) * c
    cell = np.empty((na, c), np.int64)  # cell[m]: at angle n - na + m
    cell[-1] = ((n - 1) * width + k + np.argmax(score[-1, k : k + nr], axis=0)) * c + np.arange(c)
    for m in range(na - 1, 0, -1):
        came = np.take(flat, cell[m, :, None] + back) - cost
        cell[m - 1] = cell[m] + back[came.argmax(axis=1)]
    out = np.empty((c, na), np.int64)
    out[:, np.arange(n - na, n) % na] = (cell.T // c) % width - k
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
    dx, dy = _polar_offsets(max(h, w))
    for _ in range(2):
        idx = [i for i in range(n) if alive[i]]
        if not idx:
            break
        polar = _polar(ridge, cur[idx])
        polar = np.where(outside[idx][:, None, :], -1e3, polar)
        paths = _ring_paths(polar)
        for j, i in enumerate(idx):
            sup = polar[j, ang, paths[j]]
            pos = sup > 0
            if pos.sum() < 10:
                alive[i] = False
                continue
            ok = sup > 0.25 * _median(sup[pos])
            # cur[i] is still the centre this pass's polar grid was laid around
            pts = np.stack([cur[i, 0] + dx[ang, paths[j]], cur[i, 1] + dy[ang, paths[j]]], axis=1)
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
    fits = [e]
    for k in range(8):
        keep = valid & (sector != k) & (sector != (k + 1) % 8)
        if np.count_nonzero(keep) < 10:
            continue
        f = _fit(pts[keep])
        if f is None or not _plausible(f, h, w):
            continue
        fits.append(f)
    # the supports of all fits are read at once; the first best is kept, in the same order
    supports = _supports(fits, ridge)
    best, best_s = e, supports[0]
    for f, s in zip(fits[1:], supports[1:], strict=True):
        if s > best_s:
            best, best_s = f, s
    return best


def _supports(ells: list[_Ellipse], ridge: NDArray[np.float32]) -> list[float]:
    """Mean ridge strength at most 1.5 px from each ellipse, over its points inside the
    image (times the root of their share; 0 when under 30% are inside)."""
    offsets = np.arange(-1.5, 1.51, 0.5)
    vals = _profiles_many(ridge, ells, offsets)
    inside = np.asarray((vals >= 0).all(axis=2))
    peak = vals.max(axis=2)
    out = []
    for ins, pk in zip(inside, peak, strict=True):
        if ins.sum() < 0.3 * len(ins):
            out.append(0.0)
        else:
            out.append(float(pk[ins].mean() * math.sqrt(ins.mean())))
    return out


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
