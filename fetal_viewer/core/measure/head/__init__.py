"""Find the fetal head in an ultrasound frame: the skull's ellipse, without training data.

:func:`find_head` returns a :class:`HeadFit` (the outer border of the skull as an ellipse in
frame pixels, with a score) or ``None``; :func:`detect_head` says why when it finds none.
The method is classical (numpy + OpenCV), about 40 ms of CPU per 800 x 540 frame on one
core (``docs/head-finding.md`` has the method, its calibration on HC18 and the results):

1. **Clean-up.** The frame's darkest channel is its grey: colour overlays (calipers,
   traced ellipses, Doppler) have one dark channel and drop out. Thin bright strokes
   (burned-in text, dotted caliper lines) are replaced by the local opening. The image is
   worked on at most ``_WORK_SIDE`` pixels wide.
2. **Field of view.** :func:`fetal_viewer.core.fov.fov_mask` and the dark but
   not flat pixels just above the black outside give the fan; its convex hull (dark fluid
   at the fan's edge belongs to it), eroded, is where echoes count.
3. **Ridge map.** The skull is a bright band: a pixel scores ``min(I - I(+d n), I - I(-d n))``
   for the best of 8 directions ``n`` and two widths ``d``, so bright lines score and steps
   (the fan's border, shadows) do not.
4. **Rings.** Every strong ridge pixel votes along its normal, both ways, at all head
   radii; the peaks of the vote map over centre and (log) radius are candidate rings.
5. **Ring.** Around each centre, a dynamic programme finds the brightest closed path on the
   log-polar ridge map near the voted radius; an ellipse is fitted to it with outlier rejection, re-centred once,
   fitted again leaving out each pair of neighbouring 45-degree sectors in turn (a stretch
   that follows some other echo), the best kept, then pulled onto the ridge in shrinking
   bands.
6. **Score.** Share of the visible ellipse lying on a skull echo, share of the ellipse in
   the field of view, axis ratio, and the ring's contrast with the bands just inside and
   just outside it (a skull is brighter than the brain it holds and than what lies around
   it; the rim of a fluid pocket is bright on one side only). The best-scoring ring is
   kept; below :data:`MIN_SCORE` there is no head.
7. **Border.** On the full-resolution frame the ellipse is pulled onto the middle of the
   echo, then moved out to the echo's outer border (the steepest fall of brightness outside
   the peak, median over the ring): head circumference is measured on the outer border of
   the skull, as HC18's experts drew it. The inner border (steepest rise inside the peak)
   gives the skull's thickness.

Ellipses follow OpenCV's convention: ``angle_deg`` turns the ``a`` (major) axis from +x
towards +y, which is clockwise on screen because rows grow downwards; it lies in [0, 180).
``cv2.ellipse(img, (round(cx), round(cy)), (round(a), round(b)), angle_deg, 0, 360, ...)``
draws a fit.

The steps live in submodules: :mod:`.image` (1-3), :mod:`.rings` (4-5), :mod:`.score`
(6-7), :mod:`.ellipse` (fits and sampling) and :mod:`.results` (what is returned); this
module is the public API.

This is a measurement aid: it can fail, and a reader checks it before use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.hadlock import HADLOCK_RANGE_WEEKS, ellipse_perimeter, ga_from_hc
from fetal_viewer.core.measure.head.ellipse import _axes_mm, _cv_box
from fetal_viewer.core.measure.head.ellipse import _profiles as _profiles  # experiments read it
from fetal_viewer.core.measure.head.image import _fan, _grey, _resize, _ridge
from fetal_viewer.core.measure.head.results import HeadFit, HeadSearch, SkullMasks
from fetal_viewer.core.measure.head.rings import _refine, _trace, _vote
from fetal_viewer.core.measure.head.score import _full_resolution, _score

__all__ = [
    "MIN_SCORE",
    "HeadFit",
    "HeadMeasurement",
    "HeadSearch",
    "SkullMasks",
    "detect_head",
    "find_head",
    "ga_weeks_hadlock",
    "head_circumference_mm",
    "in_hadlock_range",
    "measure_head",
    "skull_masks",
]

#: a head whose score is below this is reported as none
MIN_SCORE = 0.40

#: longest side (pixels) of the working copy the head is searched on
_WORK_SIDE = 400
#: weakest ridge (grey levels) that counts as an echo
_MIN_RIDGE = 4.0
#: ridge pixels above this percentile inside the fan vote for centres and count as skull
_RIDGE_PERCENTILE = 90.0


# -- public functions ----------------------------------------------------------------------


def find_head(frame: NDArray, *, min_score: float = MIN_SCORE) -> HeadFit | None:
    """The fetal head in ``frame`` (uint8 grey ``(H, W)`` or RGB ``(H, W, 3)``), or ``None``."""
    return detect_head(frame, min_score=min_score).fit


def detect_head(frame: NDArray, *, min_score: float = MIN_SCORE) -> HeadSearch:
    """Search ``frame`` for the skull's ellipse; see the module docstring for the method.

    Returns a :class:`HeadSearch` whose ``fit`` is ``None`` (with the ``reason``) when no
    candidate reaches ``min_score`` or the frame has no field of view to search.
    """
    grey = _grey(frame)
    h_full, w_full = grey.shape
    if min(h_full, w_full) < 32:
        return HeadSearch(None, f"frame too small ({w_full}x{h_full})", None)
    scale = min(1.0, _WORK_SIDE / max(h_full, w_full))
    work = _resize(grey, scale).astype(np.float32)
    fan = _fan(frame, work)
    if fan.sum() < 0.05 * fan.size:
        return HeadSearch(None, "no ultrasound field of view", None)
    ridge, orient = _ridge(work)
    ridge[~fan] = 0.0
    inside = ridge[fan]
    thr = max(float(np.percentile(inside, _RIDGE_PERCENTILE)), _MIN_RIDGE)
    if float(inside.max()) <= thr:
        return HeadSearch(None, "no bright echoes in the field of view", None)
    rings = _vote(ridge, orient, thr)
    best: tuple[float, Any, dict[str, float]] | None = None
    for traced in _trace(ridge, rings):
        e = _refine(traced, ridge, thr)
        if e is None:
            continue
        s, feats = _score(e, ridge, fan, work, thr)
        if best is None or s > best[0]:
            best = (s, e, feats)
    if best is None:
        return HeadSearch(None, "no closed ring of echoes", None)
    _, e_work, _ = best
    fit = _full_resolution(grey, e_work, scale, ridge, fan, work, thr)
    if fit is None:
        return HeadSearch(None, "the ring found does not hold at full resolution", None)
    if fit.score < min_score:
        return HeadSearch(
            None,
            f"best ring scores {fit.score:.2f} < {min_score:.2f} "
            f"(skull echo on {fit.support:.0%} of it, {fit.visible:.0%} in view)",
            fit,
        )
    return HeadSearch(fit, "found", fit)


def head_circumference_mm(fit: HeadFit, spacing_mm: float | tuple[float, float]) -> float:
    """Head circumference (mm) of ``fit``: Ramanujan's perimeter of the ellipse in mm.

    ``spacing_mm`` is one pixel size or ``(row, col)`` mm per pixel, as in
    :class:`fetal_viewer.core.io.study.Calibration`; with unequal spacing the pixel ellipse
    is mapped to millimetres (still an ellipse) and its own axes are used.
    """
    if isinstance(spacing_mm, int | float):
        sy = sx = float(spacing_mm)
    else:
        sy, sx = (float(v) for v in spacing_mm)
    if not (sx > 0.0 and sy > 0.0 and math.isfinite(sx) and math.isfinite(sy)):
        raise ValueError(f"pixel spacing must be positive and finite, got {spacing_mm!r}")
    a_mm, b_mm = _axes_mm(fit.a, fit.b, fit.angle_deg, sx, sy)
    return ellipse_perimeter(a_mm, b_mm)


def ga_weeks_hadlock(hc_mm: float) -> float:
    """Gestational age (weeks) from head circumference (mm), Hadlock 1984.

    Fitted on 12-40 weeks (:data:`HADLOCK_RANGE_WEEKS`); outside it the value extrapolates.
    """
    return ga_from_hc(hc_mm / 10.0)


def in_hadlock_range(ga_weeks: float) -> bool:
    """Whether ``ga_weeks`` lies in the range Hadlock's regression was fitted on."""
    lo, hi = HADLOCK_RANGE_WEEKS
    return lo <= ga_weeks <= hi


