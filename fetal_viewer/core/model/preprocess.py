"""One preprocessing path for training and inference.

``preprocess(frame, spec)`` runs the whole chain and returns the network input with the
:class:`Geometry` that maps a heatmap back onto the original frame::

    frame (H, W, 3) uint8 RGB  (or (H, W) grey)
      -> crop_to_fov(frame)              -> crop, box     field of view only
      -> resize_pad(crop, size)          -> resized, (nw, nh, left, top)
      -> to_tensor_array(resized, spec)  -> float32 (3, S, S), normalised

Training puts its augmentation between the crop/resize steps and ``to_tensor_array`` (both
are public for that reason), so the field-of-view crop and the normalisation are exactly
the ones used at inference time. ``PreprocessSpec.version`` is written in the model card;
bump it whenever this chain changes what the network sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.fov import find_fov
from fetal_viewer.core.pixels import as_rgb
from fetal_viewer.errors import InferenceError

#: version of this preprocessing chain, written into model cards
PREPROCESS_VERSION = "1"

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """What the network expects: square input size, per-channel mean/std on [0, 1]."""

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    version: str = PREPROCESS_VERSION


@dataclass(frozen=True)
class Geometry:
    """How one frame was mapped onto the network input.

    ``box`` is the field of view ``(x0, y0, x1, y1)`` in the frame (x1, y1 exclusive); the
    crop was resized to ``(scaled_w, scaled_h)`` and placed at ``(left, top)`` of a black
    ``input_size`` square.
    """

    frame_shape: tuple[int, int]
    box: tuple[int, int, int, int]
    input_size: int
    scaled_w: int
    scaled_h: int
    left: int
    top: int

    def to_frame(self, heatmap: NDArray) -> NDArray[np.float32]:
        """Map a heatmap over the network input back onto the original frame.

        ``heatmap`` is ``(S, S)`` (any square size is first resized to the input size);
        the result is ``(H, W)`` float32, zero outside the field of view.
        """
        import cv2

        hm = np.asarray(heatmap, dtype=np.float32)
        if hm.ndim != 2:
            raise InferenceError(f"A heatmap must be 2-D, got shape {hm.shape}.")
        size = self.input_size
        if hm.shape != (size, size):
            hm = np.asarray(cv2.resize(hm, (size, size), interpolation=cv2.INTER_LINEAR))
        region = hm[self.top : self.top + self.scaled_h, self.left : self.left + self.scaled_w]
        x0, y0, x1, y1 = self.box
        back = cv2.resize(region, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out = np.zeros(self.frame_shape, dtype=np.float32)
        out[y0:y1, x0:x1] = back
        return out

    def to_input(self, x: float, y: float) -> tuple[float, float]:
        """Where frame pixel ``(x, y)`` lands in the network input (pixel centres)."""
        x0, y0, x1, y1 = self.box
        sx = self.scaled_w / (x1 - x0)
        sy = self.scaled_h / (y1 - y0)
        return (x + 0.5 - x0) * sx - 0.5 + self.left, (y + 0.5 - y0) * sy - 0.5 + self.top


@dataclass(frozen=True)
class Preprocessed:
    """The network input of one frame and the geometry that produced it."""

    array: NDArray[np.float32]
    geometry: Geometry


def crop_to_fov(frame: NDArray) -> tuple[NDArray[np.uint8], tuple[int, int, int, int]]:
    """The field of view of ``frame`` as an RGB uint8 crop, and its box in the frame."""
    rgb = as_rgb(frame)
    x0, y0, x1, y1 = find_fov(rgb)
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), (x0, y0, x1, y1)


def resize_pad(
    crop: NDArray[np.uint8], size: int
) -> tuple[NDArray[np.uint8], tuple[int, int, int, int]]:
    """Fit ``crop`` into a black ``size`` square keeping its aspect ratio.

    Returns the square and ``(scaled_w, scaled_h, left, top)``: where the crop landed.
    """
    import cv2

    h, w = crop.shape[:2]
    scale = size / max(h, w)
    nw = min(size, max(1, round(w * scale)))
    nh = min(size, max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (nw, nh), interpolation=interp)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    out = np.zeros((size, size, crop.shape[2] if crop.ndim == 3 else 1), dtype=np.uint8)
    left, top = (size - nw) // 2, (size - nh) // 2
    out[top : top + nh, left : left + nw] = resized
    return out, (nw, nh, left, top)


def to_tensor_array(resized: NDArray[np.uint8], spec: PreprocessSpec) -> NDArray[np.float32]:
    """Normalise an ``(S, S, 3)`` (or grey ``(S, S)``) uint8 image to float32 ``(3, S, S)``."""
    arr = np.asarray(resized)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    x = arr.astype(np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, dtype=np.float32)
    x = (x - mean) * inv_std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(frame: NDArray, spec: PreprocessSpec) -> Preprocessed:
    """The network input of one frame and the geometry to map heatmaps back."""
    rgb = as_rgb(frame)
    crop, box = crop_to_fov(rgb)
    resized, (nw, nh, left, top) = resize_pad(crop, spec.input_size)
    geometry = Geometry(
        frame_shape=(rgb.shape[0], rgb.shape[1]),
        box=box,
        input_size=spec.input_size,
        scaled_w=nw,
        scaled_h=nh,
        left=left,
        top=top,
    )
    return Preprocessed(to_tensor_array(resized, spec), geometry)
