"""Facts read from a DICOM header alone, before any pixel is touched.

Gestational age (``Series.ga_weeks``) comes from, in order: Last Menstrual Date
(0010,21D0) against the acquisition/content/study date (LMP dating); a ``GA 22w3d`` /
``GA: 22.4 weeks`` / ``GA 20+3`` note in ImageComments, SeriesDescription,
StudyDescription or AdditionalPatientHistory. Obstetric measurements proper live in
Structured Reports, which this loader does not read. The cine frame interval comes from
Frame Time, Frame Time Vector or the recommended frame rates. :func:`check_decoder` says,
before decoding, whether an installed pydicom plug-in handles the transfer syntax and which
package would.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from fetal_viewer.core.io.study import MAX_FRAME_PIXELS, MAX_FRAMES, MAX_TOTAL_BYTES
from fetal_viewer.errors import StudyLoadError

REEXPORT_FIX = "Re-export or re-copy the file from the scanner or PACS."
REINSTALL_FIX = (
    "Install the decoders this project depends on: "
    "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` (in the app's .venv)."
)


def parse_da(value: Any) -> date | None:
    text = str(value or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def tag_text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


_GA_RE = re.compile(
    r"\bGA\b\s*[:=]?\s*(\d{1,2}(?:\.\d+)?)\s*(?:w(?:ee)?ks?|w)?\s*(?:\+\s*|,\s*)?(?:(\d)\s*d(?:ays?)?|(?<=\+)\s*(\d))?",
    re.IGNORECASE,
)


def ga_fromtext(text: str) -> float | None:
    """Gestational age in weeks from a note such as ``GA 22w3d``, ``GA: 22.4 weeks``."""
    m = _GA_RE.search(text)
    if m is None:
        return None
    weeks = float(m.group(1))
    days = m.group(2) or m.group(3)
    if days is not None:
        weeks += int(days) / 7.0
    return weeks if 4.0 <= weeks <= 45.0 else None


def gestational_age_weeks(ds: Any) -> float | None:
    """Gestational age from the header (see the module docstring for the sources)."""
    lmp = parse_da(ds.get("LastMenstrualDate"))
    when = (
        parse_da(ds.get("AcquisitionDate"))
        or parse_da(ds.get("ContentDate"))
        or parse_da(ds.get("StudyDate"))
    )
    if lmp is not None and when is not None:
        weeks = (when - lmp).days / 7.0
        if 4.0 <= weeks <= 45.0:
            return round(weeks, 2)
    for keyword in (
        "ImageComments",
        "SeriesDescription",
        "StudyDescription",
        "AdditionalPatientHistory",
    ):
        ga = ga_fromtext(tag_text(ds, keyword))
        if ga is not None:
            return round(ga, 2)
    return None


def frame_time_ms(ds: Any, n_frames: int) -> float | None:
    """Cine frame interval: FrameTime, FrameTimeVector, then the recommended frame rates."""
    if n_frames < 2:
        return None
    ft = as_float(ds.get("FrameTime"))
    if ft is not None and ft > 0:
        return ft
    vec = ds.get("FrameTimeVector")
    if vec is not None:
        try:
            values = [float(v) for v in vec][1:]  # the first entry is 0 by definition
        except (TypeError, ValueError):
            values = []
        positive = [v for v in values if v > 0]
        if positive:
            return float(np.mean(positive))
    for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
        fps = as_float(ds.get(keyword))
        if fps is not None and fps > 0:
            return 1000.0 / fps
    return None


def burned_in(ds: Any) -> bool | None:
    value = tag_text(ds, "BurnedInAnnotation").upper()
    return True if value == "YES" else False if value == "NO" else None


def ts_name(ts: str) -> str:
    from pydicom.uid import UID

    name = UID(ts).name
    return name if name != ts else f"unknown ({ts})"


def check_decoder(ts: str, path: Path) -> None:
    """Raise a StudyLoadError naming the package to install when ``ts`` cannot be decoded."""
    from pydicom.pixels import get_decoder  # type: ignore[attr-defined]
    from pydicom.uid import UID

    uid = UID(ts)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        kind = (
            "a video transfer syntax"
            if "MPEG" in uid.name or "HEVC" in uid.name
            else (
                "not a known transfer syntax"
                if not uid.is_transfer_syntax
                else "one pydicom cannot decode"
            )
        )
        raise StudyLoadError(
            f"unsupported transfer syntax {ts_name(ts)}",
            why=f"{ts} is {kind}; no installed decoder handles it",
            fix="Export the images from the scanner or PACS uncompressed or as JPEG / JPEG 2000, "
            "or convert them (e.g. `gdcmconv --raw in.dcm out.dcm`).",
            path=path,
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plug-in is available"
        raise StudyLoadError(
            f"no decoder installed for {ts_name(ts)}",
            why=f"pydicom's plug-ins for it are missing packages: {missing}",
            fix=f"Install one plug-in's packages, e.g. {REINSTALL_FIX[REINSTALL_FIX.index('`') :]}",
            path=path,
        )


def refuse_dimensions(path: Path, rows: int, cols: int, spp: int, bits: int, n_frames: int) -> None:
    problem = ""
    if rows <= 0 or cols <= 0:
        problem = f"Rows x Columns is {rows} x {cols}"
    elif n_frames < 1 or n_frames > MAX_FRAMES:
        problem = f"Number of Frames is {n_frames} (at most {MAX_FRAMES} are accepted)"
    elif rows * cols > MAX_FRAME_PIXELS:
        problem = f"a {cols} x {rows} frame has more than {MAX_FRAME_PIXELS} pixels"
    elif spp not in (1, 3):
        problem = f"Samples per Pixel is {spp} (1 or 3 are supported)"
    elif bits not in (1, 8, 16, 32, 64):
        problem = f"Bits Allocated is {bits}"
    elif rows * cols * 3 * n_frames > MAX_TOTAL_BYTES:
        problem = (
            f"{n_frames} frames of {cols} x {rows} would need over {MAX_TOTAL_BYTES >> 30} GiB"
        )
    if problem:
        raise StudyLoadError(
            "the header declares absurd image dimensions; refused before decoding",
            why=problem,
            fix="The header is corrupt or not an image this viewer can show. " + REEXPORT_FIX,
            path=path,
        )
