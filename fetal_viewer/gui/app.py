"""Entry point of the desktop viewer: ``fetal-viewer [PATH ...] [--demo] [--model CARD]``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fetal_viewer import INTENDED_USE, __version__
from fetal_viewer.resources import DEMO_MODEL_CARD, RESOURCES

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QWidget

log = logging.getLogger("fetal_viewer.gui")

THEME = RESOURCES / "theme" / "dark.qss"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetal-viewer",
        description=f"Prenatal ultrasound viewer. {INTENDED_USE}",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or DICOMDIRs")
    parser.add_argument(
        "--demo", action="store_true", help="open the bundled demo studies with the demo model"
    )
    parser.add_argument("--model", metavar="CARD", help="model card (card.json) to load")
    parser.add_argument("--db", metavar="DB", help="reader-study database file or URL")
    parser.add_argument("--read", action="store_true", help="open the reader-study reading mode")
    parser.add_argument(
        "--coordinate", action="store_true", help="open the reader-study coordinator"
    )
    parser.add_argument("--light", action="store_true", help="light theme instead of dark")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="open the studies, run one prediction, then exit (0 = success)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def apply_theme(app: object, dark: bool = True) -> None:
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    app.setStyle("Fusion")
    if not dark:
        return
    palette = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#202225",
        QPalette.ColorRole.WindowText: "#e3e3e3",
        QPalette.ColorRole.Base: "#17181a",
        QPalette.ColorRole.AlternateBase: "#26282c",
        QPalette.ColorRole.Text: "#e3e3e3",
        QPalette.ColorRole.Button: "#2b2d31",
        QPalette.ColorRole.ButtonText: "#e3e3e3",
        QPalette.ColorRole.Highlight: "#3d7bd9",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#2b2d31",
        QPalette.ColorRole.ToolTipText: "#e3e3e3",
        QPalette.ColorRole.PlaceholderText: "#8a8d93",
    }
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    app.setPalette(palette)
    if THEME.is_file():
        app.setStyleSheet(THEME.read_text(encoding="utf-8"))


def _model_card(args: argparse.Namespace, settings: QSettings) -> str | None:
    """The model to load: --model, else the demo model with --demo, else the last one used."""
    if args.model:
        return str(args.model)
    if args.demo and Path(DEMO_MODEL_CARD).is_file():
        return str(DEMO_MODEL_CARD)
    remembered = settings.value("model/card")
    if remembered and Path(str(remembered)).is_file():
        return str(remembered)
    return None


def size_to_screen(
    window: QWidget, fraction: float, at_most: tuple[int, int] | None = None
) -> None:
    """Size ``window`` to ``fraction`` of its screen's available area (taskbars and docks
    left out), no larger than ``at_most``, and centre it there."""
    screen = window.screen()
    if screen is None:
        return
    area = screen.availableGeometry()
    w, h = int(area.width() * fraction), int(area.height() * fraction)
    if at_most is not None:
        w, h = min(w, at_most[0]), min(h, at_most[1])
    window.resize(w, h)
    window.move(area.center() - window.rect().center())


class StartupTrace:
    """Logs, once each, how long after ``main`` started the window was first painted and
    the model, the study, the first frame and the first probabilities arrived
    (``startup: EVENT after S s``; benchmarks/bench_ui.py --cold-start reads them)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seen: dict[str, float] = {}

    def mark(self, event: str) -> None:
        if event not in self.seen:
            self.seen[event] = time.perf_counter() - self.t0
            log.info("startup: %s after %.3f s", event, self.seen[event])


#: the signals that close the viewer as its Quit command does: Ctrl+C in the terminal that
#: started it, and a logout's or a service manager's request to stop
QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalQuit:
    """Close every window and leave the event loop when one of :data:`QUIT_SIGNALS` arrives,
    as the Quit command does (settings saved, workers stopped, the store closed); a second
    one while closing ends the process at once.

    Python runs a signal handler only between bytecodes, and Qt's event loop waits in C: the
    signal's number is written to a socket (``signal.set_wakeup_fd``) whose notifier wakes
    the loop. ``received`` is the signal that closed the app, if any; :meth:`restore` puts
    back the handlers there were before."""

    def __init__(self, app: QApplication) -> None:
        from PySide6.QtCore import QSocketNotifier

        self.app = app
        self.received: int | None = None
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous: dict[int, Callable[..., object] | int | None] = {}
        for sig in QUIT_SIGNALS:
            # a Python handler, however empty, is what makes the wakeup byte get written
            self._previous[sig] = signal.signal(sig, lambda *_: None)
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read)
        self._notifier.activated.connect(self._woken)

    def _woken(self, *_args: object) -> None:
        try:
            numbers = self._reader.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        quit_on = [n for n in numbers if n in QUIT_SIGNALS]
        if not quit_on or self.received is not None:
            return
        self.received = quit_on[0]
        log.info("%s received: closing", signal.Signals(self.received).name)
        for sig in QUIT_SIGNALS:  # a second one does not wait for the close
            signal.signal(sig, signal.SIG_DFL)
        self.app.closeAllWindows()
        self.app.quit()

    def exit_code(self, code: int) -> int:
        """``code``, or the shell's 128 + N when signal N closed the app."""
        return code if self.received is None else 128 + self.received

    def restore(self) -> None:
        self._notifier.setEnabled(False)
        self._notifier.deleteLater()
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._reader.close()
        self._writer.close()


