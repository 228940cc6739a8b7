"""Scores of the head finder and the full-resolution border of the best ring.

Steps 6 and 7 of the method in :mod:`fetal_viewer.core.measure.head`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.head.ellipse import (
    _MIN_AXIS_RATIO,
    _Ellipse,
    _fit,
    _median,
    _profiles,
)
from fetal_viewer.core.measure.head.results import HeadFit

#: mean of the ring-to-inside and ring-to-outside contrasts: the score ramps from 0 to 1
#: between these
_CONTRAST = (0.1, 0.5)
#: the echo's outer border is looked for this far (full-resolution pixels) beyond its peak
#: (or 8% of b if more); chosen on the tune half of HC18 among 8, 12, 16 and 24
_BORDER_REACH_PX = 16.0


def _ramp(v: float, lo: float, hi: float) -> float:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between."""
    return min(1.0, max(0.0, (v - lo) / (hi - lo)))


def _score(
    e: _Ellipse,
    ridge: NDArray[np.float32],
    fan: NDArray[np.bool_],
    work: NDArray[np.float32],
    thr: float,
) -> tuple[float, dict[str, float]]:
    """Score in [0, 1] of ``e`` (at the echo's middle line) on the working copy, and parts.

    ``support`` x sqrt(``visible``) x axis-ratio ramp x contrast ramp. The contrasts compare
    the ring's grey with bands at 15-25% of ``b`` inside and outside it (outside the fan
    counts as dark): a skull is brighter than the brain it holds and than what lies
    outside; the rims of fluid pockets and tissue layers are not, on both sides. Their mean
    is used: a first-trimester brain is bright, a term head lies against bright tissue.
    """
    h, w = ridge.shape
    offsets = np.arange(-1.5, 1.51, 0.5)
    x, y, _, _, vals = _profiles(ridge, e, offsets)
    xi = np.clip(np.round(x).astype(np.int64), 0, w - 1)
    yi = np.clip(np.round(y).astype(np.int64), 0, h - 1)
    vis = (x >= 0) & (x < w) & (y >= 0) & (y < h) & fan[yi, xi]
    visible = float(vis.mean())
    parts = {"support": 0.0, "visible": visible, "contrast_in": 0.0, "contrast_out": 0.0}
    if vis.sum() < 0.3 * len(vis):
        return 0.0, parts
    on = vals.max(axis=1) > thr
    parts["support"] = float(on[vis].mean())
    b = e[3]
    bands = np.array([-0.25, -0.15, 0.0, 0.15, 0.25]) * b
    _, _, _, _, grey = _profiles(work, e, bands)
    ok = vis & (grey >= 0).all(axis=1)
    if ok.sum() < 10:
        return 0.0, parts
    ring = _median(grey[ok, 2])
    parts["contrast_in"] = (ring - _median(grey[ok, :2])) / max(ring, 1.0)
    parts["contrast_out"] = (ring - _median(grey[ok, 3:])) / max(ring, 1.0)
    score = (
        parts["support"]
        * math.sqrt(visible)
        * _ramp(b / e[2], _MIN_AXIS_RATIO, _MIN_AXIS_RATIO + 0.2)
        * _ramp(0.5 * (parts["contrast_in"] + parts["contrast_out"]), *_CONTRAST)
    )
    return score, parts


def _full_resolution(
    grey: NDArray[np.uint8],
    e_work: _Ellipse,
    scale: float,
    ridge: NDArray[np.float32],
    fan: NDArray[np.bool_],
    work: NDArray[np.float32],
    thr: float,
) -> HeadFit | None:
    """Pull the working-copy ellipse onto the full-resolution echo, move it to the outer
    border, and score it."""
    import cv2

    cx, cy, a, b, t = e_work
    e: _Ellipse = (cx / scale, cy / scale, a / scale, b / scale, t)
    img = np.asarray(cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0), dtype=np.float32)
    for _ in range(2):
        band = max(6.0, 0.06 * e[3])
        offsets = np.arange(-band, band + 0.01, 0.5)
        x, y, nx, ny, vals = _profiles(img, e, offsets)
        inside = (vals >= 0).all(axis=1)
        if inside.sum() < 12:
            break
        j = np.argmax(vals, axis=1)
        peak = vals[np.arange(len(j)), j]
        good = inside & (peak > np.percentile(peak[inside], 30))
        if good.sum() < 12:
            break
        f = _fit(np.stack([x + nx * offsets[j], y + ny * offsets[j]], axis=1)[good])
        if f is None:
            break
        e = f
    outer, inner = _borders(img, e)
    cx, cy, a, b, t = e
    # score on the working copy, at the echo's middle line
    s, feats = _score((cx * scale, cy * scale, a * scale, b * scale, t), ridge, fan, work, thr)
    a_out, b_out = a + outer, b + outer
    if b_out <= 1.0:
        return None
    return HeadFit(
        cx=cx,
        cy=cy,
        a=a_out,
        b=b_out,
        angle_deg=math.degrees(t) % 180.0,
        skull_px=max(0.0, outer - inner),
        score=float(min(1.0, max(0.0, s))),
        support=feats["support"],
        visible=feats["visible"],
        contrast_in=feats["contrast_in"],
        contrast_out=feats["contrast_out"],
    )


def _borders(img: NDArray[np.float32], e: _Ellipse) -> tuple[float, float]:
    """Outer and inner border of the echo along ``e`` (pixels from ``e``, outer > 0 > inner):
    median positions of the steepest fall outside and the steepest rise inside the peak."""
    b = e[3]
    reach = max(_BORDER_REACH_PX, 0.08 * b)
    step = 0.5
    offsets = np.arange(-reach, reach + 0.01, step)
    _, _, _, _, vals = _profiles(img, e, offsets)
    inside = (vals >= 0).all(axis=1)
    if inside.sum() < 12:
        return 0.0, 0.0
    vals = vals[inside]
    mid = len(offsets) // 2
    half = min(len(offsets) // 4, int(6.0 / step))
    j = mid - half + np.argmax(vals[:, mid - half : mid + half + 1], axis=1)
    peak = vals[np.arange(len(j)), j]
    strong = peak > np.percentile(peak, 30)
    if not strong.any():  # a flat ring (every peak alike): all of it
        strong[:] = True
    diff = np.diff(vals, axis=1)  # diff[:, k] lies between offsets k and k+1
    cols = np.arange(diff.shape[1])[None, :]
    after = np.where(cols >= j[:, None], diff, np.inf)
    before = np.where(cols < j[:, None], diff, -np.inf)
    fall = offsets[0] + (np.argmin(after, axis=1) + 0.5) * step
    rise = offsets[0] + (np.argmax(before, axis=1) + 0.5) * step
    return _median(fall[strong]), _median(rise[strong])
