"""What the head finder returns: the skull's ellipse, the search's outcome, skull masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.hadlock import ellipse_perimeter
from fetal_viewer.core.measure.head.ellipse import _N_POINTS, _ell, _sample


@dataclass(frozen=True)
class HeadFit:
    """The skull's outer border as an ellipse in frame pixels, and how sure the finder is.

    ``(cx, cy)`` is the centre (x to the right, y down, pixel centres at integers), ``a >= b``
    the semi-axes and ``angle_deg`` the direction of ``a`` in OpenCV's convention (from +x
    towards +y, in [0, 180)). ``skull_px`` is the skull echo's thickness measured from the
    image (outer to inner border, median around the ring). ``score`` in [0, 1] multiplies
    ``support`` (share of the visible ellipse on a skull echo), the square root of
    ``visible`` (share of the ellipse inside the field of view), and ramps of the axis ratio
    and of the ring's contrast with the brain inside (``contrast_in``) and with what lies
    outside (``contrast_out``), each ``(ring - band) / ring`` in grey levels.
    """

    cx: float
    cy: float
    a: float
    b: float
    angle_deg: float
    skull_px: float
    score: float
    support: float
    visible: float
    contrast_in: float
    contrast_out: float

    @property
    def perimeter_px(self) -> float:
        """Perimeter in pixels (Ramanujan), meaningful on square pixels only."""
        return ellipse_perimeter(self.a, self.b)

    def points(self, n: int = _N_POINTS) -> NDArray[np.float64]:
        """``(n, 2)`` points ``(x, y)`` around the ellipse."""
        x, y, _, _ = _sample(_ell(self.cx, self.cy, self.a, self.b, self.angle_deg), n)
        return np.stack([x, y], axis=1)

    def to_dict(self) -> dict[str, float]:
        """Plain numbers for JSON (pixels, degrees, scores), rounded."""
        return {
            "cx": round(self.cx, 2),
            "cy": round(self.cy, 2),
            "a": round(self.a, 2),
            "b": round(self.b, 2),
            "angle_deg": round(self.angle_deg, 2),
            "skull_px": round(self.skull_px, 2),
            "score": round(self.score, 3),
            "support": round(self.support, 3),
            "visible": round(self.visible, 3),
            "contrast_in": round(self.contrast_in, 3),
            "contrast_out": round(self.contrast_out, 3),
        }


@dataclass(frozen=True)
class HeadSearch:
    """What :func:`detect_head` found: ``fit`` (``None`` when no head), and why not.

    ``best`` is the best candidate even when its score was too low (for display and
    debugging; ``None`` when no candidate ellipse was found at all).
    """

    fit: HeadFit | None
    reason: str
    best: HeadFit | None


@dataclass(frozen=True)
class SkullMasks:
    """Boolean masks of one frame: ``brain`` inside the skull's inner border, ``skull``
    the band between its inner and outer borders."""

    brain: NDArray[np.bool_]
    skull: NDArray[np.bool_]
