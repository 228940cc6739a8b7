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


def test_what_no_command_checks_gets_one_message_and_the_log_the_traceback(
    tmp_path: Path,
) -> None:
    """An output path that is a file, and an error no command foresaw (here a database URL
    whose driver is not installed): one message that says what to do, exit 1, no
    traceback on the terminal; the traceback goes to the log file."""
    import os

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "FETAL_VIEWER_LOG_DIR": str(tmp_path / "logs")}
    for args, said in (
        (["phantoms", "--out", str(blocker / "x"), "--patients-per-class", "1"], "Not a directory"),
        (["study", "--db", "mysql://nobody@localhost/x", "list"], "study stopped: No module"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "fetal_viewer", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 1, done.stderr
        assert said in done.stderr and "Fix:" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    assert "Traceback" in (tmp_path / "logs" / "fetal-viewer.log").read_text()
