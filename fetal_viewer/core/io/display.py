"""Mapping decoded pixel values to display-ready ``uint8`` RGB.

Input arrays are what pydicom's decoders return with ``as_rgb=True`` (so YBR data is
already RGB: it is never converted a second time). Rules:

- PALETTE COLOR: pydicom's ``apply_color_lut``; 16-bit LUT entries are scaled to 8 bits.
- MONOCHROME1/2: 8-bit unsigned data is shown as stored; anything else (16-bit, signed,
  float, under 8 bits) goes through the modality LUT (rescale), then the first VOI window
  when the header has one (or its VOI LUT), else the frame's min/max. MONOCHROME1 is
  inverted afterwards, so that bright means dense / echogenic on screen.
- RGB (and converted YBR) with more than 8 bits stored is shifted down to 8 bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fetal_viewer.core.io.values import first_number


def _minmax_u8(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.float64, copy=False)
    finite = np.isfinite(v)
    if not finite.all():
        v = np.where(finite, v, 0.0)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return np.zeros(v.shape, np.uint8)
    out = (v - lo) * (255.0 / (hi - lo))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def window_to_u8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI windowing (PS3.3 C.11.2.1.2.1) onto 0..255."""
    v = values.astype(np.float64, copy=False)
    if width <= 1:
        return np.where(v <= center - 0.5, 0, 255).astype(np.uint8)
    out = ((v - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def monochrome_to_u8(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Map one monochrome frame to uint8 (before any MONOCHROME1 inversion)."""
    if arr.dtype == np.uint8 and int(ds.get("BitsStored", 8) or 8) == 8:
        return arr
    from pydicom.pixels import apply_modality_lut, apply_voi_lut  # type: ignore[attr-defined]

    values = arr
    if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
        values = apply_modality_lut(arr, ds)
    center = first_number(ds.get("WindowCenter"))
    width = first_number(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        return window_to_u8(values, center, width)
    if "VOILUTSequence" in ds:
        return _minmax_u8(apply_voi_lut(values, ds, index=0))
    return _minmax_u8(values)


def palette_shift(ds: Any) -> int:
    """Right shift that brings this file's palette entries to 8 bits (0 or 8).

    The descriptor's bit depth is not trusted alone: some files declare 16-bit entries
    that hold 8-bit values, so the shift comes from the largest entry of the table.
    """
    from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]

    desc = ds.get("RedPaletteColorLookupTableDescriptor")
    if desc is None or len(desc) < 3 or int(desc[2]) <= 8:
        return 0
    n = int(desc[0]) or 65536
    first = int(desc[1])
    index = np.arange(first, first + n, dtype=np.uint16 if first + n > 256 else np.uint8)
    table = apply_color_lut(index, ds)
    return 8 if int(table.max()) > 255 else 0


def to_display_rgb(arr: np.ndarray, ds: Any, palette_bits_shift: int | None = None) -> np.ndarray:
    """One decoded frame (pydicom layout, YBR already RGB) as ``(rows, cols, 3)`` uint8.

    ``palette_bits_shift`` is :func:`palette_shift` of ``ds`` (computed when ``None``).
    """
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]

        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:
            shift = palette_shift(ds) if palette_bits_shift is None else palette_bits_shift
            rgb = np.clip(rgb >> shift, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(rgb)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if arr.dtype.kind == "f":
            return _minmax_u8(arr)
        bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8) or arr.dtype.itemsize * 8)
        shifted = arr.astype(np.uint64, copy=False) >> max(bits - 8, 0)
        return np.clip(shifted, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    gray = monochrome_to_u8(arr, ds)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
