"""Small widget compositions the windows and dialogs share."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
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


#: the keys a list moves its selection with, which the viewer's window also binds (frames,
#: series)
_LIST_KEYS = frozenset(
    {
        Qt.Key.Key_Up,
        Qt.Key.Key_Down,
        Qt.Key.Key_Left,
        Qt.Key.Key_Right,
        Qt.Key.Key_PageUp,
        Qt.Key.Key_PageDown,
        Qt.Key.Key_Home,
        Qt.Key.Key_End,
    }
)


class _ListKeys(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and Qt.Key(event.key()) in _LIST_KEYS
            and not event.modifiers()
        ):
            event.accept()  # the list's own key, not the window's shortcut
            return True
        return False


def keep_list_keys(view: QWidget) -> None:
    """Let a list or tree inside the viewer's window (PACS results) move its selection with
    the arrow and page keys while it has the focus: the window binds them to frames and
    series, and a window shortcut wins over a list that does not claim its keys."""
    keeper = _ListKeys(view)
    view.installEventFilter(keeper)
