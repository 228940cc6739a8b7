"""Ellipse geometry of the head finder: fits, sampling, profiles along normals.

An ellipse inside the package is a plain tuple ``(cx, cy, a, b, angle in radians)`` with
``a >= b`` (:data:`_Ellipse`); :class:`~fetal_viewer.core.measure.head.HeadFit` is the
public form, in degrees.
"""

from __future__ import annotations

import functools
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
    finite = (
        math.isfinite(float(cx))
        and math.isfinite(float(cy))
        and math.isfinite(float(w))
        and math.isfinite(float(h))
        and math.isfinite(float(ang))
    )
    if not finite or min(w, h) <= 1e-3:
        return None
    if w >= h:
        return (float(cx), float(cy), w / 2.0, h / 2.0, math.radians(float(ang) % 180.0))
    return (float(cx), float(cy), h / 2.0, w / 2.0, math.radians((float(ang) + 90.0) % 180.0))


def _cv_box(
    cx: float, cy: float, a: float, b: float, angle_deg: float
) -> tuple[tuple[float, float], tuple[float, float], float]:
    return (cx, cy), (2.0 * a, 2.0 * b), angle_deg


@functools.lru_cache(maxsize=8)
def _unit_circle(n: int) -> tuple[NDArray, NDArray]:
    """``cos`` and ``sin`` of ``n`` angles evenly around the circle, read-only: every ellipse
    sampled with ``n`` points shares them (they are the same arrays whoever asks)."""
    s = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    cos_s, sin_s = np.cos(s), np.sin(s)
    cos_s.flags.writeable = False
    sin_s.flags.writeable = False
    return cos_s, sin_s


def _sample(e: _Ellipse, n: int) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """``n`` points around ``e`` and their outward unit normals: ``x, y, nx, ny``."""
    cx, cy, a, b, t = e
    cos_s, sin_s = _unit_circle(n)
    u, v = a * cos_s, b * sin_s
    ct, st = math.cos(t), math.sin(t)
    x = cx + u * ct - v * st
    y = cy + u * st + v * ct
    gu, gv = cos_s / a, sin_s / b
    nx, ny = gu * ct - gv * st, gu * st + gv * ct
    norm = np.hypot(nx, ny)
    return x, y, nx / norm, ny / norm


def _sample_many(ells: list[_Ellipse], n: int) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """:func:`_sample` of several ellipses at once, ``(len(ells), n)`` each, exactly the same
    numbers (the same operations, one row per ellipse)."""
    params = np.array([e[:4] for e in ells], np.float64)
    cx, cy, a, b = params[:, 0:1], params[:, 1:2], params[:, 2:3], params[:, 3:4]
    ct = np.array([math.cos(e[4]) for e in ells])[:, None]
    st = np.array([math.sin(e[4]) for e in ells])[:, None]
    cos_s, sin_s = _unit_circle(n)
    u, v = a * cos_s, b * sin_s
    x = cx + u * ct - v * st
    y = cy + u * st + v * ct
    gu, gv = cos_s / a, sin_s / b
    nx, ny = gu * ct - gv * st, gu * st + gv * ct
    norm = np.hypot(nx, ny)
    return x, y, nx / norm, ny / norm


def _distance(xy: NDArray, e: _Ellipse) -> NDArray:
    """Approximate signed distance (pixels, positive outside) from points to ``e``; ``xy``
    holds the points' x in its first row and their y in its second.

    Rotated into the ellipse's frame, a point is ``u = x cos(t) + y sin(t)``,
    ``v = -x sin(t) + y cos(t)``. This runs thousands of times per frame on a few hundred
    points, so x and y are worked on as the two rows of one array, in place where it can.
    """
    cx, cy, a, b, t = e
    ct, st = math.cos(t), math.sin(t)
    rel = xy - np.array([[cx], [cy]])
    by_cos, by_sin = rel * ct, rel * st
    uv = np.empty_like(rel)
    np.add(by_cos[0], by_sin[1], out=uv[0])
    np.subtract(by_cos[1], by_sin[0], out=uv[1])  # y cos(t) - x sin(t): v exactly
    scaled = uv / np.array([[a], [b]])
    scaled *= scaled
    rho = np.sqrt(scaled[0] + scaled[1])  # sqrt((u / a)^2 + (v / b)^2)
    d = rho - 1.0
    d *= np.hypot(uv[0], uv[1])
    d /= np.maximum(rho, 1e-6)
    return d


