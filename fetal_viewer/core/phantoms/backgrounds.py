"""A data set made from real normal head scans: each scan as the normal class (with lesion-free
sham edits) and the four anomalies synthesised into its own anatomy.

``fetal-viewer phantoms --backgrounds DIR`` runs :func:`generate_on_backgrounds`. The layout
is the drawn phantoms' (``manifest.csv``, ``png/<center>/<patient>/f000.png``,
``masks/...``, ``dicom/...``), plus:

* a ``group`` column: the subject a scan comes from (its pregnancy), which every split keeps
  on one side, since five patients are made from each scan;
* ``no_head.csv``: the scans where no skull was found (left out), with the reason;
* ``synthesis.csv``: per patient, the source scan, the automatic skull ellipse and the edits
  made (for the sham-versus-untouched check in docs/real-anatomy.md).

A subject per scan comes from ``--backgrounds-index`` (a CSV with ``filename`` and
``subject`` or ``subject_prefix``, as HC18's ``index.csv``; optional ``pixel_size_mm`` and
``ga_weeks``/``ga_weeks_hadlock``), from the DICOM Patient ID, or is the file itself.
Patient numbers are shuffled so that they say nothing about the class.
"""

from __future__ import annotations

import csv
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms.dataset import MANIFEST_COLUMNS, _write_png
from fetal_viewer.core.progress import CancelToken, ProgressFn, completed, no_progress
from fetal_viewer.errors import DataError

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ""}
#: sham edits per normal, drawn like the lesions' edit counts (two or three)
SHAM_EDITS = (2, 3)


@dataclass(frozen=True)
class Background:
    """One real normal scan and what is known of it."""

    path: Path
    subject: str
    pixel_mm: float | None
    ga_weeks: float | None


