"""Studies from PACS: the node settings dialog (:mod:`.nodes`), the query/retrieve panel
with the listener (:mod:`.panel`), and :func:`attach_pacs`, which puts the panel in a dock
of the main window with a menu.

Every network call runs in a superqt worker (:func:`superqt.utils.create_worker`), never on
the GUI thread; callbacks from the workers and from the listener's association threads
reach the widgets through Qt signals. The panel emits
:attr:`~fetal_viewer.gui.pacs.panel.PacsPanel.paths_arrived` with the image files of each
instance as it arrives (batched every few hundred milliseconds), so the studies panel
fills while a retrieve runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QDockWidget

from fetal_viewer.gui.pacs.panel import PacsPanel

if TYPE_CHECKING:
    from fetal_viewer.gui.main_window import MainWindow

log = logging.getLogger("fetal_viewer.gui.pacs")


class _CloseWatcher(QObject):
    def __init__(self, panel: PacsPanel) -> None:
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close:
            self.panel.shutdown()
        return False


def attach_pacs(window: MainWindow) -> PacsPanel:
    """Put the PACS panel in a (hidden) dock of ``window`` with a PACS menu; arrivals open
    in the studies panel, errors go to the window's error sink, the identities toggle is
    followed, and the panel shuts down when the window closes."""
    panel = PacsPanel(window)
    dock = QDockWidget("PACS", window)
    dock.setObjectName("pacsDock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.hide()
    menu = window.menuBar().addMenu("&PACS")
    menu.setObjectName("pacsMenu")

    def show_dock() -> None:
        dock.show()
        dock.raise_()

    def toggle_listener() -> None:
        show_dock()
        panel.set_listening(not panel.listen_button.isChecked())

    show = menu.addAction("Query / retrieve…")
    show.setObjectName("action_pacs")
    show.triggered.connect(show_dock)
    menu.addAction("Nodes…").triggered.connect(panel.edit_nodes)
    menu.addAction("Start / stop listener").triggered.connect(toggle_listener)
    panel.paths_arrived.connect(window.open_paths)
    panel.failed.connect(window.sink.report)
    identities = window.commands.get("show_identities")
    if identities is not None:
        identities.toggled.connect(panel.set_show_identities)
    window.installEventFilter(_CloseWatcher(panel))
    window.pacs_panel = panel  # type: ignore[attr-defined]
    return panel
