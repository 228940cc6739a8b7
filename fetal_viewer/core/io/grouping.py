"""How plain images (PNG, JPEG ... : no patient in their header) are grouped into patients.

The loader puts every folder of images into one patient and one study. That is right for
the frames of one examination and wrong for a folder of images of many pregnancies (HC18's
layout), which would then get one patient-level verdict. :func:`regroup` regroups the
images of a :class:`LoadResult` as the user says (:class:`ImageGrouping`), without reading
any file again; DICOM patients are left as they are. :func:`infer_grouping` is the default
the viewer offers: one patient per subfolder when the images sit in several folders, else
one patient per image (a wrong split is safer than a wrong merge).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from enum import Enum
from pathlib import Path

from fetal_viewer.core.io.study import (
    LoadResult,
    Patient,
    PatientIdentity,
    Series,
    Study,
    make_pseudonym,
)
from fetal_viewer.errors import DataError, StudyLoadError

#: the series uid prefix the image reader gives plain images
IMAGE_UID_PREFIX = "image:"


class ImageGrouping(Enum):
    ONE_STUDY = "one study"
    PER_IMAGE = "one patient per image"
    PER_FOLDER = "one patient per folder"
    MAPPING = "a CSV mapping"


def is_image(series: Series) -> bool:
    return series.uid.startswith(IMAGE_UID_PREFIX)


def image_series(result: LoadResult) -> list[Series]:
    """The plain-image series of a load result, in their order."""
    return [s for s in result.series if is_image(s)]


def infer_grouping(result: LoadResult) -> ImageGrouping:
    folders = {s.source.resolve().parent for s in image_series(result)}
    return ImageGrouping.PER_FOLDER if len(folders) > 1 else ImageGrouping.PER_IMAGE


def read_mapping(csv_path: str | Path) -> dict[Path, str]:
    """``path,patient`` rows (paths relative to the CSV's folder) -> {image: patient}."""
    path = Path(csv_path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {"path", "patient"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(
                    "The grouping CSV lacks required columns.",
                    why=f"Missing {sorted(missing)}; found {reader.fieldnames}.",
                    fix="Give a CSV with the columns path,patient (one row per image).",
                    path=path,
                )
            rows = list(reader)
    except OSError as exc:
        raise DataError("Cannot read the grouping CSV.", why=str(exc), path=path) from exc
    out = {}
    for row in rows:
        image = Path(row["path"].strip())
        full = image if image.is_absolute() else path.parent / image
        out[full.resolve()] = row["patient"].strip()
    return out


def regroup(
    result: LoadResult,
    grouping: ImageGrouping,
    mapping: dict[Path, str] | None = None,
) -> LoadResult:
    """``result`` with its plain images grouped by ``grouping`` (``mapping`` from
    :func:`read_mapping` for :attr:`ImageGrouping.MAPPING`; images it does not name become
    patients of their own and are listed as problems)."""
    kept = [
        p for p in result.patients if not any(is_image(s) for st in p.studies for s in st.series)
    ]
    images = image_series(result)
    problems = list(result.problems)
    if grouping is ImageGrouping.MAPPING and mapping is None:
        raise DataError("Grouping by a CSV mapping needs the mapping.", fix="Choose the CSV.")
    groups: dict[str, list[Series]] = defaultdict(list)
    names: dict[str, str] = {}
    for s in images:
        path = s.source.resolve()
        how = grouping
        if grouping is ImageGrouping.MAPPING:
            assert mapping is not None
            who = mapping.get(path)
            if who is not None:
                key, names[f"map:{who}"] = f"map:{who}", who
                groups[key].append(s)
                continue
            problems.append(
                StudyLoadError(
                    "the image is not in the grouping CSV; it is shown as a patient of its own",
                    fix="Add a row for it to the CSV (path,patient).",
                    path=s.source,
                )
            )
            how = ImageGrouping.PER_IMAGE
        if how is ImageGrouping.ONE_STUDY:
            key, name = "images:all", _common_folder(images).name or "images"
        elif how is ImageGrouping.PER_FOLDER:
            key, name = f"folder:{path.parent}", path.parent.name
        else:
            key, name = f"image:{path}", path.stem
        groups[key].append(s)
        names[key] = name
    patients = [
        Patient(
            pseudonym=make_pseudonym(key),
            identity=PatientIdentity(patient_id=names[key], patient_name="", birth_date=None),
            studies=(
                Study(
                    uid=key,
                    description=f"images ({grouping.value})",
                    date=None,
                    series=tuple(sorted(series, key=lambda s: str(s.source))),
                ),
            ),
        )
        for key, series in groups.items()
    ]
    out = sorted([*kept, *patients], key=lambda p: p.pseudonym)
    return LoadResult(patients=out, problems=problems)


def _common_folder(series: list[Series]) -> Path:
    folders = [s.source.resolve().parent for s in series]
    if not folders:
        return Path()
    common = folders[0]
    while any(common not in (f, *f.parents) for f in folders):
        common = common.parent
    return common
