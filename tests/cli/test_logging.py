"""Third-party log records go to the log file, never to the terminal: a damaged JPEG makes
pydicom's decoder plug-in log an ERROR with a traceback, and ``info --check`` must show only
the typed error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydicom.data import get_testdata_file


def _damaged(src: str, out: Path, *, truncate: bool) -> Path:
    data = bytearray(Path(src).read_bytes())
    if truncate:
        data = data[: len(data) * 2 // 3]
    else:  # flip bytes inside the compressed stream, near its end
        for i in range(len(data) - 2000, len(data) - 1500, 7):
            data[i] ^= 0x5A
    out.write_bytes(bytes(data))
    return out


def _info_check(paths: list[Path], logs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FETAL_VIEWER_LOG_DIR": str(logs)}
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "info", "--check", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_decoder_errors_go_to_the_log_file_not_the_terminal(tmp_path: Path) -> None:
    jpeg = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")  # JPEG lossless, decoded by pylibjpeg
    assert jpeg is not None
    bad = _damaged(jpeg, tmp_path / "damaged.dcm", truncate=False)
    done = _info_check([bad], tmp_path / "logs")
    assert done.returncode == 1  # --check: a frame failed
    assert "could not be decoded" in done.stdout  # the typed error, with what/why/fix
    assert "Traceback" not in done.stderr and "pydicom" not in done.stderr, done.stderr
    logged = (tmp_path / "logs" / "fetal-viewer.log").read_text()
    assert "ERROR MainThread pydicom" in logged and "Traceback" in logged  # kept for reports
    assert "damaged.dcm" not in logged  # file names as tokens


def test_damaged_real_files_print_no_traceback(tmp_path: Path) -> None:
    names = (
        "SC_rgb_jpeg_gdcm.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG2000.dcm",
        "JPEG-LL.dcm",
        "color3d_jpeg_baseline.dcm",
        "MR_small_RLE.dcm",
    )
    bad = []
    for name in names:
        src = get_testdata_file(name)
        assert src is not None, name
        for truncate in (False, True):
            bad.append(_damaged(src, tmp_path / f"{truncate:d}_{name}", truncate=truncate))
    done = _info_check(bad, tmp_path / "logs")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert "problem" in done.stdout
