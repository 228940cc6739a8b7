"""B-mode image formation for a convex probe.

The pipeline is the one a scanner runs, in simplified form:

1. the scene (echogenicity ``echo``, bone/attenuating ``bone`` maps, drawn in display
   pixels) is sampled on the probe's polar grid (one row per depth sample, one column per
   scan line);
2. speckle: complex Gaussian scatterers with amplitude ``sqrt(echo)`` convolved with an
   anisotropic Gaussian point-spread function (short axially, wide laterally), whose
   squared magnitude is the backscattered intensity (fully developed speckle is Rayleigh);
3. propagation: intensity is multiplied by the two-way transmission behind bone (acoustic
   shadowing) and by frequency-dependent attenuation integrated along each scan line
   (fluid barely attenuates, so tissue behind it is enhanced); a time-gain-compensation
   curve gives back most of the mean soft-tissue loss; thermal noise is added after it;
4. log compression to the displayed dynamic range and a grey map;
5. scan conversion back to the Cartesian display (bilinear), black outside the sector.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.phantoms.styles import ScannerStyle

#: soft-tissue attenuation (dB / cm / MHz), one way
TISSUE_ATTENUATION = 0.5
#: amplitude-transmission loss of bone, per mm of bone crossed (nepers on intensity)
BONE_LOSS_PER_MM = 0.3

#: fraction of the frame each text layout leaves to the image: (x0, y0, x1, y1)
_DISPLAY_AREA: dict[str, tuple[float, float, float, float]] = {
    "header": (0.06, 0.13, 0.94, 0.97),
    "corners": (0.08, 0.10, 0.92, 0.97),
    "left": (0.20, 0.04, 0.97, 0.97),
    "bottom": (0.05, 0.03, 0.95, 0.86),
    "right": (0.04, 0.04, 0.80, 0.97),
}


@dataclass(frozen=True)
class SectorGeometry:
    """Where the fan lies in the display and how display pixels map to scan lines.

    Distances in display pixels unless named ``_mm``; the apex is the virtual centre of
    the convex array (above the image). Spacing is isotropic: ``mm_per_px`` both ways.
    """

    width: int
    height: int
    mm_per_px: float
    apex: tuple[float, float]
    r0_px: float
    r1_px: float
    half_angle: float
    depth_mm: float
    n_rows: int
    n_lines: int
    #: display -> polar sampling maps, shape (n_rows, n_lines)
    to_polar_x: NDArray[np.float32]
    to_polar_y: NDArray[np.float32]
    #: polar -> display maps, shape (height, width)
    to_display_x: NDArray[np.float32]
    to_display_y: NDArray[np.float32]
    #: True inside the fan, shape (height, width)
    sector: NDArray[np.bool_]

    @property
    def sector_deg(self) -> float:
        return math.degrees(2.0 * self.half_angle)

    @property
    def px_per_mm(self) -> float:
        return 1.0 / self.mm_per_px

    @property
    def region(self) -> tuple[int, int, int, int]:
        """Bounding box of the fan (x0, y0, x1, y1), inclusive, in display pixels."""
        ys, xs = np.nonzero(self.sector)
        return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())

    def to_px(self, r_mm: float, theta: float) -> tuple[float, float]:
        """Display position of the point at range ``r_mm`` from the apex, angle ``theta``."""
        s = self.px_per_mm
        return (
            self.apex[0] + r_mm * s * math.sin(theta),
            self.apex[1] + r_mm * s * math.cos(theta),
        )


@functools.lru_cache(maxsize=64)
def sector_geometry(
    width: int,
    height: int,
    layout: str,
    sector_deg: float,
    probe_radius_mm: float,
    depth_mm: float,
) -> SectorGeometry:
    """Fit the fan of a probe (radius, opening, depth) into the layout's display area."""
    x0f, y0f, x1f, y1f = _DISPLAY_AREA[layout]
    area_w, area_h = (x1f - x0f) * width, (y1f - y0f) * height
    half = math.radians(sector_deg) / 2.0
    r0_mm, r1_mm = probe_radius_mm, probe_radius_mm + depth_mm
    fan_w_mm = 2.0 * r1_mm * math.sin(half)
    fan_h_mm = r1_mm - r0_mm * math.cos(half)
    s = min(area_w / fan_w_mm, area_h / fan_h_mm)  # px per mm
    apex_x = (x0f + x1f) / 2.0 * width
    apex_y = y0f * height - r0_mm * math.cos(half) * s
    r0, r1 = r0_mm * s, r1_mm * s
    n_rows = max(8, round(r1 - r0))
    n_lines = max(8, min(round(2.0 * half * r1), 4 * width))

    radii = r0 + (r1 - r0) * np.arange(n_rows, dtype=np.float64) / (n_rows - 1)
    angles = -half + 2.0 * half * np.arange(n_lines, dtype=np.float64) / (n_lines - 1)
    to_polar_x = (apex_x + radii[:, None] * np.sin(angles)[None, :]).astype(np.float32)
    to_polar_y = (apex_y + radii[:, None] * np.cos(angles)[None, :]).astype(np.float32)

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs + 0.5 - apex_x, ys + 0.5 - apex_y
    r = np.hypot(dx, dy)
    th = np.arctan2(dx, dy)
    row = (r - r0) / (r1 - r0) * (n_rows - 1)
    line = (th + half) / (2.0 * half) * (n_lines - 1)
    sector = (row >= 0.0) & (row <= n_rows - 1) & (np.abs(th) <= half)
    return SectorGeometry(
        width=width,
        height=height,
        mm_per_px=1.0 / s,
        apex=(apex_x, apex_y),
        r0_px=r0,
        r1_px=r1,
        half_angle=half,
        depth_mm=depth_mm,
        n_rows=n_rows,
        n_lines=n_lines,
        to_polar_x=to_polar_x,
        to_polar_y=to_polar_y,
        to_display_x=line.astype(np.float32),
        to_display_y=row.astype(np.float32),
        sector=sector,
    )


