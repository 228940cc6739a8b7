"""Drawing the scene: echogenicity, bone and mask layers in display pixels.

Anatomy is described in millimetres in a local frame attached to the fetus (``p`` along
its main axis, ``q`` across it); :class:`Canvas` maps that frame onto the display with a
rotation, an optional mirror and the scanner's pixel spacing, and paints the layers with
OpenCV primitives (sub-pixel precision through ``shift``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.phantoms.bmode import SectorGeometry

_SHIFT = 4
_ONE = 1 << _SHIFT

Point = tuple[float, float]


class Canvas:
    """Scene layers of one frame and the local-to-display transform."""

    def __init__(self, geom: SectorGeometry, keep_parts: bool = False) -> None:
        shape = (geom.height, geom.width)
        self.geom = geom
        self.s = geom.px_per_mm
        self.echo = np.zeros(shape, np.float32)
        self.bone = np.zeros(shape, np.float32)
        self.mask = np.zeros(shape, np.uint8)
        self.keep_parts = keep_parts
        self.parts: dict[str, NDArray[np.uint8]] = {}
        self._c = (geom.width / 2.0, geom.height / 2.0)
        self._phi = 0.0
        self._flip = 1.0

    # -- transforms --------------------------------------------------------------------
    def set_frame(self, center_px: Point, angle_deg: float, flip: bool) -> None:
        """Local origin at ``center_px``; local ``p`` axis rotated by ``angle_deg``."""
        self._c = center_px
        self._phi = angle_deg
        self._flip = -1.0 if flip else 1.0

    def px(self, p: float, q: float) -> Point:
        phi = math.radians(self._phi)
        x, y = p * self.s, self._flip * q * self.s
        return (
            self._c[0] + x * math.cos(phi) - y * math.sin(phi),
            self._c[1] + x * math.sin(phi) + y * math.cos(phi),
        )

    def _fixed(self, pts: Sequence[Point]) -> NDArray[np.int32]:
        arr = np.array([self.px(p, q) for p, q in pts], dtype=np.float64)
        return np.round(arr * _ONE).astype(np.int32).reshape(-1, 1, 2)

    def _thick(self, mm: float) -> int:
        return max(1, round(mm * self.s))

    def _targets(
        self, echo: float | None, bone: float, mask: bool, part: str | None
    ) -> list[tuple[NDArray, float]]:
        out: list[tuple[NDArray, float]] = []
        if echo is not None:
            out.append((self.echo, echo))
        if bone:
            out.append((self.bone, bone))
        if mask:
            out.append((self.mask, 1.0))
        if part is not None and self.keep_parts:
            layer = self.parts.setdefault(part, np.zeros_like(self.mask))
            out.append((layer, 1.0))
        return out

    # -- primitives --------------------------------------------------------------------
    def ellipse(
        self,
        center: Point,
        axes: Point,
        angle_deg: float = 0.0,
        *,
        echo: float | None = None,
        bone: float = 0.0,
        mask: bool = False,
        part: str | None = None,
        thick_mm: float | None = None,
        arc: tuple[float, float] = (0.0, 360.0),
    ) -> None:
        """An ellipse (filled unless ``thick_mm``) in local coordinates; ``arc`` in degrees."""
        import cv2

        cx, cy = self.px(*center)
        ax = (max(1, round(axes[0] * self.s * _ONE)), max(1, round(axes[1] * self.s * _ONE)))
        ang = self._phi + self._flip * angle_deg
        a0, a1 = arc if self._flip > 0 else (-arc[1], -arc[0])
        thick = -1 if thick_mm is None else self._thick(thick_mm)
        c = (round(cx * _ONE), round(cy * _ONE))
        for layer, value in self._targets(echo, bone, mask, part):
            cv2.ellipse(layer, c, ax, ang, a0, a1, value, thick, cv2.LINE_8, _SHIFT)

    def poly(
        self,
        pts: Sequence[Point],
        *,
        echo: float | None = None,
        bone: float = 0.0,
        mask: bool = False,
        part: str | None = None,
        thick_mm: float | None = None,
        closed: bool = True,
    ) -> None:
        """A filled polygon, or a polyline of ``thick_mm`` when given."""
        import cv2

        if len(pts) < 2:
            return
        fixed = self._fixed(pts)
        for layer, value in self._targets(echo, bone, mask, part):
            if thick_mm is None:
                cv2.fillPoly(layer, [fixed], value, cv2.LINE_8, _SHIFT)
            else:
                cv2.polylines(
                    layer, [fixed], closed, value, self._thick(thick_mm), cv2.LINE_8, _SHIFT
                )

    def line(self, a: Point, b: Point, thick_mm: float, **kw: object) -> None:
        self.poly([a, b], thick_mm=thick_mm, closed=False, **kw)  # type: ignore[arg-type]


def ellipse_points(
    a: float,
    b: float,
    n: int = 144,
    center: Point = (0.0, 0.0),
    start_deg: float = 0.0,
    end_deg: float = 360.0,
    radial: NDArray[np.float64] | None = None,
) -> list[Point]:
    """Points of an ellipse (semi-axes ``a`` along p, ``b`` along q), optionally scaled
    radially by ``radial`` (one factor per point)."""
    t = np.radians(np.linspace(start_deg, end_deg, n, endpoint=end_deg - start_deg < 360.0))
    f = np.ones_like(t) if radial is None else radial
    ps = center[0] + a * np.cos(t) * f
    qs = center[1] + b * np.sin(t) * f
    return list(zip(ps.tolist(), qs.tolist()))
