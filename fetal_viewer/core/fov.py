"""Where the ultrasound image is in a frame: its field of view (the fan, sector or linear
image), without the burned-in text, colour bars and calipers' labels around it.

The model's preprocessing crops to it (:mod:`fetal_viewer.core.model.preprocess`) and the head
finder searches inside it (:mod:`fetal_viewer.core.measure.head`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.pixels import as_rgb

#: grey level (0-255) under which a pixel counts as background when finding the fan
_BACKGROUND_LEVEL = 12
#: local standard deviation (grey levels) that counts as image texture
_MIN_TEXTURE = 2.0
#: pieces at least this fraction of the largest one belong to the field of view
_PIECE_FRACTION = 0.15
#: longest side of the working copy used to find the field of view
_WORK_SIDE = 256
#: a field of view smaller than this fraction of the frame is not trusted
_MIN_FOV_FRACTION = 0.05


def pieces(mask: NDArray[np.uint8]) -> tuple[int, NDArray, NDArray]:
    """The connected pieces of an image-content ``mask`` once closed and opened by a disc of
    about 1/40 of its shorter side: speckle and dark fluid inside a fan join up, text strokes
    vanish. OpenCV's ``(count, labels, stats)``, the background being label 0."""
    import cv2

    k = max(3, (min(mask.shape[:2]) // 40) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    opened = cv2.morphologyEx(closed, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    return int(n), np.asarray(labels), np.asarray(stats)


def _fov_pieces(frame: NDArray) -> tuple[tuple[int, int], float, NDArray, NDArray, NDArray] | None:
    """The pieces of the field of view, found on a working copy at most ``_WORK_SIDE`` wide.

    Returns ``((h, w), scale, labels, stats, keep)``: the frame's shape, the working copy's
    scale, its connected-component labels and stats, and the labels kept as field of view;
    ``None`` when nothing convincing is found.
    """
    import cv2

    arr = np.asarray(frame)
    if arr.dtype == np.uint8 and arr.ndim == 2 and min(arr.shape) >= 2:
        grey = arr
    else:
        rgb = as_rgb(arr)
        # brightest channel; np.maximum is several times faster than max(axis=2)
        grey = np.maximum(np.maximum(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])
    h, w = grey.shape[:2]
    scale = min(1.0, _WORK_SIDE / max(h, w))
    small = (
        cv2.resize(
            grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        if scale < 1.0
        else grey
    )
    sh, sw = small.shape
    # background = the frame's border level (black in scanners, white in screenshots)
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    background = float(np.median(border))
    f = small.astype(np.float32)
    mean = cv2.blur(f, (5, 5))
    local_std = np.sqrt(np.maximum(cv2.blur(f * f, (5, 5)) - mean * mean, 0.0))
    # image content differs from the background and has texture (speckle); flat panels,
    # colour bars and header bands have none and are left out
    mask = ((np.abs(f - background) > _BACKGROUND_LEVEL) & (local_std > _MIN_TEXTURE)).astype(
        np.uint8
    )
    n, labels, stats = pieces(mask)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = int(areas.max())
    if largest < _MIN_FOV_FRACTION * sh * sw:
        return None
    # a fan split by dark fluid or shadows falls into a few large pieces: keep every piece
    # of at least a fraction of the largest one; text and icons are far smaller
    keep = 1 + np.flatnonzero(areas >= _PIECE_FRACTION * largest)
    return (int(h), int(w)), scale, np.asarray(labels), np.asarray(stats), keep


def find_fov(frame: NDArray) -> tuple[int, int, int, int]:
    """The ultrasound field of view ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of a frame.

    The fan (or sector/linear image) is the largest connected region of non-background
    pixels once speckle is closed and thin structures (text, scale bars, calipers' labels
    outside the image) are opened away. Small bright islands such as burned-in text,
    logos and colour bars are dropped. When nothing convincing is found, the whole frame
    is returned.
    """
    import cv2

    pieces = _fov_pieces(frame)
    if pieces is None:
        h, w = np.asarray(frame).shape[:2]
        return 0, 0, w, h
    (h, w), scale, _, stats, keep = pieces
    bx = int(stats[keep, cv2.CC_STAT_LEFT].min())
    by = int(stats[keep, cv2.CC_STAT_TOP].min())
    bx1 = int((stats[keep, cv2.CC_STAT_LEFT] + stats[keep, cv2.CC_STAT_WIDTH]).max())
    by1 = int((stats[keep, cv2.CC_STAT_TOP] + stats[keep, cv2.CC_STAT_HEIGHT]).max())
    bw, bh = bx1 - bx, by1 - by
    x0 = max(0, int(np.floor(bx / scale)))
    y0 = max(0, int(np.floor(by / scale)))
    x1 = min(w, int(np.ceil((bx + bw) / scale)))
    y1 = min(h, int(np.ceil((by + bh) / scale)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0, 0, w, h
    return x0, y0, x1, y1


def fov_mask(frame: NDArray, shape: tuple[int, int] | None = None) -> NDArray[np.bool_]:
    """Where the ultrasound image is: the pieces :func:`find_fov` keeps, as a mask.

    The mask is ``shape`` ``(rows, cols)`` (default: the frame's), resized from the working
    copy, so its edges are as coarse as that copy (about 1/256 of the longest side). Dark
    fluid that touches the fan's edge may be left out; take the convex hull where that
    matters. All true when nothing convincing is found.
    """
    import cv2

    frame_shape = np.asarray(frame).shape[:2]
    out_h, out_w = shape if shape is not None else (int(frame_shape[0]), int(frame_shape[1]))
    pieces = _fov_pieces(frame)
    if pieces is None:
        return np.ones((out_h, out_w), dtype=bool)
    _, _, labels, _, keep = pieces
    kept = np.isin(labels, keep).astype(np.uint8)
    resized = cv2.resize(kept, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    return np.asarray(resized, dtype=bool)
