"""Image steps of the head finder: the grey clean-up, the field of view, the ridge map.

Steps 1 to 3 of the method in :mod:`fetal_viewer.core.measure.head`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

#: ridge filter: (Gaussian sigma, offset d) in working pixels, thin and thick skulls
_RIDGE_SCALES: tuple[tuple[float, float], ...] = ((1.5, 4.0), (3.0, 8.0))
#: directions the ridge filter tries (over 180 degrees)
_N_ORIENT = 8


def _grey(frame: NDArray) -> NDArray[np.uint8]:
    """Darkest channel (colour overlays drop out), thin bright strokes opened away."""
    import cv2

    from fetal_viewer.core.pixels import as_rgb

    arr = np.asarray(frame)
    if arr.dtype == np.uint8 and arr.ndim == 2:
        grey = np.ascontiguousarray(arr)
    else:
        rgb = as_rgb(arr)
        grey = np.minimum(np.minimum(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])
    opened = cv2.morphologyEx(grey, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    # text and dotted caliper lines: bright strokes at most two pixels wide
    # (OpenCV's saturating difference: where the opening is brighter it is 0, not > 60)
    thin = (grey > 150) & (cv2.subtract(grey, opened) > 60)
    if thin.any():
        thin = cv2.dilate(thin.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        grey = np.where(thin, opened, grey)
    return grey


def _resize(img: NDArray, scale: float) -> NDArray:
    import cv2

    if scale >= 1.0:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))


def _fan(frame: NDArray, work: NDArray[np.float32]) -> NDArray[np.bool_]:
    """The field of view on the working copy: convex hull of the fan, eroded.

    The fan is what :func:`~fetal_viewer.core.fov.fov_mask` finds plus the
    dark pixels a few grey levels off the border's level that are not flat (dark fluid
    and a term head's brain have little texture, but scanners lift them above the black
    outside; header panels are flat), closed, opened (text strokes vanish) and kept in
    pieces of at least 15% of the largest.
    """
    import cv2

    from fetal_viewer.core.fov import fov_mask, pieces

    h, w = work.shape
    u8 = np.clip(work, 0, 255).astype(np.uint8)
    border = np.concatenate([u8[0], u8[-1], u8[:, 0], u8[:, -1]])
    level = int(np.median(border))
    lift = np.abs(cv2.medianBlur(u8, 5).astype(np.int16) - level)
    mean = cv2.blur(work, (5, 5))
    noisy = cv2.blur(work * work, (5, 5)) - mean * mean > 0.2
    # dark but not black, and not flat: fluid or brain, not a header panel or a bar
    dark = (lift > 2) & (lift < 40) & noisy
    found = (dark | fov_mask(frame, (h, w))).astype(np.uint8)
    n, labels, stats = pieces(found)
    if n <= 1:
        return np.zeros((h, w), dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.15 * areas.max())
    # the pieces kept, by a look-up table over the labels (quicker than np.isin)
    is_kept = np.zeros(n, np.uint8)
    is_kept[keep] = 1
    kept = is_kept[labels]
    contours, _ = cv2.findContours(kept, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)
    # the frame's own border is a fan edge too
    hull[[0, -1], :] = 0
    hull[:, [0, -1]] = 0
    return np.asarray(cv2.erode(hull, np.ones((5, 5), np.uint8)), dtype=bool)


def _ridge(work: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """Bright-line strength (grey levels) and the index of its normal direction.

    Written for speed (this runs on every frame the model reads): the shifted copies go
    into buffers made once, and the arithmetic and masked copies are OpenCV's whole-image
    operations, which give the same numbers as numpy's.
    """
    import cv2

    h, w = work.shape
    best = np.zeros_like(work)
    arg = np.zeros(work.shape, np.uint8)
    fwd, bwd = np.empty_like(work), np.empty_like(work)
    better = np.empty(work.shape, np.uint8)
    direction = np.empty(work.shape, np.uint8)
    for sigma, d in _RIDGE_SCALES:
        blur = cv2.GaussianBlur(work, (0, 0), sigma)
        for k in range(_N_ORIENT):
            t = math.pi * k / _N_ORIENT
            dx, dy = d * math.cos(t), d * math.sin(t)
            cv2.warpAffine(
                blur,
                np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32),
                (w, h),
                dst=fwd,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            cv2.warpAffine(
                blur,
                np.array([[1, 0, -dx], [0, 1, -dy]], dtype=np.float32),
                (w, h),
                dst=bwd,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            # r = min(blur - fwd, blur - bwd), worked out as blur - max(fwd, bwd): rounding
            # keeps the order of differences from one number, so the two are the same
            r = cv2.subtract(blur, cv2.max(fwd, bwd, dst=fwd), dst=fwd)
            # where r beats the best so far, it and its direction k are kept
            cv2.compare(r, best, cv2.CMP_GT, dst=better)
            cv2.copyTo(r, better, best)
            direction.fill(k)
            cv2.copyTo(direction, better, arg)
    return best, arg
