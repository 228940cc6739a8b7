"""One phantom frame: scene -> B-mode -> annotations, with the diagnostic-region mask."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.phantoms.anatomy import FLUID, Case, sample_case, sample_pose
from fetal_viewer.core.phantoms.bmode import SectorGeometry, form_image, geometry_for
from fetal_viewer.core.phantoms.body import draw_case, draw_surroundings
from fetal_viewer.core.phantoms.canvas import Canvas
from fetal_viewer.core.phantoms.overlay import Annotation, draw_overlay
from fetal_viewer.core.phantoms.styles import ScannerStyle, get_style


@dataclass(frozen=True)
class Phantom:
    """A rendered frame: ``image`` (H, W, 3) uint8 RGB, ``mask`` (H, W) bool of the
    diagnostic region (inside the fan), ``meta`` with the ground truth and geometry."""

    image: NDArray[np.uint8]
    mask: NDArray[np.bool_]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scene:
    """The drawn layers before image formation (tests check anatomy on these)."""

    case: Case
    geom: SectorGeometry
    echo: NDArray[np.float32]
    bone: NDArray[np.float32]
    mask: NDArray[np.bool_]
    parts: dict[str, NDArray[np.bool_]]


def choose_depth_mm(style: ScannerStyle, ga_weeks: float, u: float) -> float:
    """The depth a sonographer would pick for a CNS plane: the head (or spine) magnified
    to fill most of the image with a little room around it, in whole centimetres within
    the scanner's range. Depends on age only, never on class."""
    from fetal_viewer.core.phantoms.biometry import head_size

    ofd_cm = head_size(ga_weeks).ofd_mm / 10.0
    lo, hi = style.depth_range_cm
    cm = round(1.05 * ofd_cm + 1.0 + 1.5 * u)
    return float(min(max(cm, lo), hi) * 10)


#: the narrowed sector of a CNS preset (degrees); never wider than the probe's
CNS_SECTOR_DEG = (50.0, 62.0)


def choose_sector_deg(style: ScannerStyle, u: float) -> float:
    """The sector width a sonographer would pick for a CNS plane: narrowed around the
    head (higher frame rate, bigger image), never wider than the probe allows."""
    lo, hi = CNS_SECTOR_DEG
    return float(min(style.sector_deg, round(lo + (hi - lo) * u)))


#: share of the diagnostic region that must be in the fan for a frame to be kept
FRAMED_SHARE = 0.95
#: new probe positions tried before settling for the best one
FRAMING_TRIES = 24


def lesion_view(case: Case, geom: SectorGeometry) -> float:
    """Share of the case's diagnostic region that the fan shows (0 when any of it falls
    off the display)."""
    cv = Canvas(geom)
    draw_case(cv, case)
    m = cv.mask > 0
    if not m.any() or m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
        return 0.0
    return float((m & geom.sector).sum() / m.sum())


def frame_case(case: Case, geom: SectorGeometry, rng: np.random.Generator) -> Case:
    """Move the probe until the diagnostic region is in the fan, as a sonographer does
    before freezing a frame: keep ``case``'s pose when it shows at least
    :data:`FRAMED_SHARE` of the region, else the best of :data:`FRAMING_TRIES` new poses.
    The same rule for every class."""
    return _best_pose(case, geom, rng)[0]


def _best_pose(case: Case, geom: SectorGeometry, rng: np.random.Generator) -> tuple[Case, float]:
    best, best_share = case, lesion_view(case, geom)
    for _ in range(FRAMING_TRIES):
        if best_share >= FRAMED_SHARE:
            break
        trial = case.with_pose(sample_pose(rng, case.view))
        share = lesion_view(trial, geom)
        if share > best_share:
            best, best_share = trial, share
    return best, best_share


def frame_exam(
    case: Case,
    style: ScannerStyle,
    size: tuple[int, int],
    depth_mm: float,
    sector_deg: float,
    rng: np.random.Generator,
) -> tuple[Case, SectorGeometry, float]:
    """:func:`frame_case`, widening the sector (up to the probe's) and then deepening the
    image a centimetre at a time (up to the scanner's deepest setting) while the
    diagnostic region does not fit. Returns the case, its geometry and the share of the
    region on screen."""
    deepest = style.depth_range_cm[1] * 10.0
    while True:
        geom = geometry_for(style, size, depth_mm, sector_deg)
        case, share = _best_pose(case, geom, rng)
        if share >= FRAMED_SHARE:
            return case, geom, share
        if sector_deg < style.sector_deg:
            sector_deg = min(style.sector_deg, sector_deg + 6.0)
        elif depth_mm < deepest:
            depth_mm = min(deepest, depth_mm + 10.0)
        else:
            return case, geom, share


