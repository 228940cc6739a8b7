"""The launcher: argument parsing and the offscreen smoke test the packaging script runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication

from fetal_viewer.gui.app import build_parser, main
from fetal_viewer.gui.error_sink import close_logging

from .conftest import us_frames, write_us_dicom


def test_parser_accepts_paths_demo_and_model():
    args = build_parser().parse_args(["a.dcm", "b", "--demo", "--model", "card.json"])
    assert args.paths == ["a.dcm", "b"] and args.demo and args.model == "card.json"


def test_smoke_test_opens_predicts_and_exits(
    qapp: QApplication, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("FETAL_VIEWER_SETTINGS", str(tmp_path / "settings.ini"))
    study = write_us_dicom(tmp_path / "one.dcm", us_frames(3))
    before = set(QApplication.topLevelWidgets())
    try:
        code = main([str(study), "--model", str(tiny_model), "--smoke-test"])
    finally:
        qapp.setStyleSheet("")
        qapp.setPalette(qapp.style().standardPalette())
        close_logging()
    assert code == 0
    log = (tmp_path / "logs" / "fetal-viewer.log").read_text()
    assert "smoke test: prediction shown for frame 1" in log
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not [w for w in QApplication.topLevelWidgets() if w not in before]


def test_smoke_test_fails_fast_and_exits_on_a_bad_model(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A failure must end the smoke test (exit 1), even with the error dialog open."""
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("FETAL_VIEWER_SETTINGS", str(tmp_path / "settings.ini"))
    study = write_us_dicom(tmp_path / "one.dcm", us_frames(2))
    card = tmp_path / "model" / "card.json"
    card.parent.mkdir()
    card.write_text("{not json")
    before = set(QApplication.topLevelWidgets())
    try:
        code = main([str(study), "--model", str(card), "--smoke-test"])
    finally:
        qapp.setStyleSheet("")
        qapp.setPalette(qapp.style().standardPalette())
        close_logging()
    assert code == 1
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not [w for w in QApplication.topLevelWidgets() if w not in before and w.isVisible()]


@pytest.mark.parametrize("flag", ["--read", "--coordinate"])
def test_study_flags_open_only_their_window_sized_to_the_screen(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str
):
    from PySide6.QtCore import QTimer

    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("FETAL_VIEWER_SETTINGS", str(tmp_path / "settings.ini"))
    before = set(QApplication.topLevelWidgets())
    seen: dict[str, object] = {}

    def look_and_close() -> None:
        shown = [w for w in QApplication.topLevelWidgets() if w not in before and w.isVisible()]
        seen["windows"] = sorted(type(w).__name__ for w in shown)
        screen = qapp.primaryScreen().availableGeometry()
        seen["fits"] = all(screen.contains(w.frameGeometry()) for w in shown)
        seen["size"] = [(w.width(), w.height(), screen.width(), screen.height()) for w in shown]
        for w in shown:
            w.close()

    from fetal_viewer.core.store import open_store

    open_store(tmp_path / "s.db").close()  # the reading mode opens only a database that exists
    QTimer.singleShot(1500, look_and_close)
    try:
        code = main([flag, "--db", str(tmp_path / "s.db")])
    finally:
        qapp.setStyleSheet("")
        qapp.setPalette(qapp.style().standardPalette())
        close_logging()
    assert code == 0
    expected = "ReaderWindow" if flag == "--read" else "CoordinatorWindow"
    assert seen["windows"] == [expected]
    assert seen["fits"], seen["size"]
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_close_the_viewer_as_quit_does(tmp_path: Path, sig: str):
    """Ctrl+C in the terminal that started the viewer, or a SIGTERM, closes it as its Quit
    command does: settings saved, exit status 128 + N, not a word on the terminal."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "logs" / "fetal-viewer.log"
    settings = tmp_path / "settings.ini"
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "FETAL_VIEWER_LOG_DIR": str(log.parent),
        "FETAL_VIEWER_SETTINGS": str(settings),
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "fetal_viewer"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "startup: first paint" not in (log.read_text() if log.is_file() else ""):
            assert app.poll() is None and time.monotonic() < deadline, app.communicate()
            time.sleep(0.1)
        assert "geometry=" not in (settings.read_text() if settings.is_file() else "")
        number = getattr(signal, sig)
        app.send_signal(number)
        _, err = app.communicate(timeout=60)
    finally:
        app.kill()
    assert app.returncode == 128 + number, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"{sig} received: closing" in log.read_text()
    assert "[window]\ngeometry=" in settings.read_text()  # as closing saves it


def test_the_reading_mode_refuses_a_database_that_does_not_exist(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A mistyped --db is an error the reader sees, and no database is made there."""
    from fetal_viewer.gui.error_sink import ErrorSink
    from fetal_viewer.gui.readerstudy import open_reader_mode

    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    sink = ErrorSink()
    reported: list[BaseException] = []
    sink.reported.connect(lambda exc, _context: reported.append(exc))
    missing = tmp_path / "typo" / "s.db"
    window = open_reader_mode(None, missing, error_sink=sink)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: "could not be opened" in window.start_status.text(), timeout=20_000)
    assert "There is no study database" in window.start_status.text()
    assert len(reported) == 1 and not missing.parent.exists()
    window.close()
    sink.close_all()


def test_without_a_display_the_viewer_says_so_instead_of_aborting(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env["FETAL_VIEWER_LOG_DIR"] = str(tmp_path / "logs")
    done = subprocess.run(
        [sys.executable, "-m", "fetal_viewer"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "no display to show the viewer on" in done.stderr and "Fix:" in done.stderr
