"""Where log records go, for both faces (the CLI's ``main`` and the GUI launcher).

- The app's records, every warning no :func:`~fetal_viewer.core.warncatch.collect_warnings`
  block collects, and third-party libraries' errors (pydicom's decoder plug-ins log each
  failure at ERROR with a traceback; PIL, the libjpeg and openjpeg wrappers ...) go to one
  rotating file in the user log folder (:func:`log_to_file`), file paths written as tokens
  (:class:`~fetal_viewer.core.redact.RedactingFormatter`). Third-party records below ERROR
  are kept only when debugging (``-v``): pydicom's warnings quote header values, which can
  be a patient's name or birth date.
- The terminal (:func:`log_to_console`, the CLI only) shows the app's own records, one line
  each and never a traceback: what a user can act on is the typed error the command prints.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

from fetal_viewer.core.appdirs import log_dir
from fetal_viewer.core.redact import RedactingFormatter

LOG_NAME = "fetal-viewer.log"
#: ``extra=FILE_ONLY`` keeps a record off the terminal (a traceback whose error it has shown)
FILE_ONLY = {"file_only": True}
APP_LOGGER = "fetal_viewer"
FILE_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def log_to_file(level: int = logging.INFO) -> Path:
    """Send the app's records from ``level`` up, stray warnings, and other libraries' errors
    (all their records when ``level`` is DEBUG) to the log file; returns its path.
    Idempotent."""
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_NAME
    root = logging.getLogger()
    app = logging.getLogger(APP_LOGGER)
    app.setLevel(min(level, app.level or level))
    if level <= logging.DEBUG:  # other libraries' debug records too
        root.setLevel(logging.DEBUG)
    logging.captureWarnings(True)  # warnings.showwarning -> the "py.warnings" logger
    for handler in root.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            return path
    handler = RotatingFileHandler(
        path, maxBytes=2_000_000, backupCount=3, encoding="utf-8", delay=True
    )
    handler.setLevel(level)
    handler.setFormatter(RedactingFormatter(FILE_FORMAT))
    handler.addFilter(_Kept(third_party=logging.DEBUG if level <= logging.DEBUG else logging.ERROR))
    root.addHandler(handler)
    return path


class _Kept(logging.Filter):
    """The app's records and warnings as they come; other libraries' from ``third_party``."""

    def __init__(self, third_party: int) -> None:
        super().__init__()
        self.third_party = third_party

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == "py.warnings" or name == APP_LOGGER or name.startswith(APP_LOGGER + "."):
            return True
        return record.levelno >= self.third_party


def close_log_file() -> None:
    """Detach and close the file handlers :func:`log_to_file` added."""
    logging.captureWarnings(False)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, RotatingFileHandler):
            root.removeHandler(handler)
            handler.close()


class _OneLine(logging.Formatter):
    """A record's message only: no traceback, no stack (the log file keeps those)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (as logging's own last
    resort does), so a replaced stderr (tests, redirection) is honoured."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def log_to_console(level: int = logging.WARNING) -> None:
    """Show the app's own records from ``level`` up on stderr, one line each; other
    libraries' records go only to the log file. Idempotent."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, _ConsoleHandler):
            handler.setLevel(level)
            return
    handler = _ConsoleHandler()
    handler.setLevel(level)
    handler.setFormatter(_OneLine("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(logging.Filter(APP_LOGGER))
    handler.addFilter(lambda record: not getattr(record, "file_only", False))
    root.addHandler(handler)
    app = logging.getLogger(APP_LOGGER)
    app.setLevel(min(level, app.level or level))
