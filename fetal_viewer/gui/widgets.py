"""Small widget compositions the windows and dialogs share."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QToolButton, QWidget


def path_row(parent: QWidget, edit: QLineEdit, pick: Callable[[], object]) -> QHBoxLayout:
    """A path field with a "…" button beside it that calls ``pick``."""
    row = QHBoxLayout()
    b = QToolButton(parent)
    b.setText("…")
    b.clicked.connect(pick)
    row.addWidget(edit, 1)
    row.addWidget(b)
    return row
