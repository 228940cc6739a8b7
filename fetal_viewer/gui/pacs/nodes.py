"""The DICOM nodes dialog: add, edit, remove and verify nodes; our AE title, port and
accepted callers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer.core.net.nodes import LocalAE, Node, load_config, save_config
from fetal_viewer.errors import FetalViewerError
from fetal_viewer.gui.pacs.jobs import Jobs, error_text
from fetal_viewer.gui.widgets import ok_cancel


class NodesDialog(QDialog):
    """Add, edit, remove and verify nodes; set our AE title, port and accepted callers.
    Nothing is saved until OK."""

    def __init__(self, config_path: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pacsNodesDialog")
        self.setWindowTitle("DICOM nodes")
        self.config_path = config_path
        self.config = load_config(config_path)
        self._jobs = Jobs(self)

        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["Name", "Kind", "Address"])
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.currentCellChanged.connect(lambda *_: self._load_selected())

        self.name = QLineEdit(self)
        self.ae = QLineEdit(self)
        self.ae.setMaxLength(16)
        self.host = QLineEdit(self)
        self.port = QSpinBox(self)
        self.port.setRange(0, 65535)
        self.url = QLineEdit(self)
        self.url.setPlaceholderText("DICOMweb only, e.g. http://pacs:8042/dicom-web")
        self.timeout = QDoubleSpinBox(self)
        self.timeout.setRange(0.1, 3600)
        self.timeout.setValue(30)
        form = QFormLayout()
        for label, w in (
            ("Name", self.name),
            ("AE title", self.ae),
            ("Host", self.host),
            ("Port", self.port),
            ("DICOMweb URL", self.url),
            ("Timeout (s)", self.timeout),
        ):
            form.addRow(label, w)
        self.save_node = QPushButton("Add / update", self)
        self.save_node.clicked.connect(self.add_or_update)
        self.remove = QPushButton("Remove", self)
        self.remove.clicked.connect(self.remove_selected)
        self.verify_button = QPushButton("Verify", self)
        self.verify_button.setObjectName("pacsVerify")
        self.verify_button.clicked.connect(self.verify)
        buttons = QHBoxLayout()
        for b in (self.save_node, self.remove, self.verify_button):
            buttons.addWidget(b)

        local = QGroupBox("This computer", self)
        self.local_ae = QLineEdit(self.config.local.ae_title, self)
        self.local_ae.setMaxLength(16)
        self.local_port = QSpinBox(self)
        self.local_port.setRange(1, 65535)
        self.local_port.setValue(self.config.local.port)
        self.also_accept = QLineEdit(", ".join(self.config.local.accept_callers), self)
        self.also_accept.setPlaceholderText("calling AE titles accepted besides the nodes'")
        lform = QFormLayout(local)
        lform.addRow("Our AE title", self.local_ae)
        lform.addRow("Listener port", self.local_port)
        lform.addRow("Also accept", self.also_accept)

        self.status = QLabel("", self)
        self.status.setObjectName("pacsNodesStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box = ok_cancel(self, self.accept_and_save)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(local)
        layout.addWidget(self.status)
        layout.addWidget(box)
        self._fill()

    def _fill(self) -> None:
        self.table.setRowCount(0)
        for node in self.config.nodes:
            row = self.table.rowCount()
            self.table.insertRow(row)
            kind = "DICOMweb" if node.kind == "dicomweb" else "DIMSE"
            where = node.url or f"{node.ae_title}@{node.host}:{node.port}"
            for col, text in enumerate((node.name, kind, where)):
                self.table.setItem(row, col, QTableWidgetItem(text))

    def _load_selected(self) -> None:
        row = self.table.currentRow()
        if not 0 <= row < len(self.config.nodes):
            return
        node = self.config.nodes[row]
        self.name.setText(node.name)
        self.ae.setText(node.ae_title)
        self.host.setText(node.host)
        self.port.setValue(node.port)
        self.url.setText(node.url)
        self.timeout.setValue(node.timeout_s)

    def form_node(self) -> Node:
        return Node(
            self.name.text().strip(),
            ae_title=self.ae.text().strip(),
            host=self.host.text().strip(),
            port=self.port.value() if not self.url.text().strip() else 0,
            url=self.url.text().strip(),
            timeout_s=self.timeout.value(),
        ).checked()

    def _say(self, text: str, ok: bool) -> None:
        self.status.setProperty("ok", ok)
        self.status.setStyleSheet("" if ok else "color: #c62828;")
        self.status.setText(text)

    def add_or_update(self) -> None:
        try:
            self.config = self.config.with_node(self.form_node(), replace_existing=True)
        except FetalViewerError as exc:
            self._say(exc.message, False)
            return
        self._fill()
        self._say(f"{self.name.text()} set; OK saves it.", True)

    def remove_selected(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < len(self.config.nodes):
            self.config = self.config.without_node(self.config.nodes[row].name)
            self._fill()

    def local(self) -> LocalAE:
        accept = tuple(a.strip() for a in self.also_accept.text().split(",") if a.strip())
        return replace(
            self.config.local,
            ae_title=self.local_ae.text().strip(),
            port=self.local_port.value(),
            accept_callers=accept,
        ).checked()

    def verify(self) -> None:
        """C-ECHO (or a DICOMweb query) the node in the form, in a worker."""
        from fetal_viewer.core.net.pacs import verify

        try:
            node, local = self.form_node(), self.local()
        except FetalViewerError as exc:
            self._say(exc.message, False)
            return
        self.verify_button.setEnabled(False)
        self._say(f"Verifying {node.address}…", True)
        self._jobs.run(
            verify,
            node,
            local,
            on_returned=lambda s: self._say(f"{node.address}: OK in {s * 1000:.0f} ms", True),
            on_errored=lambda exc: self._say(error_text(exc), False),
            on_finished=lambda: self.verify_button.setEnabled(True),
        )

    def accept_and_save(self) -> None:
        """Save and close; a node filled in the form but not added is added (OK means what
        is on screen), one that is not complete keeps the dialog open and says why."""
        if self.name.text().strip():
            try:
                node = self.form_node()
            except FetalViewerError as exc:
                self._say(
                    f"The node in the form is not complete: {exc.message}\n"
                    "Complete it, or clear its name to leave it out.",
                    False,
                )
                return
            if node not in self.config.nodes:
                self.config = self.config.with_node(node, replace_existing=True)
        try:
            self.config = replace(self.config, local=self.local())
            save_config(self.config, self.config_path)
        except FetalViewerError as exc:
            self._say(exc.message, False)
            return
        self.accept()

    def done(self, result: int) -> None:
        from superqt.utils import WorkerBase

        if self._jobs.workers:  # a verify still waiting on the network
            WorkerBase.await_workers(30_000)
        super().done(result)
