"""Heatmap overlays as numpy arrays (the GUI converts them to QImage).

``blend(frame, heatmap, alpha, colormap)`` colours a ``[0, 1]`` heatmap that already lies
in the frame's geometry (see :meth:`fetal_viewer.core.model.preprocess.Geometry.to_frame`)
and mixes it over the frame with the given opacity.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.errors import InferenceError

#: colormap names accepted by :func:`colorize` and :func:`blend`
COLORMAPS: tuple[str, ...] = ("jet", "turbo", "inferno", "viridis", "magma", "hot")


def _lut(name: str) -> NDArray[np.uint8]:
    import cv2

    codes = {
        "jet": cv2.COLORMAP_JET,
        "turbo": cv2.COLORMAP_TURBO,
        "inferno": cv2.COLORMAP_INFERNO,
        "viridis": cv2.COLORMAP_VIRIDIS,
        "magma": cv2.COLORMAP_MAGMA,
        "hot": cv2.COLORMAP_HOT,
    }
    if name not in codes:
        raise InferenceError(
            f"Unknown colormap {name!r}.", fix=f"Use one of: {', '.join(COLORMAPS)}."
        )
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, codes[name]).reshape(256, 3)
    return np.ascontiguousarray(bgr[:, ::-1])


def colorize(heatmap: NDArray, colormap: str = "jet") -> NDArray[np.uint8]:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` uint8 RGB."""
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2:
        raise InferenceError(f"A heatmap must be 2-D, got shape {hm.shape}.")
    idx = np.rint(np.nan_to_num(hm).clip(0.0, 1.0) * 255.0).astype(np.uint8)
    return _lut(colormap)[idx]


def blend(
    frame: NDArray,
    heatmap: NDArray,
    alpha: float = 0.4,
    colormap: str = "jet",
    threshold: float = 0.0,
) -> NDArray[np.uint8]:
    """The frame with ``heatmap`` colour-mapped over it at opacity ``alpha``.

    Pixels whose heatmap value is ``<= threshold`` (for example outside the field of view,
    where :meth:`Geometry.to_frame` gives 0) keep the frame unchanged.
    """
    from fetal_viewer.core.model.preprocess import as_rgb

    rgb = as_rgb(frame)
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.shape != rgb.shape[:2]:
        raise InferenceError(
            f"Heatmap shape {hm.shape} does not match frame shape {rgb.shape[:2]}.",
            fix="Map the heatmap to the frame with Geometry.to_frame first.",
        )
    if not 0.0 <= alpha <= 1.0:
        raise InferenceError(f"Opacity must be within 0..1, got {alpha}.")
    color = colorize(hm, colormap).astype(np.float32)
    base = rgb.astype(np.float32)
    mixed = base * np.float32(1.0 - alpha) + color * np.float32(alpha)
    keep = (hm <= threshold)[:, :, None]
    out = np.where(keep, base, mixed)
    return np.rint(out).clip(0, 255).astype(np.uint8)
