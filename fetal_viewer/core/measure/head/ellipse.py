"""Ellipse geometry of the head finder: fits, sampling, profiles along normals.

An ellipse inside the package is a plain tuple ``(cx, cy, a, b, angle in radians)`` with
``a >= b`` (:data:`_Ellipse`); :class:`~fetal_viewer.core.measure.head.HeadFit` is the
public form, in degrees.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: plausible heads: axis ratio b/a, smallest b and largest a (fraction of longest side)
_MIN_AXIS_RATIO = 0.45
_MIN_B, _MAX_A = 0.05, 0.75
#: points sampled around an ellipse
_N_POINTS = 180


# an ellipse inside this package: (cx, cy, a, b, angle in radians), a >= b
_Ellipse = tuple[float, float, float, float, float]


def _ell(cx: float, cy: float, a: float, b: float, angle_deg: float) -> _Ellipse:
    return (cx, cy, a, b, math.radians(angle_deg))


def _from_cv(box: Any) -> _Ellipse | None:
    """An OpenCV ``((cx, cy), (w, h), angle)`` box as a package ellipse, ``a`` >= ``b``."""
    (cx, cy), (w, h), ang = box
    vals = (cx, cy, w, h, ang)
    if not all(math.isfinite(float(v)) for v in vals) or min(w, h) <= 1e-3:
        return None
    if w >= h:
        return (float(cx), float(cy), w / 2.0, h / 2.0, math.radians(float(ang) % 180.0))
    return (float(cx), float(cy), h / 2.0, w / 2.0, math.radians((float(ang) + 90.0) % 180.0))


def _cv_box(
    cx: float, cy: float, a: float, b: float, angle_deg: float
) -> tuple[tuple[float, float], tuple[float, float], float]:
    return (cx, cy), (2.0 * a, 2.0 * b), angle_deg


def _sample(e: _Ellipse, n: int) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """``n`` points around ``e`` and their outward unit normals: ``x, y, nx, ny``."""
    cx, cy, a, b, t = e
    s = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    u, v = a * np.cos(s), b * np.sin(s)
    ct, st = math.cos(t), math.sin(t)
    x = cx + u * ct - v * st
    y = cy + u * st + v * ct
    gu, gv = np.cos(s) / a, np.sin(s) / b
    nx, ny = gu * ct - gv * st, gu * st + gv * ct
    norm = np.hypot(nx, ny)
    return x, y, nx / norm, ny / norm


def _distance(pts: NDArray, e: _Ellipse) -> NDArray:
    """Approximate signed distance (pixels, positive outside) from ``pts`` to ``e``."""
    cx, cy, a, b, t = e
    x, y = pts[:, 0] - cx, pts[:, 1] - cy
    u = x * math.cos(t) + y * math.sin(t)
    v = -x * math.sin(t) + y * math.cos(t)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (rho - 1.0) * np.hypot(u, v) / np.maximum(rho, 1e-6)


def _fit(pts: NDArray, iterations: int = 5) -> _Ellipse | None:
    """Least-squares ellipse (Fitzgibbon's direct fit) with outliers beyond 2.5 MAD dropped."""
    import cv2

    keep = np.ones(len(pts), dtype=bool)
    e: _Ellipse | None = None
    for _ in range(iterations):
        if keep.sum() < 10:
            return None
        e = _from_cv(cv2.fitEllipseDirect(pts[keep].astype(np.float32)))
        if e is None:
            return None
        d = np.abs(_distance(pts, e))
        spread = 1.4826 * float(np.median(d[keep]))
        new = d < max(2.5 * spread, 1.0)
        if (new == keep).all():
            break
        keep = new
    return e


def _plausible(e: _Ellipse, h: int, w: int) -> bool:
    cx, cy, a, b, _ = e
    side = max(h, w)
    return (
        b >= _MIN_B * side
        and a <= _MAX_A * side
        and b / a >= _MIN_AXIS_RATIO
        and 0.0 <= cx < w
        and 0.0 <= cy < h
    )


def _axes_mm(a: float, b: float, angle_deg: float, sx: float, sy: float) -> tuple[float, float]:
    """Semi-axes (mm) of the pixel ellipse ``(a, b, angle)`` under spacing ``sx``, ``sy``."""
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    # points p = R diag(a, b) q with |q| = 1 map to S p; the semi-axes are the singular
    # values of S R diag(a, b)
    m = np.diag([sx, sy]) @ rot @ np.diag([a, b])
    sv = np.linalg.svd(m, compute_uv=False)
    return float(sv[0]), float(sv[1])


def _profiles(
    img: NDArray[np.float32], e: _Ellipse, offsets: NDArray, n: int = _N_POINTS
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """``img`` along the outward normals of ``e``: ``x, y, nx, ny`` and values ``(n, m)``
    at ``offsets``; -1 outside the image."""
    import cv2

    x, y, nx, ny = _sample(e, n)
    X = (x[:, None] + nx[:, None] * offsets[None, :]).astype(np.float32)
    Y = (y[:, None] + ny[:, None] * offsets[None, :]).astype(np.float32)
    vals = cv2.remap(img, X, Y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
    return x, y, nx, ny, np.asarray(vals)