def _texture(shape: tuple[int, int], rng: np.random.Generator, cell: int, sigma: float) -> NDArray:
    import cv2

    h, w = shape
    small = rng.standard_normal((max(2, h // cell), max(2, w // cell))).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.exp(sigma * big).astype(np.float32)


def build_scene(
    case: Case,
    style: ScannerStyle,
    size: tuple[int, int],
    depth_mm: float,
    sector_deg: float | None = None,
    keep_parts: bool = False,
) -> Scene:
    """Draw the surroundings and the fetal part of ``case`` at the display geometry
    (the probe's full sector when ``sector_deg`` is None)."""
    geom = geometry_for(style, size, depth_mm, sector_deg)
    cv = Canvas(geom, keep_parts=keep_parts)
    tex = np.random.default_rng(case.texture_seed)
    cv.echo[geom.sector] = FLUID  # amniotic fluid everywhere first
    draw_surroundings(cv, tex)
    draw_case(cv, case)
    hetero = _texture(cv.echo.shape, tex, max(4, round(6.0 * geom.px_per_mm)), 0.35)
    hetero *= _texture(cv.echo.shape, tex, max(2, round(1.5 * geom.px_per_mm)), 0.2)
    echo = cv.echo * hetero
    mask = (cv.mask > 0) & geom.sector
    parts = {k: (v > 0) & geom.sector for k, v in cv.parts.items()}
    return Scene(case=case, geom=geom, echo=echo, bone=cv.bone, mask=mask, parts=parts)


def render_case(
    case: Case,
    style: ScannerStyle,
    rng: np.random.Generator,
    size: tuple[int, int] | None = None,
    *,
    depth_mm: float | None = None,
    sector_deg: float | None = None,
    annotation: Annotation | None = None,
    gain_db: float | None = None,
    frame: bool = True,
) -> Phantom:
    """Render ``case`` as ``style``'s scanner would show it, moved first to bring its
    diagnostic region into the fan unless ``frame`` is False (see :func:`frame_case`)."""
    size = style.native_size if size is None else (int(size[0]), int(size[1]))
    if depth_mm is None:
        depth_mm = choose_depth_mm(style, case.ga_weeks, float(rng.random()))
    if sector_deg is None:
        sector_deg = choose_sector_deg(style, float(rng.random()))
    if gain_db is None:
        gain_db = float(rng.uniform(-3.0, 3.0))
    if frame:
        case, geom, _share = frame_exam(case, style, size, depth_mm, sector_deg, rng)
        depth_mm, sector_deg = geom.depth_mm, geom.sector_deg
    scene = build_scene(case, style, size, depth_mm, sector_deg)
    grey = form_image(scene.echo, scene.bone, scene.geom, style, rng, gain_db=gain_db)
    tint = np.array(style.tint, np.float32)
    image = np.clip(grey[..., None].astype(np.float32) * tint + 0.5, 0, 255).astype(np.uint8)
    if annotation is None:
        annotation = Annotation(ga_text=ga_text(case.ga_weeks))
    draw_overlay(image, scene.geom, style, annotation, gain=round(50 + 2 * gain_db))
    g = scene.geom
    meta: dict[str, Any] = {
        "label": case.label,
        "view": case.view,
        "ga_weeks": case.ga_weeks,
        "bpd_mm": case.head.bpd_mm,
        "hc_mm": case.head.hc_mm,
        "ofd_mm": case.head.ofd_mm,
        "center": style.center,
        "depth_mm": depth_mm,
        "spacing_mm": (g.mm_per_px, g.mm_per_px),
        "region": g.region,
        "apex": g.apex,
        "sector_deg": g.sector_deg,
        "gain_db": gain_db,
    }
    return Phantom(image=image, mask=scene.mask, meta=meta)


def ga_text(ga_weeks: float) -> str:
    weeks = int(ga_weeks)
    days = min(6, round((ga_weeks - weeks) * 7))
    return f"GA {weeks}w{days}d"


def render(
    label: str,
    ga_weeks: float,
    style: ScannerStyle | str,
    rng: np.random.Generator,
    size: tuple[int, int] | None = None,
    *,
    view: str | None = None,
    annotation: Annotation | None = None,
) -> Phantom:
    """One phantom frame of class ``label`` at ``ga_weeks`` on a center's scanner.

    ``style`` is a :class:`ScannerStyle` or a center letter; ``size`` is (width, height)
    in pixels (the style's native matrix when None); ``view`` forces one of the class's
    views (see ``anatomy.VIEWS``). The same ``rng`` state gives the same phantom.
    """
    st = get_style(style)
    case = sample_case(label, ga_weeks, rng, view=view)
    return render_case(case, st, rng, size, annotation=annotation)
