"""core.logsetup: the log file takes the app's records, stray warnings and other libraries'
errors; the terminal shows the app's records, one line each."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from fetal_viewer.core.logsetup import close_log_file, log_to_console, log_to_file


def _raise_and_log(logger: logging.Logger, text: str) -> None:
    try:
        raise RuntimeError(text)
    except RuntimeError:
        logger.exception("decoding failed: %s", text)


@pytest.mark.filterwarnings("always::UserWarning")  # shown (to the log), not raised
def test_file_takes_third_party_errors_not_their_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path))
    app = logging.getLogger("fetal_viewer")
    app_level = app.level
    path = log_to_file()
    try:
        _raise_and_log(logging.getLogger("pydicom.pixels.decoders.base"), "libjpeg said no")
        logging.getLogger("pydicom").warning("Invalid value for VR PN: 'Doe^Jane'")
        logging.getLogger("fetal_viewer.core.io").info("opened %s", "/data/DOE_JANE/1.dcm")
        warnings.warn("a stray warning", UserWarning, stacklevel=1)
    finally:
        close_log_file()
        app.setLevel(app_level)
    text = path.read_text()
    assert "libjpeg said no" in text and "Traceback" in text
    assert "Doe^Jane" not in text  # pydicom's warnings quote header values
    assert "opened <file " in text and "DOE_JANE" not in text
    assert "UserWarning: a stray warning" in text
    assert not any(type(h).__name__ == "RotatingFileHandler" for h in logging.getLogger().handlers)


def test_console_shows_the_app_s_records_without_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, app = logging.getLogger(), logging.getLogger("fetal_viewer")
    before, app_level = list(root.handlers), app.level
    log_to_console(logging.WARNING)
    try:
        _raise_and_log(logging.getLogger("pydicom.pixels.decoders.base"), "libjpeg said no")
        _raise_and_log(logging.getLogger("fetal_viewer.core.io.dicom"), "ours")
        logging.getLogger("fetal_viewer.cli").info("not shown below WARNING")
    finally:
        for handler in root.handlers:
            if handler not in before:
                root.removeHandler(handler)
        app.setLevel(app_level)
    err = capsys.readouterr().err
    assert err.splitlines() == ["ERROR fetal_viewer.core.io.dicom: decoding failed: ours"]
