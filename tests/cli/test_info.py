"""`fetal-viewer info` in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from tests.core.test_io_generated import gradient, jpeg_cine, make_dicom


def info(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "info", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_info_text_hides_phi_unless_asked(tmp_path: Path) -> None:
    make_dicom(tmp_path / "a.dcm", bytes(16), rows=4, cols=4, PatientName="Secret^Name")
    (tmp_path / "bad.dcm").write_bytes(b"")
    out = info(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Secret" not in out.stdout and "PID-1" not in out.stdout
    assert "Patient P-" in out.stdout and "1 problem file(s)" in out.stdout
    assert "bad.dcm" in out.stdout and "empty" in out.stdout
    shown = info(tmp_path, "--show-phi")
    assert "Secret^Name" in shown.stdout and "PID-1" in shown.stdout


def test_info_json_and_nothing_loaded(tmp_path: Path) -> None:
    jpeg_cine(tmp_path / "cine.dcm", [gradient(16, 24, i) for i in range(3)], FrameTime=40)
    out = info(tmp_path / "cine.dcm", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (series,) = doc["patients"][0]["studies"][0]["series"]
    assert (series["rows"], series["cols"], series["n_frames"]) == (16, 24, 3)
    assert series["frame_time_ms"] == 40 and "identity" not in doc["patients"][0]
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(100))
    bad = info(tmp_path / "noise.bin", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["problems"][0]["what"] == "not a DICOM or image file"


def test_info_check_reports_each_failing_frame(tmp_path: Path) -> None:
    good = gradient(16, 16)
    import cv2

    ok, buf = cv2.imencode(".jpg", good)
    assert ok
    broken = b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(400) + b"\xff\xd9"
    make_dicom(
        tmp_path / "mixed.dcm", encapsulate([buf.tobytes(), broken, buf.tobytes()]), rows=16,
        cols=16, photometric="YBR_FULL_422", spp=3, frames=3, ts=JPEGBaseline8Bit,
        encapsulated=True,
    )  # fmt: skip
    assert info(tmp_path).returncode == 0  # headers alone are fine
    out = info(tmp_path, "--check", "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert [f["frame"] for f in doc["frame_failures"]] == [1]
    assert doc["frame_failures"][0]["path"].endswith("mixed.dcm")
    text = info(tmp_path, "--check")
    assert "frame 1" in text.stdout and "1 frame(s) failed to decode" in text.stdout
