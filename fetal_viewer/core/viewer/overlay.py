"""The heatmap layer over the frame on screen, headless: display settings (shown or not,
opacity, colour map) and the composed RGBA layer, with events. The viewer and the reading
window each own one; their Qt image view only draws what it says."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.cam.overlay import COLORMAPS, frame_layer
from fetal_viewer.core.viewer.events import Event
from fetal_viewer.errors import DataError


@dataclass(frozen=True)
class OverlaySettings:
    """How the layer is drawn: ``visible`` (key O), ``opacity`` 0..1, ``colormap``."""

    visible: bool = True
    opacity: float = 0.45
    colormap: str = "jet"


class HeatmapOverlay:
    """Settings plus the layer of one heatmap over one frame.

    Events: ``settings_changed(OverlaySettings)`` when visibility, opacity or colour map
    change; ``layer_changed(rgba or None)`` when the composed layer changes.
    """

    def __init__(self, settings: OverlaySettings | None = None) -> None:
        self.settings = settings or OverlaySettings()
        self.frame: NDArray[np.uint8] | None = None
        self.heatmap: NDArray[np.float32] | None = None
        self.layer: NDArray[np.uint8] | None = None
        self.settings_changed: Event[OverlaySettings] = Event()
        self.layer_changed: Event[NDArray[np.uint8] | None] = Event()

    # ----- settings ----------------------------------------------------------------------
    def update(
        self,
        *,
        visible: bool | None = None,
        opacity: float | None = None,
        colormap: str | None = None,
    ) -> None:
        """Change some settings; the layer is recoloured when the colour map changes."""
        new = self.settings
        if visible is not None:
            new = replace(new, visible=bool(visible))
        if opacity is not None:
            new = replace(new, opacity=float(np.clip(opacity, 0.0, 1.0)))
        if colormap is not None:
            if colormap not in COLORMAPS:
                raise DataError(
                    f"Unknown colour map {colormap!r}.", fix=f"Use one of {', '.join(COLORMAPS)}."
                )
            new = replace(new, colormap=colormap)
        if new == self.settings:
            return
        recolour = new.colormap != self.settings.colormap
        self.settings = new
        self.settings_changed.emit(new)
        if recolour:
            self._compose()

    def toggle(self) -> None:
        self.update(visible=not self.settings.visible)

    def step_opacity(self, delta: float) -> None:
        self.update(opacity=round(self.settings.opacity + delta, 2))

    # ----- content -----------------------------------------------------------------------
    def show(self, frame: NDArray[np.uint8] | None, heatmap: NDArray[np.float32] | None) -> None:
        """Draw ``heatmap`` (``(H, W)`` in [0, 1] over ``frame``), or nothing (None)."""
        self.frame, self.heatmap = frame, heatmap
        self._compose()

    def clear(self) -> None:
        self.show(self.frame, None)

    def _compose(self) -> None:
        frame, heat = self.frame, self.heatmap
        layer = None if frame is None else frame_layer(frame, heat, self.settings.colormap)
        if layer is None and self.layer is None:
            return
        self.layer = layer
        self.layer_changed.emit(layer)
