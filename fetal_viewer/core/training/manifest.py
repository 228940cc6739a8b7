"""Training/evaluation manifest: reading and validation before any training starts.

A manifest is a CSV with the columns ``path, frame, patient_id, center, label, ga_weeks,
mask_path, group`` (``frame``, ``ga_weeks``, ``mask_path`` and ``group`` may be absent or
empty). ``group`` names the subject a patient's images come from when several patients share
one (lesions synthesised into one real scan make five patients of one pregnancy): splits
keep a group on one side; without it each patient is its own group. Paths are
relative to the manifest's folder unless absolute. Every problem is collected and reported
at once, so a researcher fixes the whole file in one go.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fetal_viewer.errors import DataError

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "patient_id", "center", "label")
OPTIONAL_COLUMNS: tuple[str, ...] = ("frame", "ga_weeks", "mask_path", "group")
#: gestational-age bands of the report, in weeks: (name, lower inclusive, upper exclusive)
GA_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<20", float("-inf"), 20.0),
    ("20-28", 20.0, 28.0 + 1e-9),
    (">28", 28.0 + 1e-9, float("inf")),
)
_MAX_LISTED = 20

#: row indices into ``Manifest.records``: a list, a range or an integer numpy array
Indices = Sequence[int] | np.ndarray


@dataclass(frozen=True)
class Record:
    """One frame of one file, with its patient, center and reference label."""

    path: Path
    frame: int
    patient_id: str
    center: str
    label: str
    ga_weeks: float | None
    mask_path: Path | None
    row: int  # 1-based data row in the CSV (header is row 0), for messages
    group: str = ""  # the subject several patients share; "" when the patient is its own

    @property
    def subject(self) -> str:
        """What splits keep together: the group, else the patient."""
        return self.group or self.patient_id


@dataclass(frozen=True)
class Manifest:
    source: Path
    records: tuple[Record, ...]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def patients(self) -> list[str]:
        return sorted({r.patient_id for r in self.records})

    @property
    def centers(self) -> list[str]:
        return sorted({r.center for r in self.records})

    def labels(self) -> list[str]:
        return [r.label for r in self.records]

    def subset(self, indices: Indices) -> Manifest:
        return Manifest(self.source, tuple(self.records[i] for i in indices))

    def describe(self) -> dict[str, Any]:
        """Counts for the model card and the report."""
        per_class: dict[str, dict[str, int]] = {}
        for label in sorted({r.label for r in self.records}):
            rows = [r for r in self.records if r.label == label]
            per_class[label] = {
                "images": len(rows),
                "patients": len({r.patient_id for r in rows}),
            }
        return {
            "manifest": self.source.name,
            "images": len(self.records),
            "patients": len(self.patients),
            "centers": self.centers,
            "per_class": per_class,
            "with_masks": sum(r.mask_path is not None for r in self.records),
        }


def ga_band(ga_weeks: float | None) -> str:
    """Name of the gestational-age band (``<20``, ``20-28``, ``>28``) or ``unknown``."""
    if ga_weeks is None:
        return "unknown"
    for name, lo, hi in GA_BANDS:
        if lo <= ga_weeks < hi:
            return name
    return "unknown"


def _listed(items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = len(items) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more" if more > 0 else "")


def read_manifest(
    path: str | Path,
    classes: Sequence[str],
    *,
    check_files: bool = True,
) -> Manifest:
    """Read and validate a manifest; raise :class:`DataError` listing every problem.

    Problems found: missing columns, empty manifest, unknown labels, missing image or mask
    files, non-integer frames, non-numeric gestational ages, a patient that appears in
    several centers (folds by center would leak it) or with several labels (patient-level
    accuracy needs one reference per patient).
    """
    source = Path(path)
    if not source.is_file():
        raise DataError(
            "Manifest not found.",
            why="The path does not point to a file.",
            fix="Pass the CSV written by `fetal-viewer phantoms` or your own manifest.",
            path=source,
        )
    base = source.resolve().parent
    with source.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"Manifest lacks the column(s) {', '.join(missing)}.",
                why=f"Found columns: {', '.join(header) or '(none)'}.",
                fix="The header must name path, patient_id, center, label "
                "(and optionally frame, ga_weeks, mask_path).",
                path=source,
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise DataError("Manifest has no rows.", fix="Add one row per frame.", path=source)

    known = set(classes)
    problems: dict[str, list[str]] = defaultdict(list)
    records: list[Record] = []
    for i, row in enumerate(rows, start=1):
        label = row["label"]
        if label not in known:
            problems["unknown label"].append(f"row {i}: {label!r}")
        if not row["patient_id"]:
            problems["empty patient_id"].append(f"row {i}")
        if not row["center"]:
            problems["empty center"].append(f"row {i}")
        file_path = Path(row["path"])
        file_path = file_path if file_path.is_absolute() else base / file_path
        if not row["path"]:
            problems["empty path"].append(f"row {i}")
        elif check_files and not file_path.is_file():
            problems["missing file"].append(f"row {i}: {row['path']}")
        frame = 0
        if row.get("frame"):
            try:
                frame = int(row["frame"])
                if frame < 0:
                    raise ValueError
            except ValueError:
                problems["bad frame index"].append(f"row {i}: {row['frame']!r}")
        ga: float | None = None
        if row.get("ga_weeks"):
            try:
                ga = float(row["ga_weeks"])
            except ValueError:
                problems["bad ga_weeks"].append(f"row {i}: {row['ga_weeks']!r}")
        mask: Path | None = None
        if row.get("mask_path"):
            mask = Path(row["mask_path"])
            mask = mask if mask.is_absolute() else base / mask
            if check_files and not mask.is_file():
                problems["missing mask file"].append(f"row {i}: {row['mask_path']}")
        records.append(
            Record(
                file_path,
                frame,
                row["patient_id"],
                row["center"],
                label,
                ga,
                mask,
                i,
                row.get("group", ""),
            )
        )

    centers_of: dict[str, set[str]] = defaultdict(set)
    labels_of: dict[str, set[str]] = defaultdict(set)
    group_centers: dict[str, set[str]] = defaultdict(set)
    for r in records:
        centers_of[r.patient_id].add(r.center)
        labels_of[r.patient_id].add(r.label)
        group_centers[r.subject].add(r.center)
    for g, centers in sorted(group_centers.items()):
        if len(centers) > 1 and g not in centers_of:
            problems["group in several centers"].append(f"{g}: {', '.join(sorted(centers))}")
    for pid, centers in sorted(centers_of.items()):
        if len(centers) > 1:
            problems["patient in several centers"].append(f"{pid}: {', '.join(sorted(centers))}")
    for pid, labels in sorted(labels_of.items()):
        if len(labels) > 1:
            problems["patient with several labels"].append(f"{pid}: {', '.join(sorted(labels))}")

    if problems:
        lines = [f"{kind} ({len(items)}): {_listed(items)}" for kind, items in problems.items()]
        raise DataError(
            f"Manifest has {sum(len(v) for v in problems.values())} problem(s); "
            "nothing was trained.",
            why="\n  " + "\n  ".join(lines),
            fix=f"Labels must be one of {', '.join(classes)}; paths are relative to the "
            "manifest's folder; each patient belongs to one center and has one label.",
            path=source,
        )
    return Manifest(source, tuple(records))
