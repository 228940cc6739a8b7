"""Physical spacing from the Sequence of Ultrasound Regions (0018,6011).

Follows 3D Slicer's ``DICOMImageSequencePlugin``: spacing is taken only from regions
whose spatial format is 2D (RegionSpatialFormat 1, i.e. B-mode tissue or colour flow
images) and whose physical units are centimetres in both directions
(PhysicalUnitsX/YDirection 3). PhysicalDeltaX/Y are centimetres per pixel (their magnitude: a negative delta gives the
axis direction). When several
2D regions exist they must agree on the spacing; otherwise there is no calibration, and
``Calibration.reason`` says why. Doppler, M-mode and waveform regions are ignored.
"""

from __future__ import annotations

import math
from typing import Any

from fetal_viewer.core.io.study import Calibration
from fetal_viewer.core.io.values import first_number

_SPATIAL_2D = 1
_UNITS_CM = 3
_UNIT_NAMES = {0: "none", 1: "percent", 2: "dB", 3: "cm", 4: "seconds", 5: "hertz"}


def _cm(value: float) -> str:
    return f"{value:.4g} cm"


def calibration_note(calibration: Calibration) -> str | None:
    """One sentence for the viewer's banner when an image is not calibrated (None when it
    is): what it means for measurements, and why."""
    if calibration.spacing_mm is not None:
        return None
    reason = calibration.reason.strip().rstrip(".") or "the header has no calibration"
    return f"Not calibrated, so measurements are in pixels, not millimetres: {reason}."


def calibration_from_regions(ds: Any, rows: int, cols: int) -> Calibration:
    """Calibration of an ultrasound image from its header (``ds``, a pydicom Dataset)."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return Calibration.none("no Sequence of Ultrasound Regions (0018,6011) in the header")
    usable: list[tuple[float, float, tuple[int, int, int, int]]] = []
    skipped: list[str] = []
    for n, item in enumerate(regions, start=1):
        fmt = first_number(item.get("RegionSpatialFormat"))
        if fmt != _SPATIAL_2D:
            skipped.append(
                f"region {n} is not 2D (spatial format {fmt if fmt is None else int(fmt)})"
            )
            continue
        ux, uy = (
            first_number(item.get("PhysicalUnitsXDirection")),
            first_number(item.get("PhysicalUnitsYDirection")),
        )
        if ux != _UNITS_CM or uy != _UNITS_CM:
            names = [
                _UNIT_NAMES.get(int(u), str(u)) if u is not None else "missing" for u in (ux, uy)
            ]
            skipped.append(f"region {n} units are {names[0]}/{names[1]}, not cm/cm")
            continue
        dx, dy = first_number(item.get("PhysicalDeltaX")), first_number(item.get("PhysicalDeltaY"))
        if dx is None or dy is None or not (math.isfinite(dx) and math.isfinite(dy)):
            skipped.append(f"region {n} has no PhysicalDeltaX/Y")
            continue
        if dx == 0 or dy == 0:
            skipped.append(
                f"region {n}'s physical spacing is zero ({_cm(dx)} by {_cm(dy)} per pixel)"
            )
            continue
        # a negative delta says which way the axis runs (fo-dicom's DIRW0007 has one); the
        # physical spacing is its magnitude
        dx, dy = abs(dx), abs(dy)
        box_vals = [
            first_number(item.get(k))
            for k in (
                "RegionLocationMinX0",
                "RegionLocationMinY0",
                "RegionLocationMaxX1",
                "RegionLocationMaxY1",
            )
        ]
        if any(v is None for v in box_vals):
            box = (0, 0, cols - 1, rows - 1)
        else:
            x0, y0, x1, y1 = (int(v) for v in box_vals if v is not None)
            # some scanners store an exclusive max (x1 == cols): tolerate one pixel over
            if not (0 <= x0 <= x1 <= cols and 0 <= y0 <= y1 <= rows):
                skipped.append(
                    f"region {n} box {(x0, y0, x1, y1)} lies outside the {cols}x{rows} image"
                )
                continue
            box = (x0, y0, min(x1, cols - 1), min(y1, rows - 1))
        usable.append((dy * 10.0, dx * 10.0, box))
    if not usable:
        return Calibration.none("no valid 2D region in cm: " + "; ".join(skipped))
    row_mm, col_mm, _ = usable[0]
    for r, c, _box in usable[1:]:
        if not (math.isclose(r, row_mm, rel_tol=1e-3) and math.isclose(c, col_mm, rel_tol=1e-3)):
            return Calibration.none(
                f"2D regions disagree on the spacing ({row_mm:.4g} x {col_mm:.4g} mm vs "
                f"{r:.4g} x {c:.4g} mm per pixel)"
            )
    # the largest 2D region is the image the spacing belongs to
    box = max((b for _, _, b in usable), key=lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    note = f"from {len(usable)} 2D region(s) of the Sequence of Ultrasound Regions"
    return Calibration(spacing_mm=(row_mm, col_mm), region=box, reason=note)
