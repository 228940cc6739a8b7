"""One phantom frame: scene -> B-mode -> annotations, with the diagnostic-region mask."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.phantoms.anatomy import (
    FLUID,
    Case,
    draw_case,
    draw_surroundings,
    sample_case,
)
from fetal_viewer.core.phantoms.bmode import SectorGeometry, form_image, geometry_for
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
    """The depth a sonographer would pick: the head (or spine) with room around it, in
    whole centimetres within the scanner's range. Depends on age only, never on class."""
    from fetal_viewer.core.phantoms.biometry import head_size

    ofd_cm = head_size(ga_weeks).ofd_mm / 10.0
    lo, hi = style.depth_range_cm
    cm = round(1.3 * ofd_cm + 2.0 + 2.5 * u)
    return float(min(max(cm, lo), hi) * 10)


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
    keep_parts: bool = False,
) -> Scene:
    """Draw the surroundings and the fetal part of ``case`` at the display geometry."""
    geom = geometry_for(style, size, depth_mm)
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
    annotation: Annotation | None = None,
    gain_db: float | None = None,
) -> Phantom:
    """Render ``case`` as ``style``'s scanner would show it."""
    size = style.native_size if size is None else (int(size[0]), int(size[1]))
    if depth_mm is None:
        depth_mm = choose_depth_mm(style, case.ga_weeks, float(rng.random()))
    if gain_db is None:
        gain_db = float(rng.uniform(-3.0, 3.0))
    scene = build_scene(case, style, size, depth_mm)
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
        "sector_deg": math.degrees(2.0 * g.half_angle),
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
