"""The view tools the viewer and the reading window share: the heatmap layer's controls
(:class:`OverlayControls`, bound to a headless :class:`HeatmapOverlay`), the binding of
that layer to an :class:`ImageView`, and the image tool buttons and commands
(:class:`ViewToolBar`, :func:`view_commands`), whose keys come from the one shortcut
table."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QSlider,
    QToolButton,
    QWidget,
)

from fetal_viewer.core.cam.overlay import COLORMAPS
from fetal_viewer.core.viewer.overlay import HeatmapOverlay, OverlaySettings
from fetal_viewer.gui.image_view import ImageView
from fetal_viewer.gui.shortcuts import BY_NAME


def view_commands(view: ImageView) -> dict[str, Callable[[], None]]:
    """The image view's commands by their name in the shortcut table."""
    return {
        "fit": view.fit,
        "actual_size": view.actual_size,
        "zoom_in": view.zoom_in,
        "zoom_out": view.zoom_out,
        "rotate": view.rotate_right,
        "flip_h": view.toggle_flip_h,
        "flip_v": view.toggle_flip_v,
        "reset_view": view.reset_view,
        "brighter": lambda: view.set_window(view.brightness + 10, view.contrast),
        "darker": lambda: view.set_window(view.brightness - 10, view.contrast),
        "more_contrast": lambda: view.set_window(view.brightness, view.contrast * 1.1),
        "less_contrast": lambda: view.set_window(view.brightness, view.contrast / 1.1),
    }


#: the reading window's tool buttons: (command, button text, tooltip text)
READER_TOOLS: tuple[tuple[str, str, str], ...] = (
    ("fit", "Fit", "Fit to window"),
    ("zoom_in", "+", "Zoom in"),
    ("zoom_out", "−", "Zoom out"),
    ("rotate", "⟳", "Rotate 90°"),
    ("flip_h", "⇋", "Flip horizontally"),
    ("reset_view", "Reset", "Reset view"),
)


class ViewToolBar(QWidget):
    """A row of tool buttons over an image view; tooltips name the keys."""

    def __init__(
        self,
        view: ImageView,
        tools: Sequence[tuple[str, str, str]] = READER_TOOLS,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("viewToolBar")
        commands = view_commands(view)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.buttons: dict[str, QToolButton] = {}
        for name, text, tip in tools:
            b = QToolButton(self)
            b.setText(text)
            key = _key_text(name)
            b.setToolTip(f"{tip} ({key})" if key else tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(commands[name])
            layout.addWidget(b)
            self.buttons[name] = b
        layout.addStretch(1)


def _key_text(name: str) -> str:
    keys = BY_NAME[name].keys if name in BY_NAME else ()
    # the shortest key is what a reader presses (F, not Ctrl+0)
    return min(keys, key=len) if keys else ""


class OverlayControls(QWidget):
    """Heatmap layer controls bound to a :class:`HeatmapOverlay`: shown (O), opacity and,
    when ``colormaps``, the colour map; ``inline`` puts the first two on one row. Callers
    may add rows to :attr:`form`."""

    def __init__(
        self,
        overlay: HeatmapOverlay,
        colormaps: bool = True,
        opacity_label: str = "Opacity",
        parent: QWidget | None = None,
        *,
        inline: bool = False,
    ) -> None:
        super().__init__(parent)
        self.overlay = overlay
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.overlay_check = QCheckBox("Heatmap overlay (O)", self)
        self.overlay_check.setObjectName("overlayCheck")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setObjectName("opacitySlider")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.colormap_combo = QComboBox(self)
        self.colormap_combo.setObjectName("colormapCombo")
        self.colormap_combo.addItems(COLORMAPS)
        if inline:  # one row: the check box labels the opacity slider
            self.opacity_slider.setToolTip(opacity_label)
            self.form.addRow(self.overlay_check, self.opacity_slider)
        else:
            self.form.addRow(self.overlay_check)
            self.form.addRow(opacity_label, self.opacity_slider)
        if colormaps:
            self.form.addRow("Colormap", self.colormap_combo)
        else:
            self.colormap_combo.setVisible(False)
        self._show(overlay.settings)
        overlay.settings_changed.connect(self._show)
        self.overlay_check.toggled.connect(lambda on: overlay.update(visible=on))
        self.opacity_slider.valueChanged.connect(lambda v: overlay.update(opacity=v / 100.0))
        self.colormap_combo.currentTextChanged.connect(
            lambda name: overlay.update(colormap=name) if name else None
        )

    def _show(self, settings: OverlaySettings) -> None:
        for w in (self.overlay_check, self.opacity_slider, self.colormap_combo):
            w.blockSignals(True)
        self.overlay_check.setChecked(settings.visible)
        self.opacity_slider.setValue(round(settings.opacity * 100))
        self.colormap_combo.setCurrentText(settings.colormap)
        for w in (self.overlay_check, self.opacity_slider, self.colormap_combo):
            w.blockSignals(False)

    def detach(self) -> None:
        self.overlay.settings_changed.disconnect(self._show)


def bind_view(view: ImageView, overlay: HeatmapOverlay) -> Callable[[], None]:
    """Draw ``overlay``'s layer and settings in ``view``; returns the unbinding function."""

    def layer(rgba: NDArray[np.uint8] | None) -> None:
        view.set_overlay(rgba)

    def settings(s: OverlaySettings) -> None:
        view.set_overlay_opacity(s.opacity)
        view.set_overlay_visible(s.visible)

    settings(overlay.settings)
    view.set_overlay(overlay.layer)
    overlay.layer_changed.connect(layer)
    overlay.settings_changed.connect(settings)

    def unbind() -> None:
        overlay.layer_changed.disconnect(layer)
        overlay.settings_changed.disconnect(settings)

    return unbind
