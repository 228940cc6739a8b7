"""Square pixels for DICOM images whose pixels are not square.

An ultrasound region with unequal PhysicalDeltaX/Y, or a header with a Pixel Aspect Ratio
(0028,0034) other than 1, stores a scan squashed along one axis. Shown or scored as stored,
a round skull looks oval: a radiologist misjudges it and the model reads it worse (a scan
squashed to a square loses a third of the normals it calls normal, docs/real-anatomy.md).
So the loader resamples such frames to square pixels, stretching the coarser axis (nothing
is lost), and every consumer (the view, the model, Grad-CAM, the head measurement) sees the
anatomy in its true proportions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fetal_viewer.core.io.study import (
    MAX_FRAME_PIXELS,
    MAX_TOTAL_BYTES,
    Calibration,
    FrameSource,
)
from fetal_viewer.core.io.values import first_number

#: aspects closer to 1 than this are left alone (rounding in the scanner's deltas)
TOLERANCE = 0.01
#: aspects beyond 1:MAX_ASPECT are taken for a damaged header and left alone
MAX_ASPECT = 4.0


@dataclass(frozen=True)
class SquarePixels:
    """A :class:`FrameSource` that resamples another's frames to ``(rows, cols)``."""

    inner: FrameSource
    rows: int
    cols: int

    def read(self, index: int) -> np.ndarray:
        import cv2

        frame = self.inner.read(index)
        return cv2.resize(frame, (self.cols, self.rows), interpolation=cv2.INTER_LINEAR)


def _declared_aspect(ds: Any) -> float | None:
    """Row height over column width from Pixel Aspect Ratio (vertical\\horizontal)."""
    value = ds.get("PixelAspectRatio")
    if value is None:
        return None
    try:
        parts = list(value)
    except TypeError:  # a single value
        return None
    if len(parts) != 2:
        return None
    v, h = first_number(parts[0]), first_number(parts[1])
    if v is None or h is None or v <= 0 or h <= 0:
        return None
    return v / h


def squaring(
    ds: Any, rows: int, cols: int, n_frames: int, calibration: Calibration
) -> tuple[int, int, Calibration]:
    """``(rows, cols, calibration)`` of an image ``rows`` x ``cols`` once its pixels are square.

    The aspect comes from the ultrasound calibration when there is one (the spacing the
    measurements use), else from Pixel Aspect Ratio. Returns the size unchanged when the
    pixels are square, or when the aspect is absurd (beyond 1:4, a damaged header).
    """
    if calibration.spacing_mm is not None:
        row_mm, col_mm = calibration.spacing_mm
        aspect = row_mm / col_mm
        source = f"{row_mm:.4g} x {col_mm:.4g} mm pixels"
    else:
        declared = _declared_aspect(ds)
        if declared is None:
            return rows, cols, calibration
        aspect = declared
        source = f"Pixel Aspect Ratio {aspect:.4g}:1"
    if abs(math.log(aspect)) <= math.log1p(TOLERANCE) or not (
        1 / MAX_ASPECT <= aspect <= MAX_ASPECT
    ):
        return rows, cols, calibration
    # stretch the coarser axis; if that would pass the size limits, shrink the finer one
    sy, sx = (aspect, 1.0) if aspect > 1 else (1.0, 1 / aspect)
    new_rows, new_cols = round(rows * sy), round(cols * sx)
    if (
        new_rows * new_cols > MAX_FRAME_PIXELS
        or new_rows * new_cols * 3 * n_frames > MAX_TOTAL_BYTES
    ):
        sy, sx = (1.0, 1 / aspect) if aspect > 1 else (aspect, 1.0)
        new_rows, new_cols = max(1, round(rows * sy)), max(1, round(cols * sx))
    sy, sx = new_rows / rows, new_cols / cols
    note = f"resampled from {source} to square pixels ({cols} x {rows} -> {new_cols} x {new_rows})"
    if calibration.spacing_mm is None:
        reason = f"{calibration.reason.rstrip('.')}; {note}" if calibration.reason else note
        return new_rows, new_cols, replace(calibration, reason=reason)
    row_mm, col_mm = calibration.spacing_mm
    spacing = (row_mm / sy, col_mm / sx)
    box = calibration.region
    if box is not None:
        x0, y0, x1, y1 = box
        box = (
            round(x0 * sx),
            round(y0 * sy),
            min(round((x1 + 1) * sx) - 1, new_cols - 1),
            min(round((y1 + 1) * sy) - 1, new_rows - 1),
        )
    note = f"{calibration.reason}; {note}"
    return new_rows, new_cols, Calibration(spacing_mm=spacing, region=box, reason=note)