def has_display() -> bool:
    """Whether Qt has somewhere to show windows: on Linux an X or Wayland display, or a
    platform named in ``QT_QPA_PLATFORM`` (offscreen for tests); elsewhere always. Without
    one Qt aborts the process with its own message."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def main(argv: list[str] | None = None) -> int:
    trace = StartupTrace()
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not has_display():
        print(
            "error: there is no display to show the viewer on (DISPLAY and WAYLAND_DISPLAY "
            "are not set).\nFix: start it in a desktop session (over ssh: ssh -X); the "
            "command-line tools need none (fetal-viewer --help).",
            file=sys.stderr,
        )
        return 1

    from PySide6.QtCore import QCoreApplication, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from fetal_viewer.gui.error_sink import (
        ErrorSink,
        install_excepthooks,
        setup_logging,
        uninstall_excepthooks,
    )

    log_path = setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    trace.mark("Qt imported")
    log.info("fetal-viewer %s starting; log file %s", __version__, log_path)
    QCoreApplication.setOrganizationName("fetal-viewer")
    QCoreApplication.setApplicationName("fetal-viewer")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    apply_theme(app, dark=not args.light)
    sink = ErrorSink()
    install_excepthooks(sink)
    quitter = SignalQuit(app)

    def unhook() -> None:
        uninstall_excepthooks()
        quitter.restore()

    from fetal_viewer.gui.settings import app_settings

    settings = app_settings()
    if args.read or args.coordinate:
        # the reader-study windows stand alone: no viewer behind them (blinding, focus)
        from fetal_viewer.gui import readerstudy

        opener = readerstudy.open_reader_mode if args.read else readerstudy.open_coordinator
        study_window = opener(
            None,
            args.db,
            error_sink=sink,
            settings=settings,
            model_card=_model_card(args, settings),
        )
        study_window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        try:
            return quitter.exit_code(int(app.exec()))
        finally:
            unhook()

    from fetal_viewer.gui.main_window import MainWindow

    model = _model_card(args, settings)
    window = MainWindow(settings=settings, error_sink=sink)
    window.model.model_loaded.connect(lambda _i: trace.mark("model loaded"))
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    trace.mark("window built")
    window.painted.connect(lambda: trace.mark("first paint"))
    window.study_opened.connect(lambda _p: trace.mark("study opened"))
    window.frame_shown.connect(lambda _i: trace.mark("first frame"))
    window.ai_shown.connect(lambda _i: trace.mark("first probabilities"))
    window.show()

    if args.smoke_test and not model:
        print(
            "smoke test: no model to run (give --model CARD, or --demo with the demo model "
            f"at {DEMO_MODEL_CARD})",
            file=sys.stderr,
        )
        window.close()
        unhook()
        return 2
    paths = list(args.paths)

    def start_work() -> None:
        """Loading the model and scanning files start once the window is on screen: their
        imports (torch, superqt's workers) and threads stay off the way to the first
        paint."""
        window.painted.disconnect(start_work)
        if model:
            window.load_model(model)
        if args.demo:
            from fetal_viewer.gui.workers import demo_studies_job

            window.run_job(
                demo_studies_job,
                context="Preparing the demo studies",
                on_returned=lambda folder: window.open_paths([folder]),
            )
        if paths:
            window.open_paths(paths, show=True)

    window.painted.connect(start_work)
    if args.smoke_test:
        state = {"ok": False}

        def finish() -> None:
            # an open error dialog would keep the application running: close it too
            if sink.dialog is not None:
                sink.dialog.close()
            window.close()

        def done(index: int) -> None:
            state["ok"] = True
            log.info("smoke test: prediction shown for frame %d", index + 1)
            QTimer.singleShot(0, finish)

        window.ai_shown.connect(done)
        QTimer.singleShot(240_000, finish)

        def failed(exc: BaseException, context: str) -> None:
            log.error("smoke test failed: %s: %s", context, exc)
            print(f"smoke test: {context}: {exc}", file=sys.stderr)
            QTimer.singleShot(0, finish)

        sink.reported.connect(failed)
        try:
            app.exec()
        finally:
            unhook()
        print("smoke test:", "ok" if state["ok"] else "FAILED")
        return quitter.exit_code(0 if state["ok"] else 1)
    try:
        return quitter.exit_code(int(app.exec()))
    finally:
        unhook()
