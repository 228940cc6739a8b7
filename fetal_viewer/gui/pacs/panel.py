"""The PACS panel: search a node, browse a study's series, retrieve with progress and
cancel (image files handed on as they arrive), and run the listener."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import FunctionWorker

from fetal_viewer.core.net.nodes import Node, NodeConfig, load_config
from fetal_viewer.core.progress import CancelToken
from fetal_viewer.errors import CancelledError, FetalViewerError
from fetal_viewer.gui.pacs.jobs import Jobs, error_text
from fetal_viewer.gui.pacs.nodes import NodesDialog
from fetal_viewer.gui.widgets import keep_list_keys

if TYPE_CHECKING:
    from fetal_viewer.core.net.listener import Listener, Received
    from fetal_viewer.core.net.pacs import SeriesMatch, StudyMatch, StudyQuery
    from fetal_viewer.core.net.retrieve import RetrieveResult
    from fetal_viewer.core.net.storage import StoredInstance

ROLE = Qt.ItemDataRole.UserRole
#: how often arrived instances are handed to the studies panel
ARRIVAL_BATCH_MS = 300


class _Bridge(QObject):
    """Carries callbacks from worker and association threads to the GUI thread."""

    progress = Signal(int, int, str)
    arrived = Signal(object)  # StoredInstance
    received = Signal(object)  # listener.Received


class PacsPanel(QWidget):
    """Search a node, browse a study's series, retrieve with progress and cancel, and run
    the listener. ``paths_arrived`` carries image files as they arrive."""

    paths_arrived = Signal(list)  # list[str] of DICOM image files
    retrieved = Signal(object)  # RetrieveResult
    failed = Signal(object, str)  # exception, context

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        config_path: Path | None = None,
        cache: Path | None = None,
        inbox: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("pacsPanel")
        self.config_path = config_path
        self.cache = cache
        self.inbox = inbox
        self.config = NodeConfig()
        self.show_identities = False
        self.listener: Listener | None = None
        self._cancel: CancelToken | None = None
        self._jobs = Jobs(self)
        self._bridge = _Bridge(self)
        self._bridge.progress.connect(self._on_progress)
        self._bridge.arrived.connect(self._on_arrived)
        self._bridge.received.connect(self._on_received)
        self._pending: list[str] = []
        self._batch = QTimer(self)
        self._batch.setSingleShot(True)
        self._batch.setInterval(ARRIVAL_BATCH_MS)
        self._batch.timeout.connect(self._flush)
        self.received_count = 0

        self.node = QComboBox(self)
        self.node.setObjectName("pacsNode")
        nodes_button = QPushButton("Nodes…", self)
        nodes_button.clicked.connect(self.edit_nodes)
        top = QHBoxLayout()
        top.addWidget(self.node, 1)
        top.addWidget(nodes_button)

        self.patient_id = QLineEdit(self)
        self.patient_name = QLineEdit(self)
        self.patient_name.setPlaceholderText("anywhere in the name; * and ? as wildcards")
        self.dates = QLineEdit(self)
        self.dates.setPlaceholderText("20240101-20240131, 20240101- or -20240131")
        self.accession = QLineEdit(self)
        self.modality = QLineEdit(self)
        self.modality.setPlaceholderText("e.g. US")
        form = QFormLayout()
        for label, w in (
            ("Patient ID", self.patient_id),
            ("Name", self.patient_name),
            ("Study date", self.dates),
            ("Accession", self.accession),
            ("Modality", self.modality),
        ):
            form.addRow(label, w)
            if isinstance(w, QLineEdit):
                w.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search", self)
        self.search_button.setObjectName("pacsSearch")
        self.search_button.clicked.connect(self.search)

        self.results = QTreeWidget(self)
        self.results.setObjectName("pacsResults")
        self.results.setHeaderLabels(["Date", "Patient", "Description", "Modality", "Images"])
        self.results.itemExpanded.connect(self._on_expanded)
        self.results.itemSelectionChanged.connect(self._update_buttons)
        keep_list_keys(self.results)

        self.move_check = QCheckBox("C-MOVE to our listener", self)
        self.retrieve_button = QPushButton("Retrieve", self)
        self.retrieve_button.setObjectName("pacsRetrieve")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("pacsCancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar(self)
        self.progress.setObjectName("pacsProgress")
        self.progress.setVisible(False)
        keep = self.progress.sizePolicy()
        keep.setRetainSizeWhenHidden(True)  # Cancel stays where it was when a retrieve starts
        self.progress.setSizePolicy(keep)
        row = QHBoxLayout()
        row.addWidget(self.move_check)
        row.addStretch(1)
        row.addWidget(self.retrieve_button)
        row.addWidget(self.cancel_button)

        listen = QGroupBox("Listener", self)
        self.listen_button = QPushButton("Start listener", self)
        self.listen_button.setObjectName("pacsListen")
        self.listen_button.setCheckable(True)
        self.listen_button.toggled.connect(self.set_listening)
        self.any_caller = QCheckBox("Accept any calling AE title", self)
        self.listen_status = QLabel("Stopped.", self)
        self.listen_status.setObjectName("pacsListenStatus")
        self.listen_status.setWordWrap(True)
        lay = QVBoxLayout(listen)
        lay.addWidget(self.listen_button)
        lay.addWidget(self.any_caller)
        lay.addWidget(self.listen_status)

        self.message = QLabel("", self)
        self.message.setObjectName("pacsMessage")
        self.message.setWordWrap(True)
        # a long path in a message wraps or is cut, but never widens the dock over the image
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(form)
        layout.addWidget(self.search_button)
        layout.addWidget(self.results, 1)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(listen)
        self.reload_config()
        self._update_buttons()

    # ---- settings -----------------------------------------------------------------------
    def reload_config(self) -> None:
        try:
            self.config = load_config(self.config_path)
        except FetalViewerError as exc:
            self._say(exc.message, False)
            self.config = NodeConfig()
        current = self.node.currentText()
        self.node.clear()
        for n in self.config.nodes:
            self.node.addItem(n.name)
        if current:
            self.node.setCurrentText(current)

    def edit_nodes(self) -> NodesDialog:
        dialog = NodesDialog(self.config_path, self)
        dialog.finished.connect(lambda *_: self.reload_config())
        dialog.open()
        return dialog

    def current_node(self) -> Node | None:
        name = self.node.currentText()
        return next((n for n in self.config.nodes if n.name == name), None)

    def set_show_identities(self, show: bool) -> None:
        self.show_identities = show
        for i in range(self.results.topLevelItemCount()):
            item = self.results.topLevelItem(i)
            if item is not None:
                item.setText(1, self._who(item.data(0, ROLE)))

    def _who(self, match: StudyMatch) -> str:
        if self.show_identities:
            return f"{match.patient_name or '(no name)'} [{match.patient_id or '?'}]"
        from fetal_viewer.core.io import make_pseudonym

        return make_pseudonym(match.patient_id or match.patient_name or match.study_uid)

    def _say(self, text: str, ok: bool = True) -> None:
        self.message.setStyleSheet("" if ok else "color: #c62828;")
        self.message.setText(text)
        self.message.setToolTip(text)

    def _update_buttons(self) -> None:
        busy = self._cancel is not None
        self.retrieve_button.setEnabled(not busy and self._selected_study() is not None)
        self.cancel_button.setEnabled(busy)
        self.search_button.setEnabled(self.current_node() is not None)

    # ---- search -------------------------------------------------------------------------
    def query(self) -> StudyQuery:
        from fetal_viewer.core.net.pacs import StudyQuery, parse_date_range

        start, end = (
            parse_date_range(self.dates.text()) if self.dates.text().strip() else (None, None)
        )
        return StudyQuery(
            patient_id=self.patient_id.text(),
            patient_name=self.patient_name.text(),
            date_from=start,
            date_to=end,
            accession=self.accession.text(),
            modality=self.modality.text(),
        )

    def search(self) -> FunctionWorker[list[StudyMatch]] | None:
        from fetal_viewer.core.net.pacs import find_studies

        node = self.current_node()
        if node is None:
            self._say("Add a node first (Nodes…).", False)
            return None
        try:
            query = self.query()
        except FetalViewerError as exc:
            self._say(exc.message, False)
            return None
        self.search_button.setEnabled(False)
        self.results.clear()  # what another search (maybe on another node) found is gone
        self._say(f"Searching {node.address}…")
        return self._jobs.run(
            find_studies,
            node,
            self.config.local,
            query,
            on_returned=self._on_studies,
            on_errored=lambda exc: self._error(exc, "Searching the PACS"),
            on_finished=self._update_buttons,
        )

    def _on_studies(self, studies: list[StudyMatch]) -> None:
        self.results.clear()
        for m in studies:
            n = "?" if m.n_instances is None else str(m.n_instances)
            date = m.study_date.isoformat() if m.study_date else ""
            item = QTreeWidgetItem([date, self._who(m), m.description, "/".join(m.modalities), n])
            item.setData(0, ROLE, m)
            item.setToolTip(2, m.study_uid)
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.results.addTopLevelItem(item)
        for col in range(self.results.columnCount()):
            self.results.resizeColumnToContents(col)
        self._say(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found.")

    def _on_expanded(self, item: QTreeWidgetItem) -> None:
        from fetal_viewer.core.net.pacs import find_series

        match = item.data(0, ROLE)
        node = self.current_node()
        if item.parent() is not None or item.childCount() or node is None:
            return
        self._jobs.run(
            find_series,
            node,
            self.config.local,
            match.study_uid,
            on_returned=self._series_filler(item),
            on_errored=lambda exc: self._error(exc, "Listing the study's series"),
        )

    def _series_filler(self, item: QTreeWidgetItem) -> Callable[[list[SeriesMatch]], None]:
        return lambda series: self._on_series(item, series)

    def _on_series(self, item: QTreeWidgetItem, series: list[SeriesMatch]) -> None:
        for s in series:
            n = "?" if s.n_instances is None else str(s.n_instances)
            child = QTreeWidgetItem(["", f"series {s.number or ''}", s.description, s.modality, n])
            child.setToolTip(2, s.series_uid)
            item.addChild(child)
        if not series:
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicator)

    def _selected_study(self) -> StudyMatch | None:
        from fetal_viewer.core.net.pacs import StudyMatch

        items = self.results.selectedItems()
        if not items:
            return None
        item: QTreeWidgetItem | None = items[0]
        while item is not None and item.parent() is not None:
            item = item.parent()
        match = item.data(0, ROLE) if item is not None else None
        return match if isinstance(match, StudyMatch) else None

    def select_study(self, study_uid: str) -> None:
        for i in range(self.results.topLevelItemCount()):
            item = self.results.topLevelItem(i)
            if item is not None and item.data(0, ROLE).study_uid == study_uid:
                self.results.setCurrentItem(item)

    # ---- retrieve -----------------------------------------------------------------------
    def retrieve(self) -> FunctionWorker[RetrieveResult] | None:
        from fetal_viewer.core.net.retrieve import cache_root, retrieve_study
        from fetal_viewer.core.net.storage import StudyStore

        node, match = self.current_node(), self._selected_study()
        if node is None or match is None or self._cancel is not None:
            return None
        self._cancel = cancel = CancelToken()
        store = StudyStore(self.cache if self.cache is not None else cache_root())
        self.progress.setRange(0, max(match.n_instances or 0, 0))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self._say(f"Retrieving from {node.address}…")
        self._update_buttons()
        listener = self.listener if self.listener is not None and self.listener.running else None
        return self._run_retrieve(retrieve_study, node, match, store, listener, cancel)

    def _run_retrieve(
        self,
        fn: Callable[..., RetrieveResult],
        node: Node,
        match: StudyMatch,
        store: object,
        listener: Listener | None,
        cancel: CancelToken,
    ) -> FunctionWorker[RetrieveResult]:
        bridge = self._bridge
        method = "move" if self.move_check.isChecked() else "get"

        def job() -> RetrieveResult:
            return fn(
                node,
                self.config.local,
                match.study_uid,
                store=store,
                method=method,
                listener=listener,
                on_instance=bridge.arrived.emit,
                progress=lambda d, t, m="": bridge.progress.emit(d, t, m),
                cancel=cancel,
            )

        return self._jobs.run(
            job,
            on_returned=self._on_retrieved,
            on_errored=lambda exc: self._error(exc, "Retrieving the study"),
            on_finished=self._retrieve_finished,
        )

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
            self._say("Cancelling…")

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))
        self.progress.setFormat(f"%v / {total} images" if total else "%v images")

    def _on_arrived(self, item: StoredInstance) -> None:
        if item.is_image and item.outcome.value != "conflict":
            self._pending.append(str(item.path))
            if not self._batch.isActive():
                self._batch.start()

    def _flush(self) -> None:
        if self._pending:
            paths, self._pending = sorted(set(self._pending)), []
            self.paths_arrived.emit(paths)

    def _on_retrieved(self, result: RetrieveResult) -> None:
        self._flush()
        if result.complete:
            self._say(
                f"Retrieved {result.held} image(s) ({result.new} new) in {result.seconds:.1f} s."
            )
        else:
            self._say(
                f"The study is incomplete: {result.problem}. Retrieve again to resume.", False
            )
        self.retrieved.emit(result)

    def _retrieve_finished(self) -> None:
        self._flush()
        self._cancel = None
        self.progress.setVisible(False)
        self._update_buttons()

    def _error(self, exc: BaseException, context: str) -> None:
        if isinstance(exc, CancelledError):
            self._say("Cancelled. What arrived is kept; Retrieve resumes.", False)
            return
        self._say(error_text(exc), False)
        self.failed.emit(exc, context)

    # ---- listener -----------------------------------------------------------------------
    def set_listening(self, on: bool) -> None:
        from fetal_viewer.core.net.listener import Listener
        from fetal_viewer.core.net.pacs import inbox_root
        from fetal_viewer.core.net.storage import StudyStore

        if self.listen_button.isChecked() != on:
            self.listen_button.setChecked(on)  # re-enters through toggled
            return
        if not on:
            if self.listener is not None:
                self.listener.stop()
                self.listener = None
            self.listen_button.setText("Start listener")
            self.listen_status.setText(f"Stopped. {self.received_count} image(s) received.")
            return
        self.reload_config()
        allowed = None if self.any_caller.isChecked() else self.config.allowed_callers()
        store = StudyStore(self.inbox if self.inbox is not None else inbox_root(), durable=True)
        bridge = self._bridge
        listener = Listener(self.config.local, store, allowed, on_received=bridge.received.emit)
        try:
            listener.start()  # binds a socket: immediate
        except FetalViewerError as exc:
            self.listen_button.blockSignals(True)
            self.listen_button.setChecked(False)
            self.listen_button.blockSignals(False)
            self.listen_status.setText(exc.message)
            self.failed.emit(exc, "Starting the listener")
            return
        self.listener = listener
        self.listen_button.setText("Stop listener")
        who = "any caller" if allowed is None else ", ".join(sorted(allowed)) or "no caller yet"
        self.listen_status.setText(
            f"Listening as {self.config.local.ae_title} on port {listener.port}; accepting "
            f"{who}. Inbox: {store.root}"
        )

    def _on_received(self, received: Received) -> None:
        self.received_count += 1
        self.listen_status.setText(
            f"Listening on port {self.listener.port if self.listener else '?'}: "
            f"{self.received_count} image(s) received, last from {received.calling_ae}."
        )
        if not received.routed:  # a retrieve's own arrivals come through it
            self._on_arrived(received.item)

    # ---- lifecycle ----------------------------------------------------------------------
    def running_workers(self) -> int:
        return len(self._jobs.workers)

    def shutdown(self) -> None:
        """Cancel a retrieve, stop the listener, and wait for the workers."""
        if self._cancel is not None:
            self._cancel.cancel()
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        for worker in list(self._jobs.workers):
            worker.quit()
        from superqt.utils import WorkerBase

        WorkerBase.await_workers(30_000)
        self._batch.stop()
