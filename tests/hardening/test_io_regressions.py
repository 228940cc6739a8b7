"""Regressions found by the fuzzer in ``core.io``, one test per bug."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.io import open_path, read_frame
from fetal_viewer.errors import StudyLoadError
from tests.hardening.fuzz import _write_native_cine


def _cine(path: Path) -> bytes:
    rng = np.random.default_rng(0)
    _write_native_cine(path, rng.integers(0, 255, (2, 16, 24, 3), dtype=np.uint8))
    return path.read_bytes()


@pytest.mark.parametrize("bad_vr", [b"U[", b"UH"])
def test_unknown_vr_in_header_is_a_study_load_error(tmp_path: Path, bad_vr: bytes) -> None:
    """pydicom parses values lazily, so an element with an unknown VR passed dcmread and
    raised NotImplementedError on first access: ``read_frame`` let it escape, and
    ``open_path`` only caught it in its last-resort net ("could not be examined")."""
    path = tmp_path / "cine.dcm"
    data = _cine(path)
    rows = b"\x28\x00\x10\x00US"
    assert data.count(rows) == 1
    path.write_bytes(data.replace(rows, rows[:4] + bad_vr))

    result = open_path(path)
    assert not result.patients
    [problem] = result.problems
    assert problem.what == "the DICOM header could not be read"
    assert "NotImplementedError" in problem.why and problem.fix
    with pytest.raises(StudyLoadError, match="header could not be read"):
        read_frame(path)
