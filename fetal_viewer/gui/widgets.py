"""Small widget compositions the windows and dialogs share."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLineEdit,
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
