"""numpy <-> QImage conversion and the small per-pixel steps the view does itself.

Only cheap operations live here (a 256-entry lookup table, a copy into a QImage); anything
heavier runs in a worker.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """A deep-copied QImage of an (H, W, 3) or (H, W) uint8 array."""
    array = np.ascontiguousarray(rgb, dtype=np.uint8)
    if array.ndim == 2:
        h, w = array.shape
        return QImage(array.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    h, w, c = array.shape
    if c == 4:
        return QImage(array.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    return QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """(H, W, 3) uint8 copy of any QImage."""
    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w = converted.height(), converted.width()
    stride = converted.bytesPerLine()
    buf = np.frombuffer(converted.constBits(), dtype=np.uint8, count=stride * h)
    return buf.reshape(h, stride)[:, : 3 * w].reshape(h, w, 3).copy()


def window_lut(brightness: float, contrast: float) -> np.ndarray:
    """256-entry LUT: ``(x - 128) * contrast + 128 + brightness``, clipped to uint8."""
    x = np.arange(256, dtype=np.float32)
    lut: np.ndarray = np.clip((x - 128.0) * contrast + 128.0 + brightness, 0, 255).astype(np.uint8)
    return lut


def apply_window(rgb: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    if brightness == 0 and contrast == 1:
        return rgb
    out: np.ndarray = window_lut(brightness, contrast)[rgb]
    return out


def with_caption(image: QImage, text: str) -> QImage:
    """``image`` with a dark band below it that prints ``text`` (word-wrapped), so that what
    the picture is (or is not) goes with it when it is exported."""
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QFont, QPainter

    w = image.width()
    font = QFont()
    font.setPixelSize(max(11, min(18, w // 45)))
    line = int(font.pixelSize() * 1.4)
    chars = max(20, int(w / (0.55 * font.pixelSize())))
    lines = max(1, -(-len(text) // chars) + 1)
    band = line * lines + line // 2
    out = QImage(w, image.height() + band, QImage.Format.Format_RGB888)
    out.fill(QColor(30, 31, 34))
    painter = QPainter(out)
    try:
        painter.drawImage(0, 0, image)
        painter.setFont(font)
        painter.setPen(QColor(255, 214, 140))
        area = QRect(line // 2, image.height() + line // 4, w - line, band - line // 4)
        painter.drawText(area, int(Qt.TextFlag.TextWordWrap), text)
    finally:
        painter.end()
    return out
