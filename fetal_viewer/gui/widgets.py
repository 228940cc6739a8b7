"""Small widget compositions the windows and dialogs share."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QScrollArea,
    QToolButton,
    QWidget,
)

_BUTTON = QDialogButtonBox.StandardButton


def path_row(parent: QWidget, edit: QLineEdit, pick: Callable[[], object]) -> QHBoxLayout:
    """A path field with a "…" button beside it that calls ``pick``."""
    row = QHBoxLayout()
    b = QToolButton(parent)
    b.setText("…")
    b.clicked.connect(pick)
    row.addWidget(edit, 1)
    row.addWidget(b)
    return row


def ok_cancel(
    dialog: QDialog, accept: Callable[[], object] | None = None, ok: _BUTTON = _BUTTON.Ok
) -> QDialogButtonBox:
    """The dialog's ``ok`` and Cancel buttons: ``ok`` calls ``accept`` (by default the
    dialog's own), Cancel rejects the dialog."""
    box = QDialogButtonBox(ok | _BUTTON.Cancel, dialog)
    box.accepted.connect(accept or dialog.accept)
    box.rejected.connect(dialog.reject)
    return box


def vertical_scroll(parent: QWidget, content: QWidget) -> QScrollArea:
    """``content`` in a frameless area that scrolls up and down only: a column that scrolls
    on short screens instead of squeezing its controls together."""
    scroll = QScrollArea(parent)
    scroll.setWidget(content)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return scroll