@dataclass(frozen=True)
class HeadMeasurement:
    """The automatic head measurement of one frame, as the CLI and the viewer show it.

    ``fit`` is ``None`` when no head was found (``reason`` says why). ``hc_mm`` and
    ``ga_weeks`` are ``None`` when the frame has no pixel spacing or the head lies outside
    the calibrated region (``hc_reason`` says which). Always an aid to check, never a
    measurement to copy unchecked.
    """

    fit: HeadFit | None
    reason: str
    hc_mm: float | None = None
    ga_weeks: float | None = None
    hc_reason: str = ""

    def to_dict(self) -> dict[str, Any] | None:
        """JSON form: ``None`` when no head was found, else the figures with
        ``"automatic": true``."""
        if self.fit is None:
            return None
        return {
            "automatic": True,
            "hc_mm": None if self.hc_mm is None else round(self.hc_mm, 1),
            "ga_weeks_hadlock": None if self.ga_weeks is None else round(self.ga_weeks, 1),
            "ga_in_hadlock_range": None
            if self.ga_weeks is None
            else in_hadlock_range(self.ga_weeks),
            "hc_reason": self.hc_reason or None,
            "score": round(self.fit.score, 3),
            "ellipse": self.fit.to_dict(),
        }

    def text(self) -> str:
        """One line for a terminal, marked automatic."""
        if self.fit is None:
            return f"head (automatic): none found ({self.reason})"
        where = f"ellipse at ({self.fit.cx:.0f}, {self.fit.cy:.0f}) px"
        if self.hc_mm is None or self.ga_weeks is None:
            return (
                f"head (automatic, check before use): {where}, score {self.fit.score:.2f}; "
                f"no HC in mm ({self.hc_reason})"
            )
        range_note = "" if in_hadlock_range(self.ga_weeks) else ", outside Hadlock's 12-40 w"
        return (
            f"head (automatic, check before use): HC {self.hc_mm:.1f} mm, Hadlock GA "
            f"{self.ga_weeks:.1f} w{range_note}; {where}, score {self.fit.score:.2f}"
        )


