"""Reader-study UI: the coordinator window and the reading mode, over
:mod:`fetal_viewer.core.readerstudy` (protocol, blinding, exports, analysis).

Entry points for the main window's Study menu and the ``--read`` / ``--coordinate`` options:
:func:`open_reader_mode` and :func:`open_coordinator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from fetal_viewer.gui.readerstudy.coordinator import CoordinatorWindow
    from fetal_viewer.gui.readerstudy.reader import ReaderWindow


def open_reader_mode(
    parent: QWidget | None, db: str | Path | None = None, **kwargs: Any
) -> ReaderWindow:
    """Show the reading mode for the study database ``db`` (None: the default file)."""
    from fetal_viewer.gui.readerstudy.reader import ReaderWindow

    window = ReaderWindow(db, parent=parent, **kwargs)
    window.show()
    window.raise_()
    return window


def open_coordinator(
    parent: QWidget | None, db: str | Path | None = None, **kwargs: Any
) -> CoordinatorWindow:
    """Show the coordinator window for the study database ``db`` (None: the default file)."""
    from fetal_viewer.gui.readerstudy.coordinator import CoordinatorWindow

    window = CoordinatorWindow(db, parent=parent, **kwargs)
    window.show()
    window.raise_()
    return window


__all__ = ["open_coordinator", "open_reader_mode"]
