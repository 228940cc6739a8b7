"""Frames as the rest of the core expects them: ``(H, W, 3)`` uint8 RGB.

Below the model, CAM and measurement packages, which all take frames from the readers and
the viewer in whatever shape they come (grey, RGBA, 16-bit, float).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.errors import InferenceError

__all__ = ["as_rgb"]


def as_rgb(frame: NDArray) -> NDArray[np.uint8]:
    """``frame`` as ``(H, W, 3)`` uint8: grey is repeated, alpha dropped, 16-bit scaled."""
    arr = np.asarray(frame)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif arr.dtype != np.uint8:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise InferenceError(f"Unsupported frame dtype {arr.dtype}.")
        if arr.size == 0:
            raise InferenceError("The frame is empty.")
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if np.issubdtype(arr.dtype, np.integer) and lo >= 0 and hi <= 255:
            arr = arr.astype(np.uint8)
        else:
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            f = np.nan_to_num((arr.astype(np.float32) - lo) * scale)
            arr = f.clip(0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InferenceError(
            f"A frame must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {arr.shape}.",
            fix="Pass one 2-D image frame at a time.",
        )
    return np.ascontiguousarray(arr)
