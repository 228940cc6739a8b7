"""Case lists for a new study: a folder plus a reference-standard CSV, or a manifest.

Reference CSV columns: ``path`` (relative to the folder, or absolute), ``label``; optional
``source`` (where the reference comes from), ``frame``, ``ga_weeks``, ``center``.
Manifest CSV (the phantom generator's): ``path, frame, patient_id, center, label, ga_weeks,
mask_path`` with paths relative to the manifest's folder. ``patient_id`` is not stored.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fetal_viewer.core.store import CaseSpec
from fetal_viewer.errors import DataError


def _rows(path: Path, required: set[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = required - set(reader.fieldnames or ())
            if missing:
                raise DataError(
                    "The CSV lacks required columns.",
                    why=f"Missing {sorted(missing)}; found {reader.fieldnames}.",
                    fix=f"Add the columns {sorted(required)}.",
                    path=path,
                )
            return [dict(r) for r in reader]
    except OSError as exc:
        raise DataError("Cannot read the CSV.", why=str(exc), path=path) from exc


def _opt_float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def cases_from_reference(folder: Path, reference_csv: Path) -> list[CaseSpec]:
    """One case per row of the reference CSV; every file must exist under ``folder``."""
    out, missing = [], []
    for row in _rows(reference_csv, {"path", "label"}):
        p = Path(row["path"])
        full = p if p.is_absolute() else folder / p
        if not full.is_file():
            missing.append(row["path"])
            continue
        out.append(
            CaseSpec(
                source_path=str(full.resolve()),
                reference_label=row["label"].strip(),
                reference_source=(row.get("source") or "reference standard").strip(),
                frame=int(row.get("frame") or 0),
                ga_weeks=_opt_float(row.get("ga_weeks")),
                center=(row.get("center") or None),
            )
        )
    if missing:
        raise DataError(
            f"{len(missing)} files named in the reference CSV are missing.",
            why=f"First ones: {missing[:5]}.",
            fix="Correct the paths (relative to the folder) or the folder.",
            path=reference_csv,
        )
    if not out:
        raise DataError("The reference CSV lists no cases.", path=reference_csv)
    return out


def cases_from_manifest(manifest: Path, reference_csv: Path | None = None) -> list[CaseSpec]:
    """Cases from a manifest; a reference CSV (path,label) overrides its labels."""
    base = manifest.parent
    override = {}
    if reference_csv is not None:
        for r in _rows(reference_csv, {"path", "label"}):
            override[r["path"]] = (r["label"].strip(), r.get("source") or "reference standard")
    out = []
    for row in _rows(manifest, {"path", "label"}):
        full = (base / row["path"]).resolve()
        label, source = override.get(row["path"], (row["label"].strip(), "manifest"))
        out.append(
            CaseSpec(
                source_path=str(full),
                reference_label=label,
                reference_source=source,
                frame=int(row.get("frame") or 0),
                ga_weeks=_opt_float(row.get("ga_weeks")),
                center=row.get("center") or None,
            )
        )
    if not out:
        raise DataError("The manifest lists no cases.", path=manifest)
    return out


def study_model(
    card_path: str | Path | None, labels: list[str] | None = None
) -> tuple[dict[str, object] | None, str | None, list[str]]:
    """The model a study records: (card as a dict, sha256 of the card file, label set).

    The card file's sha256 pins the weights too (the card holds their sha256), so a reader's
    workstation can check it loads the model the study was created with. Labels default to
    the card's classes, then to the paper's five classes.
    """
    import hashlib
    import json

    from fetal_viewer.core.model.card import ModelCard
    from fetal_viewer.core.model.labels import CLASSES

    card: dict[str, object] | None = None
    sha: str | None = None
    chosen = list(labels or [])
    if card_path is not None:
        path = Path(card_path)
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(
                "The model card cannot be read.",
                why=str(exc),
                fix="Choose the card.json of a fetal-viewer checkpoint.",
                path=path,
            ) from exc
        parsed = ModelCard.from_json(text, path=path)  # the one card parser and validator
        from fetal_viewer.core.model.checkpoint import load_checkpoint

        load_checkpoint(path)  # its weights must verify now, not when a reader first needs it
        card = json.loads(text)
        sha = hashlib.sha256(raw).hexdigest()
        chosen = chosen or list(parsed.classes)
    return card, sha, chosen or list(CLASSES)
