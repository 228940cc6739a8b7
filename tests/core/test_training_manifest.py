"""Manifest problems are all reported, clearly, before any training starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.training.manifest import ga_band, read_manifest
from fetal_viewer.core.training.train import class_weights
from fetal_viewer.errors import DataError

HEADER = "path,frame,patient_id,center,label,ga_weeks,mask_path\n"


def _write(tmp_path: Path, rows: list[str]) -> Path:
    for name in ("a.png", "b.png", "m.png"):
        (tmp_path / name).write_bytes(b"x")
    path = tmp_path / "manifest.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


def test_good_manifest_reads(tmp_path: Path) -> None:
    m = read_manifest(
        _write(
            tmp_path,
            [
                "a.png,0,p1,c1,normal,19.5,",
                "b.png,2,p2,c2,anencephaly,,m.png",
            ],
        ),
        CLASSES,
    )
    assert len(m) == 2
    assert m.records[0].path == tmp_path / "a.png"
    assert m.records[1].frame == 2 and m.records[1].ga_weeks is None
    assert m.records[1].mask_path == tmp_path / "m.png"
    assert m.centers == ["c1", "c2"]
    assert m.describe()["per_class"]["anencephaly"] == {"images": 1, "patients": 1}


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            "a.png,0,p1,c1,normal,20,",
            "a.png,1,p1,c2,normal,20,",  # same patient, second center
            "gone.png,0,p2,c1,anencephaly,20,",  # missing file
            "b.png,0,p3,c1,hydrocephalus,20,",  # unknown label
            "b.png,x,p4,c1,normal,abc,nomask.png",  # bad frame, bad GA, missing mask
            "b.png,0,p5,c1,normal,20,",
            "b.png,1,p5,c1,rachischisis,20,",  # two labels for one patient
        ],
    )
    with pytest.raises(DataError) as info:
        read_manifest(path, CLASSES)
    msg = info.value.message
    assert "nothing was trained" in msg
    assert "patient in several centers (1): p1: c1, c2" in msg
    assert "missing file (1): row 3: gone.png" in msg
    assert "unknown label (1): row 4: 'hydrocephalus'" in msg
    assert "bad frame index (1)" in msg and "bad ga_weeks (1)" in msg
    assert "missing mask file (1): row 5: nomask.png" in msg
    assert "patient with several labels (1): p5" in msg


def test_missing_columns_and_files(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("path,label\na.png,normal\n")
    with pytest.raises(DataError, match="patient_id, center"):
        read_manifest(bad, CLASSES)
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "nope.csv", CLASSES)


def test_ga_bands() -> None:
    assert [ga_band(g) for g in (12.0, 19.9, 20.0, 28.0, 28.1, None)] == [
        "<20",
        "<20",
        "20-28",
        "20-28",
        ">28",
        "unknown",
    ]


def test_class_weights_inverse_frequency() -> None:
    targets = [0] * 50 + [1] * 25 + [2] * 10 + [3] * 10 + [4] * 5
    w = class_weights(targets, 5)
    np.testing.assert_allclose(w, [100 / (5 * 50), 100 / (5 * 25), 2.0, 2.0, 4.0])
    # balanced: every class gets the same total weight, and the mean weight per image is 1
    counts = np.bincount(targets)
    np.testing.assert_allclose(w * counts, 20.0)
    assert float((w[np.asarray(targets)]).mean()) == pytest.approx(1.0)
    with pytest.raises(DataError, match="no training images"):
        class_weights([0, 0, 1], 3)
