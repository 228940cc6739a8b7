"""One place where every error ends: a log file in the user log folder and a dialog.

Workers never show dialogs themselves; they emit their exception and the window passes it
to :class:`ErrorSink`. :func:`install_excepthooks` routes anything that slipped through
(``sys.excepthook`` and ``threading.excepthook``) to the same sink, like napari's
``utils/notifications.py``.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QWidget

from fetal_viewer.core.appdirs import log_dir
from fetal_viewer.core.logsetup import LOG_NAME as LOG_NAME  # the tests and About name it
from fetal_viewer.core.logsetup import close_log_file, log_to_file
from fetal_viewer.errors import CancelledError, FetalViewerError

log = logging.getLogger("fetal_viewer.gui")


def setup_logging(level: int = logging.INFO) -> Path:
    """Log to the rotating file in the user log folder (``core.logsetup.log_to_file``: the
    app's records, stray warnings, other libraries' errors); return its path."""
    return log_to_file(level)


def close_logging() -> None:
    """Detach and close the log file's handler."""
    close_log_file()


def describe(exc: BaseException) -> tuple[str, str, str]:
    """(what, why, fix) for any exception; typed errors carry their own."""
    if isinstance(exc, FetalViewerError):
        what = exc.what if exc.path is None else f"{exc.what}\n{exc.path}"
        return what, exc.why, exc.fix
    return (
        f"Unexpected error: {type(exc).__name__}: {exc}",
        "This is a bug in fetal-viewer, not a problem with your data.",
        f"The details are in the log file ({log_dir() / LOG_NAME}). Please report it with "
        "that file; the viewer stays usable.",
    )


class ErrorSink(QObject):
    """Logs errors and shows them in a non-blocking dialog (one at a time, others queued).

    ``report`` may be called from any thread: it goes through a queued signal, so the dialog
    is always made on the GUI thread.
    """

    reported = Signal(object, str)  # exception, context
    _incoming = Signal(object, str)

    def __init__(self, parent_widget: QWidget | None = None) -> None:
        super().__init__()
        self.log_path = setup_logging()
        self._parent_widget = parent_widget
        self._queue: list[tuple[BaseException, str]] = []
        self.dialog: QMessageBox | None = None
        self.history: list[tuple[BaseException, str]] = []
        self._incoming.connect(self._on_incoming, Qt.ConnectionType.QueuedConnection)

    def set_parent_widget(self, widget: QWidget | None) -> None:
        self._parent_widget = widget

    def report(self, exc: BaseException, context: str = "") -> None:
        if isinstance(exc, CancelledError):
            log.info("cancelled: %s", context)
            return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        level = logging.WARNING if isinstance(exc, FetalViewerError) else logging.ERROR
        log.log(level, "%s%s", f"{context}: " if context else "", tb.rstrip())
        self._incoming.emit(exc, context)

    @Slot(object, str)
    def _on_incoming(self, exc: BaseException, context: str) -> None:
        self.history.append((exc, context))
        self.reported.emit(exc, context)
        self._queue.append((exc, context))
        if self.dialog is None:
            self._show_next()

    def _show_next(self) -> None:
        if not self._queue:
            self.dialog = None
            return
        exc, context = self._queue.pop(0)
        what, why, fix = describe(exc)
        box = QMessageBox(self._parent_widget)
        box.setObjectName("errorDialog")
        box.setIcon(
            QMessageBox.Icon.Warning
            if isinstance(exc, FetalViewerError)
            else QMessageBox.Icon.Critical
        )
        box.setWindowTitle(context or "fetal-viewer")
        box.setText(what)
        info = []
        if why:
            info.append(f"Why: {why}")
        if fix:
            info.append(f"What to do: {fix}")
        box.setInformativeText("\n\n".join(info))
        if not isinstance(exc, FetalViewerError):  # a bug: its traceback helps the report
            box.setDetailedText(
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._on_dialog_closed)
        self.dialog = box
        box.open()  # window-modal, never blocks the event loop

    @Slot()
    def _on_dialog_closed(self) -> None:
        self.dialog = None
        self._show_next()

    def close_all(self) -> None:
        self._queue.clear()
        if self.dialog is not None:
            dialog, self.dialog = self.dialog, None
            dialog.finished.disconnect(self._on_dialog_closed)
            dialog.close()


_SINK: ErrorSink | None = None
_PREVIOUS: tuple[object, object] | None = None


def install_excepthooks(sink: ErrorSink) -> None:
    """Route uncaught exceptions (main thread and other threads) to ``sink``."""
    global _SINK, _PREVIOUS
    if _PREVIOUS is None:
        _PREVIOUS = (sys.excepthook, threading.excepthook)
    _SINK = sink
    sys.excepthook = _sys_hook
    threading.excepthook = _thread_hook


def uninstall_excepthooks() -> None:
    global _SINK, _PREVIOUS
    if _PREVIOUS is not None:
        sys.excepthook, threading.excepthook = _PREVIOUS  # type: ignore[assignment]
    _SINK = None
    _PREVIOUS = None


def _sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    if exc.__traceback__ is None:
        exc = exc.with_traceback(tb)
    if _SINK is None:
        sys.__excepthook__(exc_type, exc, tb)
        return
    _SINK.report(exc, "Uncaught error")


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    if _SINK is None:
        threading.__excepthook__(args)
        return
    name = args.thread.name if args.thread is not None else "?"
    _SINK.report(args.exc_value, f"Uncaught error in thread {name}")
