"""Scanner styles: one per synthetic center.

Each center images with its own "scanner": field-of-view shape (sector angle, convex
radius, depth range), image matrix, point-spread function (speckle grain), transmit
frequency (attenuation), dynamic range, grey map, tint and burned-in text layout. Every
class is rendered with the same style distribution at a center, so a classifier cannot
use the style as a shortcut, and leave-one-center-out validation meets an unseen scanner.

The names are invented and carry the word PHANTOM so that they cannot be mistaken for
real equipment.
"""

from __future__ import annotations

from dataclasses import dataclass

from fetal_viewer.errors import DataError


@dataclass(frozen=True)
class ScannerStyle:
    """How one synthetic center's scanner forms and annotates its images."""

    center: str
    manufacturer: str
    model: str
    #: default output matrix (width, height)
    native_size: tuple[int, int]
    #: full opening angle of the convex sector (degrees)
    sector_deg: float
    #: radius of curvature of the convex array (mm)
    probe_radius_mm: float
    #: depth settings the sonographer may choose from (cm, inclusive)
    depth_range_cm: tuple[int, int]
    #: transmit centre frequency (MHz): sets attenuation
    freq_mhz: float
    #: point-spread function, 1/e half-widths (mm): axial, lateral at the deepest row
    psf_axial_mm: float
    psf_lateral_mm: float
    #: displayed dynamic range (dB) and the level shown as white (dB over soft tissue)
    dynamic_range_db: float
    white_db: float
    #: fraction of the mean soft-tissue attenuation the TGC curve gives back
    tgc_compensation: float
    #: exponent of the grey map applied after log compression
    gamma: float
    #: RGB multipliers of the grey image
    tint: tuple[float, float, float]
    #: where the burned-in text goes: "header", "corners", "left", "bottom", "right"
    layout: str
    #: side of the grey-scale bar: "left" or "right"
    bar_side: str
    frame_rate_hz: float
    #: RGB colour of the burned-in text
    text_rgb: tuple[int, int, int]
    #: thermal noise floor (dB under soft tissue at the surface)
    noise_db: float


STYLES: tuple[ScannerStyle, ...] = (
    ScannerStyle(
        center="A",
        manufacturer="PHANTOM Sonics (synthetic)",
        model="PHANTOM-SX7",
        native_size=(800, 600),
        sector_deg=72.0,
        probe_radius_mm=50.0,
        depth_range_cm=(8, 18),
        freq_mhz=3.5,
        psf_axial_mm=0.35,
        psf_lateral_mm=0.9,
        dynamic_range_db=55.0,
        white_db=20.0,
        tgc_compensation=0.95,
        gamma=1.0,
        tint=(1.0, 0.98, 0.94),
        layout="header",
        bar_side="right",
        frame_rate_hz=28.0,
        text_rgb=(235, 235, 235),
        noise_db=-56.0,
    ),
    ScannerStyle(
        center="B",
        manufacturer="PHANTOM Echo Works (synthetic)",
        model="PHANTOM-E3",
        native_size=(640, 480),
        sector_deg=60.0,
        probe_radius_mm=40.0,
        depth_range_cm=(8, 16),
        freq_mhz=5.0,
        psf_axial_mm=0.25,
        psf_lateral_mm=0.6,
        dynamic_range_db=50.0,
        white_db=17.0,
        tgc_compensation=0.95,
        gamma=0.95,
        tint=(0.90, 0.96, 1.0),
        layout="corners",
        bar_side="left",
        frame_rate_hz=35.0,
        text_rgb=(255, 255, 255),
        noise_db=-52.0,
    ),
    ScannerStyle(
        center="C",
        manufacturer="PHANTOM Nullwave (synthetic)",
        model="PHANTOM-N9",
        native_size=(1024, 768),
        sector_deg=88.0,
        probe_radius_mm=60.0,
        depth_range_cm=(9, 20),
        freq_mhz=4.0,
        psf_axial_mm=0.3,
        psf_lateral_mm=1.1,
        dynamic_range_db=66.0,
        white_db=24.0,
        tgc_compensation=0.9,
        gamma=1.15,
        tint=(1.0, 0.92, 0.80),
        layout="left",
        bar_side="left",
        frame_rate_hz=22.0,
        text_rgb=(230, 220, 170),
        noise_db=-60.0,
    ),
    ScannerStyle(
        center="D",
        manufacturer="PHANTOM Pseudoscan (synthetic)",
        model="PHANTOM-P2",
        native_size=(720, 576),
        sector_deg=66.0,
        probe_radius_mm=35.0,
        depth_range_cm=(8, 17),
        freq_mhz=2.5,
        psf_axial_mm=0.5,
        psf_lateral_mm=1.4,
        dynamic_range_db=48.0,
        white_db=16.0,
        tgc_compensation=1.0,
        gamma=1.3,
        tint=(1.0, 1.0, 1.0),
        layout="bottom",
        bar_side="right",
        frame_rate_hz=18.0,
        text_rgb=(200, 230, 255),
        noise_db=-50.0,
    ),
    ScannerStyle(
        center="E",
        manufacturer="PHANTOM Mockview (synthetic)",
        model="PHANTOM-M5",
        native_size=(960, 720),
        sector_deg=80.0,
        probe_radius_mm=55.0,
        depth_range_cm=(9, 18),
        freq_mhz=6.0,
        psf_axial_mm=0.22,
        psf_lateral_mm=0.7,
        dynamic_range_db=70.0,
        white_db=26.0,
        tgc_compensation=1.0,
        gamma=1.0,
        tint=(0.94, 1.0, 0.94),
        layout="right",
        bar_side="right",
        frame_rate_hz=40.0,
        text_rgb=(255, 255, 200),
        noise_db=-58.0,
    ),
    ScannerStyle(
        center="F",
        manufacturer="PHANTOM Imitatio (synthetic)",
        model="PHANTOM-I1",
        native_size=(800, 600),
        sector_deg=76.0,
        probe_radius_mm=45.0,
        depth_range_cm=(8, 18),
        freq_mhz=3.0,
        psf_axial_mm=0.4,
        psf_lateral_mm=1.0,
        dynamic_range_db=60.0,
        white_db=21.0,
        tgc_compensation=0.85,
        gamma=1.05,
        tint=(1.0, 0.97, 1.0),
        layout="corners",
        bar_side="right",
        frame_rate_hz=25.0,
        text_rgb=(180, 255, 180),
        noise_db=-54.0,
    ),
)


def get_style(center: str | ScannerStyle) -> ScannerStyle:
    """The style of a center by its letter (``"A"``...), or the style itself."""
    if isinstance(center, ScannerStyle):
        return center
    for style in STYLES:
        if style.center == center:
            return style
    raise DataError(
        f"Unknown phantom center {center!r}.",
        why=f"The phantom generator knows centers {', '.join(s.center for s in STYLES)}.",
        fix="Pick one of those, or pass a ScannerStyle.",
    )


def first_styles(count: int) -> tuple[ScannerStyle, ...]:
    """The first ``count`` center styles (for ``--centers K``)."""
    if not 1 <= count <= len(STYLES):
        raise DataError(
            f"Cannot make {count} phantom centers.",
            why=f"The generator has {len(STYLES)} distinct scanner styles.",
            fix=f"Use between 1 and {len(STYLES)} centers.",
        )
    return STYLES[:count]