def measure_head(
    frame: NDArray,
    spacing_mm: float | tuple[float, float] | None,
    region: tuple[int, int, int, int] | None = None,
    *,
    min_score: float = MIN_SCORE,
    search: HeadSearch | None = None,
) -> HeadMeasurement:
    """Find the head in ``frame`` and, with a pixel spacing, its circumference and age.

    ``spacing_mm`` is ``(row, col)`` mm per pixel (as in ``Calibration.spacing_mm``) or
    one size; ``region`` the calibrated box ``(x0, y0, x1, y1)`` (inclusive), when known:
    a head whose centre lies outside it gets no millimetres. ``search``: the
    :func:`detect_head` result for ``frame`` when one was made already (a model's second look).
    """
    search = detect_head(frame, min_score=min_score) if search is None else search
    fit = search.fit
    if fit is None:
        return HeadMeasurement(None, search.reason)
    if spacing_mm is None:
        return HeadMeasurement(fit, search.reason, hc_reason="no pixel spacing")
    if region is not None:
        x0, y0, x1, y1 = region
        if not (x0 <= fit.cx <= x1 and y0 <= fit.cy <= y1):
            return HeadMeasurement(
                fit, search.reason, hc_reason="head outside the calibrated region"
            )
    hc = head_circumference_mm(fit, spacing_mm)
    return HeadMeasurement(fit, search.reason, hc_mm=hc, ga_weeks=ga_weeks_hadlock(hc))


def skull_masks(fit: HeadFit, shape: tuple[int, ...]) -> SkullMasks:
    """Masks of the brain and the skull band of ``fit`` on a frame of ``shape`` (H, W, ...).

    The outer border is the fitted ellipse; the inner border is the same ellipse moved in
    by the skull thickness measured in the image (``fit.skull_px``, at least one pixel). The
    brain is the inside of the inner border; the skull is the band between the two.
    """
    import cv2

    h, w = int(shape[0]), int(shape[1])
    t = max(1.0, fit.skull_px)
    outer = np.zeros((h, w), np.uint8)
    inner = np.zeros((h, w), np.uint8)
    cv2.ellipse(outer, _cv_box(fit.cx, fit.cy, fit.a, fit.b, fit.angle_deg), 1, -1)
    if fit.b > t:
        box = _cv_box(fit.cx, fit.cy, fit.a - t, fit.b - t, fit.angle_deg)
        cv2.ellipse(inner, box, 1, -1)
    brain = inner.astype(bool)
    return SkullMasks(brain=brain, skull=outer.astype(bool) & ~brain)
