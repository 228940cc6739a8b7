"""Demo studies: made once into the cache folder, every class present, readable DICOM."""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms import demo


def test_demo_studies_made_once_with_every_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "demo"
    monkeypatch.setenv("FETAL_VIEWER_DEMO_DIR", str(target))
    made = demo.ensure_demo_studies()
    assert made == target
    files = sorted(target.rglob("*.dcm"))
    with (target / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["label"] for r in rows} == set(CLASSES)
    assert {r["center"] for r in rows} == set(demo.DEMO_CENTERS)
    ids = {pydicom.dcmread(f, stop_before_pixels=True).PatientID for f in files}
    assert ids == {r["patient_id"] for r in rows}
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.pixel_array.shape[-1] == 3
    assert sum(f.stat().st_size for f in target.rglob("*")) < 6 * 1024 * 1024
    # a second call finds the finished set and does not touch it
    stamp = {f: f.stat().st_mtime_ns for f in files}
    assert demo.ensure_demo_studies() == target
    assert {f: f.stat().st_mtime_ns for f in files} == stamp


def test_half_written_demo_set_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "demo"
    (target / "dicom").mkdir(parents=True)
    (target / "dicom" / "junk.dcm").write_bytes(b"not dicom")
    monkeypatch.setattr(demo, "DEMO_CENTERS", ("C",))
    monkeypatch.setenv("FETAL_VIEWER_DEMO_DIR", str(target))
    demo.ensure_demo_studies()
    assert not (target / "dicom" / "junk.dcm").exists()
    assert (target / ".complete").is_file()