def _fit(pts: NDArray, iterations: int = 5) -> _Ellipse | None:
    """Least-squares ellipse (Fitzgibbon's direct fit) with outliers beyond 2.5 MAD dropped."""
    import cv2

    # made once for all iterations: what OpenCV fits, and the rows _distance takes
    pts32 = pts.astype(np.float32)
    xy = np.ascontiguousarray(pts.T)
    keep = np.ones(len(pts), dtype=bool)
    e: _Ellipse | None = None
    for _ in range(iterations):
        if np.count_nonzero(keep) < 10:
            return None
        e = _from_cv(cv2.fitEllipseDirect(pts32.compress(keep, axis=0)))
        if e is None:
            return None
        d = _distance(xy, e)
        np.abs(d, out=d)
        spread = 1.4826 * _median(d[keep])
        new = d < max(2.5 * spread, 1.0)
        if new.tobytes() == keep.tobytes():  # the same points kept (quicker than ==, all)
            break
        keep = new
    return e


def _median(v: NDArray) -> float:
    """``float(np.median(v))``, bit for bit, at a fraction of its cost on short arrays.

    The head finder takes thousands of medians of a few hundred values per frame, where
    :func:`numpy.median`'s own overhead is most of the time. This is what it does: the
    middle order statistics by partition (with the largest value last, as a NaN would be),
    then their mean in ``v``'s dtype, summed from zero as numpy's ``mean`` sums.
    """
    n = v.size
    if n == 0:
        return float(np.median(v))
    h = n // 2
    part = np.partition(v.ravel(), [h - 1, h, n - 1] if n % 2 == 0 else [h, n - 1])
    if np.isnan(part[-1]):
        return math.nan
    zero = v.dtype.type(0)
    if n % 2:
        return float(zero + part[h])  # numpy divides this by 1
    return float((zero + (part[h - 1] + part[h])) / 2)


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
    # positions worked out in float64 and rounded once, on writing, to OpenCV's float32
    X, Y = np.empty((2, n, len(offsets)), np.float32)
    np.add(x[:, None], nx[:, None] * offsets[None, :], out=X, dtype=np.float64, casting="same_kind")
    np.add(y[:, None], ny[:, None] * offsets[None, :], out=Y, dtype=np.float64, casting="same_kind")
    vals = cv2.remap(img, X, Y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
    return x, y, nx, ny, np.asarray(vals)


def _profiles_many(
    img: NDArray[np.float32], ells: list[_Ellipse], offsets: NDArray, n: int = _N_POINTS
) -> NDArray:
    """The values of :func:`_profiles` for several ellipses, ``(len(ells), n, m)``, read in
    one ``remap`` (each value depends on its own position only, so they are the same)."""
    import cv2

    x, y, nx, ny = _sample_many(ells, n)
    X, Y = np.empty((2, len(ells), n, len(offsets)), np.float32)
    np.add(x[..., None], nx[..., None] * offsets, out=X, dtype=np.float64, casting="same_kind")
    np.add(y[..., None], ny[..., None] * offsets, out=Y, dtype=np.float64, casting="same_kind")
    rows = len(ells) * n
    vals = cv2.remap(
        img,
        X.reshape(rows, -1),
        Y.reshape(rows, -1),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=-1.0,
    )
    return np.asarray(vals).reshape(len(ells), n, len(offsets))
