"""Image view and helpers without studies: zoom, window, overlay layer, measurements."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF

from fetal_viewer.core.cam.overlay import heatmap_layer
from fetal_viewer.gui.image_view import ImageView, ramanujan_circumference
from fetal_viewer.gui.imaging import qimage_to_rgb, rgb_to_qimage, window_lut


def test_qimage_round_trip_odd_width():
    rgb = np.random.default_rng(0).integers(0, 255, (7, 13, 3), dtype=np.uint8)
    assert np.array_equal(qimage_to_rgb(rgb_to_qimage(rgb)), rgb)


def test_window_lut_and_heatmap_alpha():
    lut = window_lut(10, 2.0)
    assert lut[128] == 138 and lut[0] == 0 and lut[255] == 255
    heat = np.array([[0.0, 0.5], [1.0, 0.01]], dtype=np.float32)
    rgba = heatmap_layer(heat, "jet", floor=0.02)
    assert rgba[..., 3].tolist() == [[0, 255], [255, 0]]
    assert not np.array_equal(rgba[0, 1, :3], rgba[1, 0, :3])


def test_ellipse_circumference():
    assert ramanujan_circumference(5, 5) == pytest.approx(2 * np.pi * 5)
    assert ramanujan_circumference(10, 5) == pytest.approx(48.442, abs=1e-3)


def test_view_zoom_fit_and_anisotropic_spacing(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    view.set_frame(np.zeros((100, 200, 3), np.uint8))
    assert view.zoom == pytest.approx(
        min(view.viewport().width() / 200, view.viewport().height() / 100) * 0.98
    )
    view.set_zoom(3.0)
    view.zoom_in()
    assert view.zoom == pytest.approx(3.75)
    view.set_calibration((0.5, 0.25))  # row mm, col mm
    m = view.measure_distance(QPointF(0, 0), QPointF(40, 0))
    assert m.value == pytest.approx(10.0) and m.unit == "mm"
    m = view.measure_distance(QPointF(0, 0), QPointF(0, 40))
    assert m.value == pytest.approx(20.0)
    c = view.measure_ellipse(QRectF(0, 0, 40, 20))  # 10 mm x 5 mm semi-axes
    assert c.value == pytest.approx(ramanujan_circumference(5, 5))
    view.set_overlay(np.full((100, 200, 4), 255, np.uint8))
    assert view.has_overlay and view.overlay_item.isVisible()
    view.set_overlay_visible(False)
    assert not view.overlay_item.isVisible()
