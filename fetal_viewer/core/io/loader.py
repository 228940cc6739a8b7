"""``open_path`` / ``open_paths`` / ``read_frame``: files, folders and DICOMDIRs to studies.

Each file is examined on its own (header only); a file that cannot be read becomes one
:class:`StudyLoadError` in ``LoadResult.problems`` and never hides the others. DICOM files
are grouped patient -> study (StudyInstanceUID) -> series (one per file, ordered by
SeriesInstanceUID, InstanceNumber, name). Plain images become one study per folder,
whose patient is that folder (its name is kept in ``PatientIdentity.patient_id``).

In folders, hidden files, DICOMDIR indexes (their files are found by the walk) and
files with a known non-image suffix (``.txt .csv .json .md ...``) are skipped; every
other file is tried.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from fetal_viewer.core.io.dicom import DicomInstance, read_dicom
from fetal_viewer.core.io.images import looks_like_image, read_image
from fetal_viewer.core.io.study import (
    LoadResult,
    Patient,
    PatientIdentity,
    Series,
    Study,
    make_pseudonym,
)
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.errors import StudyLoadError

SKIPPED_SUFFIXES = {
    ".txt", ".csv", ".tsv", ".json", ".md", ".xml", ".html", ".htm", ".pdf", ".py",
    ".ini", ".cfg", ".log", ".yaml", ".yml", ".zip", ".gz", ".safetensors", ".pt",
}  # fmt: skip


def _is_dicomdir_name(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR"


def sniff(path: Path) -> str:
    """``"dicom"``, ``"image"`` or ``"dicom-noheader"`` (raises StudyLoadError otherwise)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise StudyLoadError(
            "the file cannot be read",
            why=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="Check that the file exists and that you may read it.",
            path=path,
        ) from exc
    if size == 0:
        raise StudyLoadError(
            "the file is empty (0 bytes)",
            why="nothing was written to it, or the copy failed",
            fix="Re-copy the file from its source.",
            path=path,
        )
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if looks_like_image(head):
        return "image"
    # DICOM without the 128-byte preamble starts with a group 0002 or 0008 tag
    if len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x08"):
        return "dicom-noheader"
    suffix = path.suffix.lower()
    kind = "a DICOM file" if suffix in {".dcm", ".dicom", ""} else f"a {suffix or 'plain'} file"
    raise StudyLoadError(
        "not a DICOM or image file",
        why=f"named like {kind}, but it has no DICOM 'DICM' marker and no PNG/JPEG/BMP/TIFF "
        "signature",
        fix="Open DICOM files (with the 128-byte preamble and 'DICM') or PNG, JPEG, BMP or "
        "TIFF images; re-export this one if it should be an image.",
        path=path,
    )


def dicomdir_files(path: Path) -> list[Path]:
    """Files a DICOMDIR references, in its record order."""
    from pydicom import dcmread

    try:
        ds = dcmread(path)
    except Exception as exc:
        raise StudyLoadError(
            "the DICOMDIR could not be read",
            why=f"{type(exc).__name__}: {exc}",
            fix="Open the folder instead of the DICOMDIR; its files will be found by scanning.",
            path=path,
        ) from exc
    root = path.parent
    out: list[Path] = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        out.append(root.joinpath(*[str(p) for p in parts]))
    return out


def _walk(folder: Path) -> list[Path]:
    files = []
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if not p.is_file() or _is_dicomdir_name(p) or p.suffix.lower() in SKIPPED_SUFFIXES:
            continue
        files.append(p)
    return files


def expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[StudyLoadError]]:
    """The files to examine for ``paths`` (files, folders, DICOMDIRs), in order."""
    files: list[Path] = []
    problems: list[StudyLoadError] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = _walk(p)
            if not found:
                problems.append(
                    StudyLoadError(
                        "the folder holds no DICOM or image files",
                        fix="Choose the folder that contains the exported study.",
                        path=p,
                    )
                )
            files.extend(found)
        elif p.is_file() and _is_dicomdir_name(p):
            try:
                files.extend(dicomdir_files(p))
            except StudyLoadError as exc:
                problems.append(exc)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(
                StudyLoadError(
                    "no such file or folder",
                    fix="Check the path.",
                    path=p,
                )
            )
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def examine(path: Path) -> DicomInstance | Series:
    """One file's header: a :class:`DicomInstance` or an image :class:`Series`."""
    kind = sniff(path)
    if kind == "image":
        return read_image(path)
    if not path.exists():
        raise StudyLoadError("no such file", fix="Check the path.", path=path)
    return read_dicom(path, force=kind == "dicom-noheader")


@dataclass
class _StudyAcc:
    description: str
    date: date | None
    series: list[Series] = field(default_factory=list)


@dataclass
class _PatientAcc:
    identity: PatientIdentity
    studies: dict[str, _StudyAcc] = field(default_factory=dict)


def _series_order(s: Series) -> tuple[int, str, int, str]:
    """Acquisition order: SeriesNumber, then the series, then InstanceNumber, then file."""
    unnumbered = 2**31  # after every numbered series
    return (
        s.series_number if s.series_number is not None else unnumbered,
        s.uid,
        s.instance_number if s.instance_number is not None else 0,
        str(s.source),
    )


def open_paths(
    paths: Iterable[str | Path],
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> LoadResult:
    """Examine every file under ``paths``; group the good ones, list the bad ones."""
    files, problems = expand(paths)
    patients: dict[str, _PatientAcc] = {}
    for i, path in enumerate(files):
        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(i, len(files), path.name)
        try:
            found = examine(path)
        except StudyLoadError as exc:
            problems.append(exc)
            continue
        except Exception as exc:  # never let one odd file stop the others
            problems.append(
                StudyLoadError(
                    "the file could not be examined",
                    why=f"{type(exc).__name__}: {exc}",
                    fix="Re-export the file; report it if it opens elsewhere.",
                    path=path,
                )
            )
            continue
        if isinstance(found, Series):
            folder = path.parent.resolve()
            key = f"folder:{folder}"
            acc = patients.setdefault(
                key,
                _PatientAcc(
                    PatientIdentity(patient_id=folder.name, patient_name="", birth_date=None)
                ),
            )
            study = acc.studies.setdefault(
                f"folder:{folder}", _StudyAcc(description="image folder", date=None)
            )
            study.series.append(found)
        else:
            acc = patients.setdefault(found.patient_key, _PatientAcc(found.identity))
            study = acc.studies.setdefault(
                found.study_uid, _StudyAcc(found.study_description, found.study_date)
            )
            study.series.append(found.series)
    progress(len(files), len(files), "")
    out = []
    for key, pacc in patients.items():
        studies = tuple(
            Study(
                uid=uid,
                description=sacc.description,
                date=sacc.date,
                series=tuple(sorted(sacc.series, key=_series_order)),
            )
            for uid, sacc in sorted(
                pacc.studies.items(), key=lambda kv: (kv[1].date or date.min, kv[0])
            )
        )
        out.append(Patient(pseudonym=make_pseudonym(key), identity=pacc.identity, studies=studies))
    out.sort(key=lambda p: p.pseudonym)
    return LoadResult(patients=out, problems=problems)


def open_path(
    path: str | Path,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> LoadResult:
    """A file, a folder (recursive) or a DICOMDIR, as patients -> studies -> series."""
    return open_paths([path], progress=progress, cancel=cancel)


def open_series(path: str | Path) -> Series:
    """The series of one image file; raises :class:`StudyLoadError` when it cannot be read."""
    p = Path(path)
    if p.is_dir():
        raise StudyLoadError("a folder, not a file", fix="Give one image file.", path=p)
    if not p.exists():
        raise StudyLoadError("no such file", fix="Check the path.", path=p)
    found = examine(p)
    return found if isinstance(found, Series) else found.series


def read_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """Frame ``index`` of one file as ``(rows, cols, 3)`` uint8 RGB (used by training)."""
    return open_series(path).frame(index)