def list_backgrounds(folder: str | Path, index: str | Path | None = None) -> list[Background]:
    """The scans under ``folder`` (recursively), with their subjects; see the module doc."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(
            "The backgrounds folder does not exist.",
            fix="Pass a folder of real normal head scans (PNG, JPEG or DICOM).",
            path=root,
        )
    known: dict[str, dict[str, str]] = {}
    if index is not None:
        with Path(index).open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "filename" not in rows[0]:
            raise DataError(
                "The backgrounds index has no 'filename' column.",
                fix="Give a CSV with filename and subject (or subject_prefix) columns.",
                path=index,
            )
        known = {r["filename"]: r for r in rows}
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    out: list[Background] = []
    for p in files:
        row = known.get(p.name)
        if known and row is None:
            continue  # the index decides which files are scans
        subject = ""
        pixel = ga = None
        if row is not None:
            subject = row.get("subject") or row.get("subject_prefix") or ""
            pixel = float(row["pixel_size_mm"]) if row.get("pixel_size_mm") else None
            g = row.get("ga_weeks") or row.get("ga_weeks_hadlock")
            ga = float(g) if g else None
        out.append(Background(p, subject or p.relative_to(root).as_posix(), pixel, ga))
    if not out:
        raise DataError(
            "No scans were found in the backgrounds folder.",
            why="No PNG, JPEG or DICOM files" + (" named in the index." if known else "."),
            path=root,
        )
    return out


@dataclass(frozen=True)
class _Job:
    background: Background
    numbers: tuple[int, ...]  # patient number of each class, in CLASSES order
    seed: np.random.SeedSequence


def _run_job(
    job: _Job, out: Path, center: str, fmt: str, root: Path
) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str] | None]:
    """Synthesise the five patients of one scan; returns manifest rows, synthesis rows and
    the no-head row (when no skull was found)."""
    from fetal_viewer.core.io import read_frame
    from fetal_viewer.core.measure.head import detect_head, ga_weeks_hadlock, head_circumference_mm
    from fetal_viewer.core.phantoms.onreal import sham, synthesise

    bg = job.background
    source = bg.path.relative_to(root).as_posix()
    try:
        frame = read_frame(bg.path, 0)
    except Exception as exc:  # a file that does not decode is listed, not fatal
        return [], [], {"source": source, "reason": f"unreadable: {exc}"}
    search = detect_head(frame)
    if search.fit is None:
        return [], [], {"source": source, "reason": search.reason}
    head = search.fit
    ga = bg.ga_weeks
    if ga is None and bg.pixel_mm is not None:
        ga = ga_weeks_hadlock(head_circumference_mm(head, bg.pixel_mm))
    rng = np.random.default_rng(job.seed)
    rows: list[dict[str, str]] = []
    synth_rows: list[dict[str, str]] = []
    for label, number in zip(CLASSES, job.numbers, strict=True):
        if label == "normal":
            made = sham(frame, head, rng, int(rng.choice(SHAM_EDITS)))
        else:
            made = synthesise(frame, head, label, rng)
        pid = f"REAL-{number:05d}"
        rel = Path(center) / pid
        mask_rel = Path("masks") / rel / "f000.png"
        _write_png(out / mask_rel, made.mask.astype(np.uint8) * 255)
        if fmt in ("png", "both"):
            path_rel = Path("png") / rel / "f000.png"
            _write_png(out / path_rel, made.image)
        if fmt in ("dicom", "both"):
            dcm = _write_dicom(out, center, pid, number, made.image, bg, ga)
            if fmt == "dicom":
                path_rel = dcm
        rows.append(
            {
                "path": path_rel.as_posix(),
                "frame": "0",
                "patient_id": pid,
                "center": center,
                "label": label,
                "ga_weeks": "" if ga is None else f"{ga:.3f}",
                "mask_path": mask_rel.as_posix() if made.mask.any() else "",
                "group": f"{center}-{bg.subject}",
            }
        )
        synth_rows.append(
            {
                "patient_id": pid,
                "label": label,
                "source": source,
                "edits": " ".join(made.edits),
                **{f"head_{k}": str(v) for k, v in head.to_dict().items()},
            }
        )
    return rows, synth_rows, None


def _write_dicom(
    out: Path,
    center: str,
    pid: str,
    number: int,
    image: np.ndarray,
    bg: Background,
    ga: float | None,
) -> Path:
    """The synthesised frame as a US image DICOM file, calibrated when the pixel size is known."""
    import datetime as dt
    from dataclasses import replace

    from fetal_viewer.core.fov import find_fov
    from fetal_viewer.core.phantoms.dicom import DicomPatient, uid, write_us_dicom
    from fetal_viewer.core.phantoms.styles import first_styles

    style = replace(first_styles(1)[0], center=center, manufacturer="(real scan)", model="")
    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    x0, y0, x1, y1 = find_fov(rgb)
    spacing = bg.pixel_mm or 0.1
    patient = DicomPatient(
        patient_name=f"SYNTH^{pid}",
        patient_id=pid,
        birth_date=dt.date(1990, 1, 1),
        study_date=dt.date(2024, 1, 1),
        study_time=dt.time(9, 0),
        study_uid=uid(center, pid, "study"),
        accession=f"RS{number:06d}",
        ga_weeks=ga if ga is not None else 0.0,
        center=center,
    )
    rel = Path("dicom") / center / pid / "still01.dcm"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    write_us_dicom(
        out / rel,
        [rgb],
        patient=patient,
        style=style,
        series_uid=uid(center, pid, "series"),
        sop_uid=uid(center, pid, "instance"),
        series_number=1,
        instance_number=1,
        series_description="Fetal head, lesion synthesised into a real scan",
        spacing_mm=spacing,
        region=(x0, y0, x1, y1),
        apex=((x0 + x1) / 2.0, float(y0)),
        depth_mm=(y1 - y0) * spacing,
    )
    return rel


def generate_on_backgrounds(
    backgrounds: str | Path,
    out_dir: str | Path,
    *,
    index: str | Path | None = None,
    center: str = "R",
    seed: int = 0,
    fmt: str = "png",
    workers: int = 1,
    limit: int = 0,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Path:
    """Write the data set (see the module docstring) and return its manifest's path;
    ``limit`` > 0 takes only that many scans (the first after a seeded shuffle)."""
    from fetal_viewer.core.phantoms.dataset import FORMATS

    if fmt not in FORMATS:
        raise DataError(f"Unknown format {fmt!r}.", fix=f"Use one of {', '.join(FORMATS)}.")
    root = Path(backgrounds)
    scans = list_backgrounds(root, index)
    root_ss = np.random.SeedSequence(seed)
    shuffle_ss, *scan_ss = root_ss.spawn(len(scans) + 1)
    rng = np.random.default_rng(shuffle_ss)
    order = rng.permutation(len(scans))
    if limit > 0:
        order = np.sort(order[:limit])
    numbers = rng.permutation(len(scans) * len(CLASSES)) + 1
    jobs = [
        _Job(
            scans[i],
            tuple(int(n) for n in numbers[k * len(CLASSES) : (k + 1) * len(CLASSES)]),
            scan_ss[i],
        )
        for k, i in enumerate(order)
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = partial(_run_job, out=out, center=center, fmt=fmt, root=root)
    rows: list[dict[str, str]] = []
    synth: list[dict[str, str]] = []
    missed: list[dict[str, str]] = []
    progress(0, len(jobs), "real scans")

    def collect(
        result: tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str] | None],
    ) -> None:
        r, s, m = result
        rows.extend(r)
        synth.extend(s)
        if m is not None:
            missed.append(m)

    if workers <= 1 or len(jobs) < 2:
        for i, job in enumerate(jobs, 1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            collect(run(job))
            progress(i, len(jobs), "real scans")
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            for i, (_, result) in enumerate(completed(pool, run, jobs, cancel), 1):
                collect(result)
                progress(i, len(jobs), "real scans")
    rows.sort(key=lambda r: r["patient_id"])
    synth.sort(key=lambda r: r["patient_id"])
    missed.sort(key=lambda r: r["source"])
    _write_csv(out / "manifest.csv", [*MANIFEST_COLUMNS, "group"], rows)
    if synth:
        _write_csv(out / "synthesis.csv", list(synth[0]), synth)
    _write_csv(out / "no_head.csv", ["source", "reason"], missed)
    if not rows:
        raise DataError(
            "No skull was found in any of the scans; nothing was synthesised.",
            why=f"{len(missed)} scan(s) listed in {out / 'no_head.csv'}.",
            fix="Use axial head scans (the skull's ellipse in view).",
        )
    return out / "manifest.csv"


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
