"""Shared preprocessing: field of view, normalisation, geometry back to the frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fetal_viewer.core.fov import find_fov
from fetal_viewer.core.model.preprocess import (
    PreprocessSpec,
    crop_to_fov,
    preprocess,
    to_tensor_array,
)


def _scanner_frame(seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 240x320 screen: black, a speckled fan, burned-in text and a grey side bar."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((240, 320, 3), np.uint8)
    fan = np.zeros((240, 320), np.uint8)
    cv2.ellipse(fan, (160, 30), (180, 180), 90, -35, 35, 255, -1)
    speckle = rng.gamma(2.0, 40.0, fan.shape).clip(20, 255).astype(np.uint8)
    speckle[120:150, 140:180] = 3  # dark fluid inside the fan
    for c in range(3):
        frame[:, :, c] = np.where(fan > 0, speckle, 0)
    cv2.putText(frame, "GE 12Hz MI 0.9", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    frame[40:200, 306:312] = 180  # flat grey scale bar
    ys, xs = np.nonzero(fan)
    return frame, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_fov_finds_the_fan_and_drops_text_and_bars() -> None:
    frame, (x0, y0, x1, y1) = _scanner_frame()
    fx0, fy0, fx1, fy1 = find_fov(frame)
    assert abs(fx0 - x0) <= 6 and abs(fx1 - x1) <= 6
    assert abs(fy0 - y0) <= 6 and abs(fy1 - y1) <= 6
    crop, box = crop_to_fov(frame)
    assert box == (fx0, fy0, fx1, fy1)
    assert crop.shape == (fy1 - fy0, fx1 - fx0, 3)


def test_fov_on_full_frame_image_keeps_everything() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(30, 255, (90, 120), dtype=np.uint8)
    assert find_fov(frame) == (0, 0, 120, 90)
    assert find_fov(np.zeros((50, 60), np.uint8)) == (0, 0, 60, 50)


def test_normalisation_and_grey_to_three_channels() -> None:
    spec = PreprocessSpec(input_size=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    grey = np.full((32, 32), 204, np.uint8)
    arr = to_tensor_array(grey, spec)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32
    expected = [(0.8 - 0.5) / 0.2, (0.8 - 0.4) / 0.25, (0.8 - 0.3) / 0.5]
    np.testing.assert_allclose(arr[:, 5, 5], expected, rtol=1e-6)


def test_preprocess_letterboxes_and_maps_heatmaps_back() -> None:
    frame, _ = _scanner_frame(2)
    spec = PreprocessSpec(input_size=64)
    out = preprocess(frame, spec)
    g = out.geometry
    assert out.array.shape == (3, 64, 64)
    assert max(g.scaled_w, g.scaled_h) == 64
    # padding is black before normalisation
    if g.top > 0:
        np.testing.assert_allclose(
            out.array[:, 0, 0], [-m / s for m, s in zip(spec.mean, spec.std)], rtol=1e-5
        )
    # a map that is 1 on the content region and 0 on padding maps to 1 inside the box
    content = np.zeros((64, 64), np.float32)
    content[g.top : g.top + g.scaled_h, g.left : g.left + g.scaled_w] = 1
    back = g.to_frame(content)
    x0, y0, x1, y1 = g.box
    assert back.shape == frame.shape[:2]
    assert back[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].min() > 0.99
    assert back.sum() == pytest.approx(back[y0:y1, x0:x1].sum())
    # a peak put where a frame point lands comes back at that point
    px, py = (x0 + x1) // 2 + 17, (y0 + y1) // 2 - 9
    ix, iy = g.to_input(px, py)
    yy, xx = np.mgrid[0:64, 0:64]
    peak = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / 8.0).astype(np.float32)
    ry, rx = np.unravel_index(np.argmax(g.to_frame(peak)), frame.shape[:2])
    assert abs(rx - px) <= 3 and abs(ry - py) <= 3
    # a feature-resolution map (e.g. 2x2) is accepted too
    assert g.to_frame(np.ones((2, 2))).shape == frame.shape[:2]


def test_real_samples_crop_to_plausible_fields_of_view(real_samples: Path) -> None:
    files = sorted(p for p in real_samples.rglob("*") if p.suffix.lower() in {".png", ".jpg"})
    assert files
    for path in files:
        frame = cv2.imread(str(path))[:, :, ::-1]
        x0, y0, x1, y1 = find_fov(frame)
        h, w = frame.shape[:2]
        area = (x1 - x0) * (y1 - y0) / (h * w)
        assert 0.2 <= area <= 1.0, path.name
        out = preprocess(frame, PreprocessSpec(input_size=64))
        assert np.isfinite(out.array).all()
