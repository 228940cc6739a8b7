"""The command line as a user runs it: in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.factories import run_cli


def test_help_lists_subcommands_and_intended_use() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "Research use only" in result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert "fetal-viewer" in result.stdout


def test_output_piped_into_a_reader_that_stops_ends_quietly(tmp_path: Path) -> None:
    """`fetal-viewer ... | head -1`: the reader leaves before the output is written; the
    command ends as Unix tools do (status 141, SIGPIPE's), with no traceback."""
    import numpy as np

    from tests.factories import write_rgb_cine

    study = write_rgb_cine(tmp_path / "one.dcm", np.zeros((2, 32, 48, 3), np.uint8), Modality="US")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fetal_viewer", "info", str(study)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the command has started: every write meets a closed pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert err == "", err
