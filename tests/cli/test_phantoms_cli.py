"""``fetal-viewer phantoms`` as a user runs it."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.factories import run_cli


def test_phantoms_writes_png_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "set"
    result = run_cli(
        "phantoms",
        "--out",
        str(out),
        "--patients-per-class",
        "1",
        "--centers",
        "2",
        "--seed",
        "3",
        "--size",
        "96x80",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    manifest = Path(result.stdout.strip())
    assert manifest == out / "manifest.csv"
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["center"] for r in rows} == {"A", "B"}
    assert len({r["patient_id"] for r in rows}) == 10
    assert all((out / r["path"]).suffix == ".png" for r in rows)


def test_phantoms_dicom_jpeg(tmp_path: Path) -> None:
    out = tmp_path / "dcm"
    result = run_cli(
        "phantoms",
        "--out",
        str(out),
        "--patients-per-class",
        "1",
        "--centers",
        "1",
        "--format",
        "dicom",
        "--jpeg",
        "85",
        "--size",
        "96x80",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert list((out / "dicom").rglob("*.dcm"))


def test_phantoms_rejects_bad_arguments(tmp_path: Path) -> None:
    bad_size = run_cli("phantoms", "--out", str(tmp_path), "--size", "big")
    assert bad_size.returncode == 2 and "WxH" in bad_size.stderr
    too_many = run_cli("phantoms", "--out", str(tmp_path), "--centers", "9", "--no-progress")
    assert (
        too_many.returncode == 2 and "--centers" in too_many.stderr and "1 to 6" in too_many.stderr
    )