def geometry_for(
    style: ScannerStyle, size: tuple[int, int], depth_mm: float, sector_deg: float | None = None
) -> SectorGeometry:
    """The fan of ``style``'s probe at ``depth_mm``, ``sector_deg`` wide (the probe's full
    sector when None)."""
    sector = style.sector_deg if sector_deg is None else sector_deg
    return sector_geometry(size[0], size[1], style.layout, sector, style.probe_radius_mm, depth_mm)


def form_image(
    echo: NDArray[np.float32],
    bone: NDArray[np.float32],
    geom: SectorGeometry,
    style: ScannerStyle,
    rng: np.random.Generator,
    gain_db: float = 0.0,
) -> NDArray[np.uint8]:
    """Simulate the B-mode grey image (height, width) uint8 from the scene maps."""
    import cv2

    n_rows, n_lines = geom.n_rows, geom.n_lines
    e = cv2.remap(echo, geom.to_polar_x, geom.to_polar_y, cv2.INTER_LINEAR, borderValue=0.0)
    b = cv2.remap(bone, geom.to_polar_x, geom.to_polar_y, cv2.INTER_LINEAR, borderValue=0.0)
    np.maximum(e, 0.0, out=e)

    # speckle: complex scatterers through the point-spread function
    mm_per_row = geom.depth_mm / (n_rows - 1)
    mm_per_line = geom.r1_px * geom.mm_per_px * 2.0 * geom.half_angle / (n_lines - 1)
    sig_ax = max(0.6, style.psf_axial_mm / mm_per_row)
    sig_lat = max(0.6, style.psf_lateral_mm / mm_per_line)
    amp = np.sqrt(e)
    re = (rng.standard_normal((n_rows, n_lines), dtype=np.float32) * amp).astype(np.float32)
    im = (rng.standard_normal((n_rows, n_lines), dtype=np.float32) * amp).astype(np.float32)
    re_f = np.asarray(cv2.GaussianBlur(re, (0, 0), sigmaX=sig_lat, sigmaY=sig_ax), np.float32)
    im_f = np.asarray(cv2.GaussianBlur(im, (0, 0), sigmaX=sig_lat, sigmaY=sig_ax), np.float32)
    # mean intensity of unit echo after the PSF is 2 * sum(h^2) = 1 / (2 pi sx sy)
    intensity = (re_f * re_f + im_f * im_f) * np.float32(2.0 * math.pi * sig_ax * sig_lat)

    # acoustic shadowing behind bone (exclusive cumulative sum along each scan line)
    bone_mm = np.cumsum(b, axis=0, dtype=np.float32) * np.float32(mm_per_row)
    bone_mm -= b * np.float32(mm_per_row)
    shadow = np.exp(-2.0 * BONE_LOSS_PER_MM * bone_mm)

    # attenuation: fluid (low echo) attenuates ~4x less than soft tissue
    alpha = TISSUE_ATTENUATION * (0.25 + 0.75 * np.clip(e / 0.3, 0.0, 1.0))
    loss_db = 2.0 * style.freq_mhz * np.cumsum(alpha, axis=0) * (mm_per_row / 10.0)
    depth_cm = (np.arange(n_rows, dtype=np.float32) * mm_per_row / 10.0)[:, None]
    tgc_db = 0.7 * style.tgc_compensation * 2.0 * style.freq_mhz * TISSUE_ATTENUATION * depth_cm
    intensity *= shadow * np.power(10.0, (tgc_db - loss_db + gain_db) / 10.0).astype(np.float32)

    # thermal noise, amplified by the TGC like everything received late
    nre = rng.standard_normal((n_rows, n_lines), dtype=np.float32)
    nim = rng.standard_normal((n_rows, n_lines), dtype=np.float32)
    noise = (nre * nre + nim * nim) * np.power(10.0, (style.noise_db + tgc_db) / 10.0)
    intensity += noise.astype(np.float32)

    # log compression and grey map
    db = 10.0 * np.log10(intensity + 1e-9)
    lo = style.white_db - style.dynamic_range_db
    grey = np.clip((db - lo) / style.dynamic_range_db, 0.0, 1.0) ** style.gamma
    polar = (grey * 255.0).astype(np.float32)

    img = cv2.remap(polar, geom.to_display_x, geom.to_display_y, cv2.INTER_LINEAR, borderValue=0.0)
    img[~geom.sector] = 0.0
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
