"""Reader-study UI: the coordinator window and the reading mode, over
:mod:`fetal_viewer.core.readerstudy` (protocol, blinding, exports, analysis).

Entry points for the main window's Study menu and the ``--read`` / ``--coordinate`` options:
:func:`open_reader_mode` and :func:`open_coordinator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QWidget

    from fetal_viewer.gui.error_sink import ErrorSink
    from fetal_viewer.gui.readerstudy.coordinator import CoordinatorWindow
    from fetal_viewer.gui.readerstudy.reader import ReaderWindow


def open_reader_mode(
    parent: QWidget | None,
    db: str | Path | None = None,
    *,
    error_sink: ErrorSink | None = None,
    settings: QSettings | None = None,
    model_card: str | Path | None = None,
) -> ReaderWindow:
    """Show the reading mode for the study database ``db`` (None: the default file)."""
    from fetal_viewer.gui.readerstudy.reader import ReaderWindow

    window = ReaderWindow(
        db, parent=parent, error_sink=error_sink, settings=settings, model_card=model_card
    )
    window.showMaximized()  # the image wants all the screen a reader has
    window.raise_()
    return window


def open_coordinator(
    parent: QWidget | None,
    db: str | Path | None = None,
    *,
    error_sink: ErrorSink | None = None,
    settings: QSettings | None = None,
    model_card: str | Path | None = None,
) -> CoordinatorWindow:
    """Show the coordinator window for the study database ``db`` (None: the default file)."""
    from fetal_viewer.gui.readerstudy.coordinator import CoordinatorWindow

    window = CoordinatorWindow(
        db, parent=parent, error_sink=error_sink, settings=settings, model_card=model_card
    )
    window.show()
    window.raise_()
    return window


__all__ = ["open_coordinator", "open_reader_mode"]
