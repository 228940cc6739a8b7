"""Plain images (no DICOM patient) grouped as the user says: one study, one patient per
image, one patient per subfolder, or a CSV mapping; DICOM patients are never touched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.io import open_path
from fetal_viewer.core.io.grouping import ImageGrouping, infer_grouping, read_mapping, regroup
from fetal_viewer.errors import DataError


def png(path: Path, seed: int) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def hc18(tmp_path: Path) -> Path:
    """Four images of four pregnancies in one folder (HC18's layout)."""
    for i in range(4):
        png(tmp_path / "hc18" / f"{i:03d}_HC.png", i)
    return tmp_path / "hc18"


def test_a_flat_folder_is_one_patient_per_image_by_default_and_can_be_one_study(hc18) -> None:
    found = open_path(hc18)
    assert len(found.patients) == 1  # the loader alone: one folder, one "patient"
    assert infer_grouping(found) is ImageGrouping.PER_IMAGE
    split = regroup(found, ImageGrouping.PER_IMAGE)
    assert len(split.patients) == 4
    assert sorted(p.identity.patient_id for p in split.patients) == [
        f"{i:03d}_HC" for i in range(4)
    ]
    assert all("one patient per image" in p.studies[0].description for p in split.patients)
    one = regroup(found, ImageGrouping.ONE_STUDY)
    assert len(one.patients) == 1 and len(one.patients[0].studies[0].series) == 4
    assert "one study" in one.patients[0].studies[0].description


def test_subfolders_are_patients_and_dicom_is_left_alone(tmp_path: Path) -> None:
    from tests.core.test_io_generated import make_dicom

    for p in ("a", "b"):
        for i in range(2):
            png(tmp_path / "set" / p / f"{i}.png", i)
    make_dicom(tmp_path / "set" / "scan.dcm", bytes(16 * 16), rows=16, cols=16)
    found = open_path(tmp_path / "set")
    assert infer_grouping(found) is ImageGrouping.PER_FOLDER
    grouped = regroup(found, ImageGrouping.PER_FOLDER)
    image_patients = [p for p in grouped.patients if p.identity.patient_id in ("a", "b")]
    assert len(image_patients) == 2 and len(grouped.patients) == 3
    dicom = [p for p in found.patients if p.identity.patient_id not in ("a", "b")]
    assert [p for p in grouped.patients if p.identity.patient_id not in ("a", "b")] == dicom
    assert regroup(found, ImageGrouping.PER_IMAGE).patients.count(dicom[0]) == 1


def test_csv_mapping_groups_images_and_lists_the_unmapped(hc18) -> None:
    mapping = hc18 / "patients.csv"
    mapping.write_text("path,patient\n000_HC.png,mother-1\n001_HC.png,mother-1\n002_HC.png,m2\n")
    found = open_path(hc18)
    grouped = regroup(found, ImageGrouping.MAPPING, read_mapping(mapping))
    by_id = {p.identity.patient_id: p for p in grouped.patients}
    assert len(by_id["mother-1"].studies[0].series) == 2 and "m2" in by_id
    assert len(grouped.patients) == 3  # 003_HC.png is not mapped: a patient of its own
    assert any("003_HC.png" in str(p.path) for p in grouped.problems)
    (hc18 / "bad.csv").write_text("file,who\n")
    with pytest.raises(DataError, match="path"):
        read_mapping(hc18 / "bad.csv")
