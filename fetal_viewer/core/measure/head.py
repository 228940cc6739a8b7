"""Find the fetal head in an ultrasound frame: the skull's ellipse, without training data.

:func:`find_head` returns a :class:`HeadFit` (the outer border of the skull as an ellipse in
frame pixels, with a score) or ``None``; :func:`detect_head` says why when it finds none.
The method is classical (numpy + OpenCV), about 70 ms of CPU per 800 x 540 frame on one
core (``docs/head-finding.md`` has the method, its calibration on HC18 and the results):

1. **Clean-up.** The frame's darkest channel is its grey: colour overlays (calipers,
   traced ellipses, Doppler) have one dark channel and drop out. Thin bright strokes
   (burned-in text, dotted caliper lines) are replaced by the local opening. The image is
   worked on at most ``_WORK_SIDE`` pixels wide.
2. **Field of view.** :func:`fetal_viewer.core.model.preprocess.fov_mask` and the dark but
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

This is a measurement aid: it can fail, and a reader checks it before use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.hadlock import HADLOCK_RANGE_WEEKS, ellipse_perimeter, ga_from_hc

#: a head whose score is below this is reported as none
MIN_SCORE = 0.40

#: longest side (pixels) of the working copy the head is searched on
_WORK_SIDE = 400
#: ridge filter: (Gaussian sigma, offset d) in working pixels, thin and thick skulls
_RIDGE_SCALES: tuple[tuple[float, float], ...] = ((1.5, 4.0), (3.0, 8.0))
#: directions the ridge filter tries (over 180 degrees)
_N_ORIENT = 8
#: weakest ridge (grey levels) that counts as an echo
_MIN_RIDGE = 4.0
#: ridge pixels above this percentile inside the fan vote for centres and count as skull
_RIDGE_PERCENTILE = 90.0
#: at most this many ridge pixels vote
_MAX_VOTERS = 3000
#: candidate rings (centre and radius) tried per frame
_N_CENTRES = 8
#: largest radius voted for (fraction of the longest side) and radius bins of the votes
_R_VOTE_MAX = 0.45
_N_RADIUS_BINS = 8
#: a ring's path stays within this factor of its voted radius
_RING_WINDOW = 1.8
#: vote map cell (working pixels)
_VOTE_CELL = 4
#: polar grid for the ring search: angles, log-spaced radii
_N_ANGLES = 128
_N_RADII = 160
#: head radius searched, as a fraction of the working copy's longest side
_R_MIN, _R_MAX = 0.04, 0.70
#: dynamic programme: largest radius step per angle (radii bins), cost per squared step
_DP_STEP = 3
_DP_PENALTY = 0.15
#: plausible heads: axis ratio b/a, smallest b and largest a (fraction of longest side)
_MIN_AXIS_RATIO = 0.45
_MIN_B, _MAX_A = 0.05, 0.75
#: mean of the ring-to-inside and ring-to-outside contrasts: the score ramps from 0 to 1
#: between these
_CONTRAST = (0.1, 0.5)
#: the echo's outer border is looked for this far (full-resolution pixels) beyond its peak
#: (or 8% of b if more); chosen on the tune half of HC18 among 8, 12, 16 and 24
_BORDER_REACH_PX = 16.0
#: points sampled around an ellipse
_N_POINTS = 180


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
) -> HeadMeasurement:
    """Find the head in ``frame`` and, with a pixel spacing, its circumference and age.

    ``spacing_mm`` is ``(row, col)`` mm per pixel (as in ``Calibration.spacing_mm``) or
    one size; ``region`` the calibrated box ``(x0, y0, x1, y1)`` (inclusive), when known:
    a head whose centre lies outside it gets no millimetres.
    """
    search = detect_head(frame, min_score=min_score)
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


# -- ellipses --------------------------------------------------------------------------------

# an ellipse inside this module: (cx, cy, a, b, angle in radians), a >= b
_Ellipse = tuple[float, float, float, float, float]


def _ell(cx: float, cy: float, a: float, b: float, angle_deg: float) -> _Ellipse:
    return (cx, cy, a, b, math.radians(angle_deg))


def _from_cv(box: Any) -> _Ellipse | None:
    """An OpenCV ``((cx, cy), (w, h), angle)`` box as a module ellipse, ``a`` >= ``b``."""
    (cx, cy), (w, h), ang = box
    vals = (cx, cy, w, h, ang)
    if not all(math.isfinite(float(v)) for v in vals) or min(w, h) <= 1e-3:
        return None
    if w >= h:
        return (float(cx), float(cy), w / 2.0, h / 2.0, math.radians(float(ang) % 180.0))
    return (float(cx), float(cy), h / 2.0, w / 2.0, math.radians((float(ang) + 90.0) % 180.0))


def _cv_box(
    cx: float, cy: float, a: float, b: float, angle_deg: float
) -> tuple[tuple[float, float], tuple[float, float], float]:
    return (cx, cy), (2.0 * a, 2.0 * b), angle_deg


def _sample(e: _Ellipse, n: int) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """``n`` points around ``e`` and their outward unit normals: ``x, y, nx, ny``."""
    cx, cy, a, b, t = e
    s = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    u, v = a * np.cos(s), b * np.sin(s)
    ct, st = math.cos(t), math.sin(t)
    x = cx + u * ct - v * st
    y = cy + u * st + v * ct
    gu, gv = np.cos(s) / a, np.sin(s) / b
    nx, ny = gu * ct - gv * st, gu * st + gv * ct
    norm = np.hypot(nx, ny)
    return x, y, nx / norm, ny / norm


def _distance(pts: NDArray, e: _Ellipse) -> NDArray:
    """Approximate signed distance (pixels, positive outside) from ``pts`` to ``e``."""
    cx, cy, a, b, t = e
    x, y = pts[:, 0] - cx, pts[:, 1] - cy
    u = x * math.cos(t) + y * math.sin(t)
    v = -x * math.sin(t) + y * math.cos(t)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (rho - 1.0) * np.hypot(u, v) / np.maximum(rho, 1e-6)


def _fit(pts: NDArray, iterations: int = 5) -> _Ellipse | None:
    """Least-squares ellipse (Fitzgibbon's direct fit) with outliers beyond 2.5 MAD dropped."""
    import cv2

    keep = np.ones(len(pts), dtype=bool)
    e: _Ellipse | None = None
    for _ in range(iterations):
        if keep.sum() < 10:
            return None
        e = _from_cv(cv2.fitEllipseDirect(pts[keep].astype(np.float32)))
        if e is None:
            return None
        d = np.abs(_distance(pts, e))
        spread = 1.4826 * float(np.median(d[keep]))
        new = d < max(2.5 * spread, 1.0)
        if (new == keep).all():
            break
        keep = new
    return e


def _plausible(e: _Ellipse, h: int, w: int) -> bool:
    cx, cy, a, b, _ = e
    side = max(h, w)
    return (
        b >= _MIN_B * side
        and a <= _MAX_A * side
        and b / a >= _MIN_AXIS_RATIO
        and 0.0 <= cx < w
        and 0.0 <= cy < h
    )


def _axes_mm(a: float, b: float, angle_deg: float, sx: float, sy: float) -> tuple[float, float]:
    """Semi-axes (mm) of the pixel ellipse ``(a, b, angle)`` under spacing ``sx``, ``sy``."""
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    # points p = R diag(a, b) q with |q| = 1 map to S p; the semi-axes are the singular
    # values of S R diag(a, b)
    m = np.diag([sx, sy]) @ rot @ np.diag([a, b])
    sv = np.linalg.svd(m, compute_uv=False)
    return float(sv[0]), float(sv[1])


# -- image steps -----------------------------------------------------------------------------


def _grey(frame: NDArray) -> NDArray[np.uint8]:
    """Darkest channel (colour overlays drop out), thin bright strokes opened away."""
    import cv2

    from fetal_viewer.core.pixels import as_rgb

    arr = np.asarray(frame)
    if arr.dtype == np.uint8 and arr.ndim == 2:
        grey = np.ascontiguousarray(arr)
    else:
        rgb = as_rgb(arr)
        grey = np.minimum(np.minimum(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])
    opened = cv2.morphologyEx(grey, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    # text and dotted caliper lines: bright strokes at most two pixels wide
    thin = (grey > 150) & (grey.astype(np.int16) - opened.astype(np.int16) > 60)
    if thin.any():
        thin = cv2.dilate(thin.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        grey = np.where(thin, opened, grey)
    return grey


def _resize(img: NDArray, scale: float) -> NDArray:
    import cv2

    if scale >= 1.0:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))


def _fan(frame: NDArray, work: NDArray[np.float32]) -> NDArray[np.bool_]:
    """The field of view on the working copy: convex hull of the fan, eroded.

    The fan is what :func:`~fetal_viewer.core.model.preprocess.fov_mask` finds plus the
    dark pixels a few grey levels off the border's level that are not flat (dark fluid
    and a term head's brain have little texture, but scanners lift them above the black
    outside; header panels are flat), closed, opened (text strokes vanish) and kept in
    pieces of at least 15% of the largest.
    """
    import cv2

    from fetal_viewer.core.model.preprocess import fov_mask

    h, w = work.shape
    u8 = np.clip(work, 0, 255).astype(np.uint8)
    border = np.concatenate([u8[0], u8[-1], u8[:, 0], u8[:, -1]])
    level = int(np.median(border))
    lift = np.abs(cv2.medianBlur(u8, 5).astype(np.int16) - level)
    mean = cv2.blur(work, (5, 5))
    noisy = cv2.blur(work * work, (5, 5)) - mean * mean > 0.2
    # dark but not black, and not flat: fluid or brain, not a header panel or a bar
    dark = (lift > 2) & (lift < 40) & noisy
    found = (dark | fov_mask(frame, (h, w))).astype(np.uint8)
    k = max(3, (min(h, w) // 40) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    closed = cv2.morphologyEx(found, cv2.MORPH_CLOSE, kernel)
    opened = cv2.morphologyEx(closed, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.15 * areas.max())
    pieces = np.isin(labels, keep).astype(np.uint8)
    contours, _ = cv2.findContours(pieces, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)
    # the frame's own border is a fan edge too
    hull[[0, -1], :] = 0
    hull[:, [0, -1]] = 0
    return np.asarray(cv2.erode(hull, np.ones((5, 5), np.uint8)), dtype=bool)


def _ridge(work: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """Bright-line strength (grey levels) and the index of its normal direction."""
    import cv2

    h, w = work.shape
    best = np.zeros_like(work)
    arg = np.zeros(work.shape, np.uint8)
    for sigma, d in _RIDGE_SCALES:
        blur = cv2.GaussianBlur(work, (0, 0), sigma)
        for k in range(_N_ORIENT):
            t = math.pi * k / _N_ORIENT
            dx, dy = d * math.cos(t), d * math.sin(t)
            fwd = cv2.warpAffine(
                blur,
                np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32),
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            bwd = cv2.warpAffine(
                blur,
                np.array([[1, 0, -dx], [0, 1, -dy]], dtype=np.float32),
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            r = np.minimum(blur - fwd, blur - bwd)
            better = r > best
            best[better] = r[better]
            arg[better] = k
    return best, arg


def _vote(ridge: NDArray[np.float32], orient: NDArray[np.uint8], thr: float) -> NDArray:
    """Candidate rings ``(k, 3)``: centre x, y and radius (working pixels), strongest first.

    Each strong ridge pixel votes along its normal, both ways, at every radius; votes are
    binned by centre (``_VOTE_CELL`` pixels) and by radius (log bins), so concentric rings
    (a head inside the amniotic sac) are told apart.
    """
    import cv2

    h, w = ridge.shape
    ys, xs = np.nonzero(ridge > thr)
    wts = ridge[ys, xs]
    if len(wts) > _MAX_VOTERS:
        top = np.argpartition(wts, -_MAX_VOTERS)[-_MAX_VOTERS:]
        ys, xs, wts = ys[top], xs[top], wts[top]
    t = np.pi * orient[ys, xs] / _N_ORIENT
    side = max(h, w)
    r_lo, r_hi = _R_MIN * side, _R_VOTE_MAX * side
    radii = np.arange(r_lo, r_hi, 3.0)
    rbin = np.minimum(
        (np.log(radii / r_lo) / np.log(r_hi / r_lo) * _N_RADIUS_BINS).astype(np.int64),
        _N_RADIUS_BINS - 1,
    )
    q = _VOTE_CELL
    gh, gw = (h + q - 1) // q, (w + q - 1) // q
    acc = np.zeros(_N_RADIUS_BINS * gh * gw, np.float64)
    for sign in (1.0, -1.0):
        vx = xs[:, None] + sign * np.cos(t)[:, None] * radii[None, :]
        vy = ys[:, None] + sign * np.sin(t)[:, None] * radii[None, :]
        ok = (vx >= 0) & (vx < w) & (vy >= 0) & (vy < h)
        cells = (
            np.broadcast_to(rbin[None, :], vx.shape)[ok] * (gh * gw)
            + (vy[ok] / q).astype(np.int64) * gw
            + (vx[ok] / q).astype(np.int64)
        )
        acc += np.bincount(cells, np.broadcast_to(wts[:, None], vx.shape)[ok], acc.size)
    grid = acc.reshape(_N_RADIUS_BINS, gh, gw).astype(np.float32)
    grid = np.stack([cv2.GaussianBlur(g, (0, 0), 2.0) for g in grid])
    # smooth a little across radius bins: an ellipse's votes spread over neighbouring bins
    grid[1:-1] = 0.25 * grid[:-2] + 0.5 * grid[1:-1] + 0.25 * grid[2:]
    dil = np.stack([cv2.dilate(g, np.ones((7, 7), np.uint8)) for g in grid])
    dil = np.maximum(dil, np.maximum(np.roll(dil, 1, axis=0), np.roll(dil, -1, axis=0)))
    peaks = np.argwhere((grid == dil) & (grid > 0))
    if len(peaks) == 0:
        return np.zeros((0, 3))
    vals = grid[peaks[:, 0], peaks[:, 1], peaks[:, 2]]
    order = np.argsort(-vals)
    peaks, vals = peaks[order], vals[order]
    peaks = peaks[vals > 0.2 * vals[0]][:_N_CENTRES]
    edges = r_lo * (r_hi / r_lo) ** (np.arange(_N_RADIUS_BINS + 1) / _N_RADIUS_BINS)
    r = np.sqrt(edges[peaks[:, 0]] * edges[peaks[:, 0] + 1])
    return np.stack([(peaks[:, 2] + 0.5) * q, (peaks[:, 1] + 0.5) * q, r], axis=1)


def _polar(ridge: NDArray[np.float32], centres: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Log-polar samples ``(C, angles, radii)`` of ``ridge`` around each centre, with the
    sample positions ``X, Y`` of the same shape."""
    import cv2

    radii = _polar_radii(max(ridge.shape))
    th = 2.0 * np.pi * np.arange(_N_ANGLES) / _N_ANGLES
    X = centres[:, 0, None, None] + np.cos(th)[None, :, None] * radii[None, None, :]
    Y = centres[:, 1, None, None] + np.sin(th)[None, :, None] * radii[None, None, :]
    c, na, nr = X.shape
    vals = cv2.remap(
        ridge,
        X.reshape(c * na, nr).astype(np.float32),
        Y.reshape(c * na, nr).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.asarray(vals).reshape(c, na, nr), X, Y


def _polar_radii(side: int) -> NDArray:
    return np.geomspace(_R_MIN * side, _R_MAX * side, _N_RADII)


def _ring_paths(polar: NDArray) -> NDArray[np.int64]:
    """Brightest closed path per centre: radius index ``(C, angles)``.

    Dynamic programming over one and a half turns, radius changing by at most
    ``_DP_STEP`` bins per angle at a cost growing with the step squared; the last full
    turn is kept (its start has forgotten the arbitrary first angle).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    c, na, nr = polar.shape
    k = _DP_STEP
    ext = np.concatenate([polar, polar[:, : na // 2]], axis=1).astype(np.float32)
    n = ext.shape[1]
    steps = np.arange(-k, k + 1)
    cost = (_DP_PENALTY * steps * steps).astype(np.float32)
    score = ext[:, 0].copy()
    padded = np.full((c, nr + 2 * k), -np.inf, np.float32)
    back = np.zeros((c, n, nr), np.int8)
    # view[c, r, j] = padded[c, r + j] = score[c, r + j - k]: arriving from bin r + steps[j]
    view = sliding_window_view(padded, 2 * k + 1, axis=1)
    for i in range(1, n):
        padded[:, k : k + nr] = score
        windows = view - cost
        arg = np.argmax(windows, axis=2)
        score = np.take_along_axis(windows, arg[:, :, None], axis=2)[:, :, 0] + ext[:, i]
        back[:, i] = arg - k
    r = np.empty((c, n), np.int64)
    r[:, -1] = np.argmax(score, axis=1)
    rows = np.arange(c)
    for i in range(n - 1, 0, -1):
        r[:, i - 1] = r[:, i] + back[rows, i, r[:, i]]
    out = np.empty((c, na), np.int64)
    out[:, np.arange(n - na, n) % na] = r[:, n - na :]
    return out


def _trace(ridge: NDArray[np.float32], rings: NDArray) -> list[_Ellipse]:
    """One ellipse per candidate ring from the brightest closed path around its centre,
    within a factor ``_RING_WINDOW`` of its voted radius (re-centred once)."""
    h, w = ridge.shape
    n = len(rings)
    alive = [True] * n
    ells: list[_Ellipse | None] = [None] * n
    cur = rings[:, :2].astype(np.float64)
    radii = _polar_radii(max(h, w))
    outside = (radii[None, :] < rings[:, 2, None] / _RING_WINDOW) | (
        radii[None, :] > rings[:, 2, None] * _RING_WINDOW
    )
    pts_last: list[NDArray | None] = [None] * n
    ang = np.arange(_N_ANGLES)
    for _ in range(2):
        idx = [i for i in range(n) if alive[i]]
        if not idx:
            break
        polar, X, Y = _polar(ridge, cur[idx])
        polar = np.where(outside[idx][:, None, :], -1e3, polar)
        paths = _ring_paths(polar)
        for j, i in enumerate(idx):
            sup = polar[j, ang, paths[j]]
            pos = sup > 0
            if pos.sum() < 10:
                alive[i] = False
                continue
            ok = sup > 0.25 * float(np.median(sup[pos]))
            pts = np.stack([X[j, ang, paths[j]], Y[j, ang, paths[j]]], axis=1)
            e = _fit(pts[ok])
            if e is None or not _plausible(e, h, w):
                alive[i] = False
                continue
            ells[i] = e
            pts_last[i] = np.where(ok[:, None], pts, np.nan)
            cur[i] = (e[0], e[1])
    out: list[_Ellipse] = []
    for i, found in enumerate(ells):
        path = pts_last[i]
        if found is None or path is None:
            continue
        out.append(_best_sector_fit(found, path, ridge))
    return out


def _best_sector_fit(e: _Ellipse, pts: NDArray, ridge: NDArray[np.float32]) -> _Ellipse:
    """The path's fit, or a fit leaving out two neighbouring 45-degree sectors, whichever
    lies best on the ridge (a stretch of path that followed another echo is dropped)."""
    h, w = ridge.shape
    sector = np.arange(len(pts)) * 8 // len(pts)
    valid = np.isfinite(pts[:, 0])
    best, best_s = e, _support(e, ridge)
    for k in range(8):
        keep = valid & (sector != k) & (sector != (k + 1) % 8)
        if keep.sum() < 10:
            continue
        f = _fit(pts[keep])
        if f is None or not _plausible(f, h, w):
            continue
        s = _support(f, ridge)
        if s > best_s:
            best, best_s = f, s
    return best


def _profiles(
    img: NDArray[np.float32], e: _Ellipse, offsets: NDArray, n: int = _N_POINTS
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """``img`` along the outward normals of ``e``: ``x, y, nx, ny`` and values ``(n, m)``
    at ``offsets``; -1 outside the image."""
    import cv2

    x, y, nx, ny = _sample(e, n)
    X = (x[:, None] + nx[:, None] * offsets[None, :]).astype(np.float32)
    Y = (y[:, None] + ny[:, None] * offsets[None, :]).astype(np.float32)
    vals = cv2.remap(img, X, Y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
    return x, y, nx, ny, np.asarray(vals)


def _support(e: _Ellipse, ridge: NDArray[np.float32]) -> float:
    """Mean ridge strength at most 1.5 px from ``e``, over its points inside the image."""
    offsets = np.arange(-1.5, 1.51, 0.5)
    _, _, _, _, vals = _profiles(ridge, e, offsets)
    inside = (vals >= 0).all(axis=1)
    if inside.sum() < 0.3 * len(vals):
        return 0.0
    return float(vals[inside].max(axis=1).mean() * math.sqrt(inside.mean()))


def _refine(e: _Ellipse, ridge: NDArray[np.float32], thr: float) -> _Ellipse | None:
    """Pull ``e`` onto the ridge: strongest ridge along each normal in shrinking bands."""
    h, w = ridge.shape
    for band in (6.0, 4.0, 3.0, 2.0):
        offsets = np.arange(-band, band + 0.01, 0.5)
        x, y, nx, ny, vals = _profiles(ridge, e, offsets)
        j = np.argmax(vals, axis=1)
        peak = vals[np.arange(len(j)), j]
        good = peak > 0.5 * thr
        if good.sum() < 12:
            break
        pts = np.stack([x + nx * offsets[j], y + ny * offsets[j]], axis=1)
        f = _fit(pts[good])
        if f is None or not _plausible(f, h, w):
            break
        e = f
    return e


def _ramp(v: float, lo: float, hi: float) -> float:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between."""
    return min(1.0, max(0.0, (v - lo) / (hi - lo)))


def _score(
    e: _Ellipse,
    ridge: NDArray[np.float32],
    fan: NDArray[np.bool_],
    work: NDArray[np.float32],
    thr: float,
) -> tuple[float, dict[str, float]]:
    """Score in [0, 1] of ``e`` (at the echo's middle line) on the working copy, and parts.

    ``support`` x sqrt(``visible``) x axis-ratio ramp x contrast ramp. The contrasts compare
    the ring's grey with bands at 15-25% of ``b`` inside and outside it (outside the fan
    counts as dark): a skull is brighter than the brain it holds and than what lies
    outside; the rims of fluid pockets and tissue layers are not, on both sides. Their mean
    is used: a first-trimester brain is bright, a term head lies against bright tissue.
    """
    h, w = ridge.shape
    offsets = np.arange(-1.5, 1.51, 0.5)
    x, y, _, _, vals = _profiles(ridge, e, offsets)
    xi = np.clip(np.round(x).astype(np.int64), 0, w - 1)
    yi = np.clip(np.round(y).astype(np.int64), 0, h - 1)
    vis = (x >= 0) & (x < w) & (y >= 0) & (y < h) & fan[yi, xi]
    visible = float(vis.mean())
    parts = {"support": 0.0, "visible": visible, "contrast_in": 0.0, "contrast_out": 0.0}
    if vis.sum() < 0.3 * len(vis):
        return 0.0, parts
    on = vals.max(axis=1) > thr
    parts["support"] = float(on[vis].mean())
    b = e[3]
    bands = np.array([-0.25, -0.15, 0.0, 0.15, 0.25]) * b
    _, _, _, _, grey = _profiles(work, e, bands)
    ok = vis & (grey >= 0).all(axis=1)
    if ok.sum() < 10:
        return 0.0, parts
    ring = float(np.median(grey[ok, 2]))
    parts["contrast_in"] = (ring - float(np.median(grey[ok, :2]))) / max(ring, 1.0)
    parts["contrast_out"] = (ring - float(np.median(grey[ok, 3:]))) / max(ring, 1.0)
    score = (
        parts["support"]
        * math.sqrt(visible)
        * _ramp(b / e[2], _MIN_AXIS_RATIO, _MIN_AXIS_RATIO + 0.2)
        * _ramp(0.5 * (parts["contrast_in"] + parts["contrast_out"]), *_CONTRAST)
    )
    return score, parts


def _full_resolution(
    grey: NDArray[np.uint8],
    e_work: _Ellipse,
    scale: float,
    ridge: NDArray[np.float32],
    fan: NDArray[np.bool_],
    work: NDArray[np.float32],
    thr: float,
) -> HeadFit | None:
    """Pull the working-copy ellipse onto the full-resolution echo, move it to the outer
    border, and score it."""
    import cv2

    cx, cy, a, b, t = e_work
    e: _Ellipse = (cx / scale, cy / scale, a / scale, b / scale, t)
    img = np.asarray(cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0), dtype=np.float32)
    for _ in range(2):
        band = max(6.0, 0.06 * e[3])
        offsets = np.arange(-band, band + 0.01, 0.5)
        x, y, nx, ny, vals = _profiles(img, e, offsets)
        inside = (vals >= 0).all(axis=1)
        if inside.sum() < 12:
            break
        j = np.argmax(vals, axis=1)
        peak = vals[np.arange(len(j)), j]
        good = inside & (peak > np.percentile(peak[inside], 30))
        if good.sum() < 12:
            break
        f = _fit(np.stack([x + nx * offsets[j], y + ny * offsets[j]], axis=1)[good])
        if f is None:
            break
        e = f
    outer, inner = _borders(img, e)
    cx, cy, a, b, t = e
    # score on the working copy, at the echo's middle line
    s, feats = _score((cx * scale, cy * scale, a * scale, b * scale, t), ridge, fan, work, thr)
    a_out, b_out = a + outer, b + outer
    if b_out <= 1.0:
        return None
    return HeadFit(
        cx=cx,
        cy=cy,
        a=a_out,
        b=b_out,
        angle_deg=math.degrees(t) % 180.0,
        skull_px=max(0.0, outer - inner),
        score=float(min(1.0, max(0.0, s))),
        support=feats["support"],
        visible=feats["visible"],
        contrast_in=feats["contrast_in"],
        contrast_out=feats["contrast_out"],
    )


def _borders(img: NDArray[np.float32], e: _Ellipse) -> tuple[float, float]:
    """Outer and inner border of the echo along ``e`` (pixels from ``e``, outer > 0 > inner):
    median positions of the steepest fall outside and the steepest rise inside the peak."""
    b = e[3]
    reach = max(_BORDER_REACH_PX, 0.08 * b)
    step = 0.5
    offsets = np.arange(-reach, reach + 0.01, step)
    _, _, _, _, vals = _profiles(img, e, offsets)
    inside = (vals >= 0).all(axis=1)
    if inside.sum() < 12:
        return 0.0, 0.0
    vals = vals[inside]
    mid = len(offsets) // 2
    half = min(len(offsets) // 4, int(6.0 / step))
    j = mid - half + np.argmax(vals[:, mid - half : mid + half + 1], axis=1)
    peak = vals[np.arange(len(j)), j]
    strong = peak > np.percentile(peak, 30)
    diff = np.diff(vals, axis=1)  # diff[:, k] lies between offsets k and k+1
    cols = np.arange(diff.shape[1])[None, :]
    after = np.where(cols >= j[:, None], diff, np.inf)
    before = np.where(cols < j[:, None], diff, -np.inf)
    fall = offsets[0] + (np.argmin(after, axis=1) + 0.5) * step
    rise = offsets[0] + (np.argmax(before, axis=1) + 0.5) * step
    return float(np.median(fall[strong])), float(np.median(rise[strong]))
