"""The image view: one frame, an optional heatmap layer and measurement items.

Scene coordinates are image pixel coordinates (x = column, y = row), so measurements stay
attached to anatomy whatever the zoom, pan, rotation or flip. The view knows nothing about
studies or models: callers give it an RGB frame, an RGBA heatmap and a calibration. The
reader-study "reading mode" reuses it as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsLineItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QWidget,
)

from fetal_viewer.gui.imaging import apply_window, rgb_to_qimage

ZOOM_STEP = 1.25
ZOOM_MIN, ZOOM_MAX = 0.05, 40.0
MEASURE_COLOR = QColor("#ffd84d")


class Tool(Enum):
    NAVIGATE = "navigate"
    DISTANCE = "distance"
    ELLIPSE = "ellipse"


@dataclass(frozen=True)
class Measurement:
    kind: str  # "distance" | "ellipse"
    value: float  # length or circumference
    unit: str  # "mm" | "px"
    label: str


def ramanujan_circumference(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes a, b (Ramanujan's second approximation)."""
    if a + b == 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


class ImageView(QGraphicsView):
    """Zoom (wheel, keys), pan (left drag), fit, 1:1, brightness/contrast (right drag),
    rotate/flip, a heatmap layer with its own opacity, distance and ellipse measurements."""

    zoom_changed = Signal(float)
    window_changed = Signal(float, float)  # brightness, contrast
    measurement_added = Signal(object)  # Measurement

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageView")
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(QBrush(QColor("#000000")))
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.PreventContextMenu)

        self.image_item = QGraphicsPixmapItem()
        self.image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.image_item.setZValue(0)
        self.overlay_item = QGraphicsPixmapItem()
        self.overlay_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.overlay_item.setZValue(1)
        self.overlay_item.setOpacity(0.5)
        self._scene.addItem(self.image_item)
        self._scene.addItem(self.overlay_item)

        self._raw: np.ndarray | None = None
        self.brightness = 0.0
        self.contrast = 1.0
        self.zoom = 1.0
        self.rotation = 0
        self.flip_h = False
        self.flip_v = False
        self._fit_mode = True
        self._overlay_wanted = True
        self.tool = Tool.NAVIGATE
        self.spacing_mm: tuple[float, float] | None = None
        self.measurements: list[tuple[Measurement, list[QGraphicsItem]]] = []
        self._drag_start: QPointF | None = None
        self._drag_item: QGraphicsItem | None = None
        self._window_drag: tuple[QPointF, float, float] | None = None

    # ----- content -------------------------------------------------------------------
    @property
    def has_image(self) -> bool:
        return self._raw is not None

    @property
    def frame(self) -> np.ndarray | None:
        return self._raw

    def set_frame(self, rgb: np.ndarray | None) -> None:
        """Show a new (H, W, 3) uint8 frame; keeps zoom, pan, window and measurements
        when the size is unchanged (cine), refits otherwise."""
        old_shape = None if self._raw is None else self._raw.shape[:2]
        self._raw = rgb
        if rgb is None:
            self.image_item.setPixmap(QPixmap())
            self.overlay_item.setPixmap(QPixmap())
            return
        self._refresh_pixmap()
        if old_shape != rgb.shape[:2]:
            self._scene.setSceneRect(QRectF(0, 0, rgb.shape[1], rgb.shape[0]))
            self.clear_measurements()
            self.fit()

    def _refresh_pixmap(self) -> None:
        if self._raw is None:
            return
        shown = apply_window(self._raw, self.brightness, self.contrast)
        self.image_item.setPixmap(QPixmap.fromImage(rgb_to_qimage(shown)))

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        """Heatmap layer as (H, W, 4) uint8 in frame pixels, or None to clear it."""
        if rgba is None:
            self.overlay_item.setPixmap(QPixmap())
        else:
            self.overlay_item.setPixmap(QPixmap.fromImage(rgb_to_qimage(rgba)))
        self.overlay_item.setVisible(self._overlay_wanted and rgba is not None)

    @property
    def has_overlay(self) -> bool:
        return not self.overlay_item.pixmap().isNull()

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay_wanted = visible
        self.overlay_item.setVisible(visible and self.has_overlay)

    def set_overlay_opacity(self, opacity: float) -> None:
        self.overlay_item.setOpacity(float(np.clip(opacity, 0.0, 1.0)))

    def set_calibration(self, spacing_mm: tuple[float, float] | None) -> None:
        """(row, col) mm per pixel, or None for pixel units."""
        self.spacing_mm = spacing_mm

    # ----- brightness / contrast ------------------------------------------------------
    def set_window(self, brightness: float, contrast: float) -> None:
        self.brightness = float(np.clip(brightness, -255, 255))
        self.contrast = float(np.clip(contrast, 0.1, 10.0))
        self._refresh_pixmap()
        self.window_changed.emit(self.brightness, self.contrast)

    # ----- geometry -------------------------------------------------------------------
    def _base_transform(self) -> QTransform:
        t = QTransform()
        t.rotate(self.rotation)
        t.scale(-1.0 if self.flip_h else 1.0, -1.0 if self.flip_v else 1.0)
        return t

    def _apply_transform(self) -> None:
        t = self._base_transform() * QTransform.fromScale(self.zoom, self.zoom)
        self.setTransform(t)
        self.zoom_changed.emit(self.zoom)

    def set_zoom(self, zoom: float) -> None:
        self._fit_mode = False
        self.zoom = float(np.clip(zoom, ZOOM_MIN, ZOOM_MAX))
        self._apply_transform()

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / ZOOM_STEP)

    def actual_size(self) -> None:
        """1:1, one image pixel per screen pixel."""
        self.set_zoom(1.0)

    def fit(self) -> None:
        self._fit_mode = True
        rect = self._scene.sceneRect()
        if rect.isEmpty():
            return
        bounds = self._base_transform().mapRect(rect)
        viewport = self.viewport().rect()
        scale = min(viewport.width() / bounds.width(), viewport.height() / bounds.height())
        self.zoom = float(np.clip(scale * 0.98, ZOOM_MIN, ZOOM_MAX))
        self._apply_transform()
        self.centerOn(rect.center())

    def rotate_right(self) -> None:
        self.rotation = (self.rotation + 90) % 360
        self._refit_or_apply()

    def toggle_flip_h(self) -> None:
        self.flip_h = not self.flip_h
        self._refit_or_apply()

    def toggle_flip_v(self) -> None:
        self.flip_v = not self.flip_v
        self._refit_or_apply()

    def _refit_or_apply(self) -> None:
        if self._fit_mode:
            self.fit()
        else:
            self._apply_transform()

    def reset_view(self) -> None:
        """Fit, no rotation or flip, neutral brightness/contrast."""
        self.rotation = 0
        self.flip_h = self.flip_v = False
        self.set_window(0.0, 1.0)
        self.fit()

    # ----- rendering for export ------------------------------------------------------
    def render_frame(self, with_overlay: bool) -> QImage:
        """The frame at native resolution (window, heatmap and measurements applied)."""
        rect = self._scene.sceneRect()
        image = QImage(
            max(1, int(rect.width())), max(1, int(rect.height())), QImage.Format.Format_RGB888
        )
        image.fill(QColor("black"))
        was = self.overlay_item.isVisible()
        self.overlay_item.setVisible(with_overlay and self.has_overlay)
        painter = QPainter(image)
        try:
            self._scene.render(painter, QRectF(image.rect()), rect)
        finally:
            painter.end()
            self.overlay_item.setVisible(was)
        return image

    # ----- measurements ---------------------------------------------------------------
    def set_tool(self, tool: Tool) -> None:
        self.tool = tool
        self.setDragMode(
            QGraphicsView.DragMode.ScrollHandDrag
            if tool is Tool.NAVIGATE
            else QGraphicsView.DragMode.NoDrag
        )
        self.viewport().setCursor(
            Qt.CursorShape.OpenHandCursor if tool is Tool.NAVIGATE else Qt.CursorShape.CrossCursor
        )

    def clear_measurements(self) -> None:
        for _, items in self.measurements:
            for item in items:
                self._scene.removeItem(item)
        self.measurements.clear()

    def measure_distance(self, p0: QPointF, p1: QPointF) -> Measurement:
        dx, dy = p1.x() - p0.x(), p1.y() - p0.y()
        if self.spacing_mm is not None:
            row_mm, col_mm = self.spacing_mm
            value, unit = math.hypot(dx * col_mm, dy * row_mm), "mm"
        else:
            value, unit = math.hypot(dx, dy), "px"
        return Measurement("distance", value, unit, f"{value:.1f} {unit}")

    def measure_ellipse(self, rect: QRectF) -> Measurement:
        a, b = rect.width() / 2.0, rect.height() / 2.0
        if self.spacing_mm is not None:
            row_mm, col_mm = self.spacing_mm
            a, b, unit = a * col_mm, b * row_mm, "mm"
        else:
            unit = "px"
        value = ramanujan_circumference(a, b)
        return Measurement("ellipse", value, unit, f"C {value:.1f} {unit}")

    def add_distance(self, p0: QPointF, p1: QPointF) -> Measurement:
        line = QGraphicsLineItem(p0.x(), p0.y(), p1.x(), p1.y())
        line.setPen(self._pen())
        m = self.measure_distance(p0, p1)
        self._finish_measurement(m, line, p1)
        return m

    def add_ellipse(self, rect: QRectF) -> Measurement:
        item = QGraphicsEllipseItem(rect.normalized())
        item.setPen(self._pen())
        m = self.measure_ellipse(rect.normalized())
        self._finish_measurement(m, item, rect.normalized().bottomRight())
        return m

    def _pen(self) -> QPen:
        pen = QPen(MEASURE_COLOR)
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        return pen

    def _finish_measurement(self, m: Measurement, shape: QGraphicsItem, at: QPointF) -> None:
        shape.setZValue(2)
        self._scene.addItem(shape)
        text = QGraphicsSimpleTextItem(m.label)
        text.setBrush(QBrush(MEASURE_COLOR))
        text.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        text.setPos(at)
        text.setZValue(3)
        self._scene.addItem(text)
        self.measurements.append((m, [shape, text]))
        self.measurement_added.emit(m)

    # ----- events ---------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:
        if not self.has_image:
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.set_zoom(self.zoom * (ZOOM_STEP**steps))
        event.accept()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_mode and self.has_image:
            self.fit()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.RightButton:
            self._window_drag = (event.position(), self.brightness, self.contrast)
            event.accept()
            return
        if event.button() == Qt.MouseButton.LeftButton and self.tool is not Tool.NAVIGATE:
            self._drag_start = self.mapToScene(event.position().toPoint())
            pen = self._pen()
            if self.tool is Tool.DISTANCE:
                p = self._drag_start
                self._drag_item = QGraphicsLineItem(p.x(), p.y(), p.x(), p.y())
                self._drag_item.setPen(pen)
            else:
                self._drag_item = QGraphicsEllipseItem(QRectF(self._drag_start, self._drag_start))
                self._drag_item.setPen(pen)
            self._drag_item.setZValue(2)
            self._scene.addItem(self._drag_item)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._window_drag is not None:
            start, b0, c0 = self._window_drag
            delta = event.position() - start
            self.set_window(b0 - delta.y(), c0 * math.exp(delta.x() / 200.0))
            event.accept()
            return
        if self._drag_start is not None and self._drag_item is not None:
            p = self.mapToScene(event.position().toPoint())
            if isinstance(self._drag_item, QGraphicsLineItem):
                s = self._drag_start
                self._drag_item.setLine(s.x(), s.y(), p.x(), p.y())
            elif isinstance(self._drag_item, QGraphicsEllipseItem):
                self._drag_item.setRect(QRectF(self._drag_start, p).normalized())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.RightButton and self._window_drag is not None:
            self._window_drag = None
            event.accept()
            return
        if self._drag_start is not None and event.button() == Qt.MouseButton.LeftButton:
            end = self.mapToScene(event.position().toPoint())
            start, self._drag_start = self._drag_start, None
            if self._drag_item is not None:
                self._scene.removeItem(self._drag_item)
                self._drag_item = None
            if (end - start).manhattanLength() >= 2:
                if self.tool is Tool.DISTANCE:
                    self.add_distance(start, end)
                else:
                    self.add_ellipse(QRectF(start, end))
            event.accept()
            return
        super().mouseReleaseEvent(event)
