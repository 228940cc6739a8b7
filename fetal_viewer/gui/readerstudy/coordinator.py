"""Coordinator window: create a study (folder + reference CSV, or manifest), add readers,
choose the design, watch progress per reader, export, import a reader's database, run the
analysis and open its HTML report. Every store call runs in one serial lane."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE
from fetal_viewer.gui.error_sink import ErrorSink
from fetal_viewer.gui.readerstudy.dialogs import AddReaderDialog, CasePreviewDialog, NewStudyDialog
from fetal_viewer.gui.readerstudy.jobs import (
    Lane,
    NewStudy,
    StudyChoice,
    add_reader_job,
    analyse_job,
    create_study_job,
    export_job,
    merge_job,
    open_store_job,
    study_choices,
)
from fetal_viewer.gui.readerstudy.start import refill_studies, remember_model
from fetal_viewer.gui.settings import app_settings

if TYPE_CHECKING:
    from fetal_viewer.core.readerstudy.coordination import Enrolled
    from fetal_viewer.core.store import MergeReport, Store, Study

REFRESH_MS = 3000


def open_url(url: QUrl) -> bool:
    """Open a file in the desktop's browser (tests replace this)."""
    return bool(QDesktopServices.openUrl(url))


class CoordinatorWindow(QMainWindow):
    choices_loaded = Signal()
    study_created = Signal(object)  # Study
    reader_added = Signal(object)  # Enrolment
    exported = Signal(object)  # {name: path}
    analysed = Signal(object)  # {"html": path, "json": path}
    merged = Signal(object)  # MergeReport

    def __init__(
        self,
        db: str | Path | None = None,
        parent: QWidget | None = None,
        *,
        error_sink: ErrorSink | None = None,
        settings: QSettings | None = None,
        model_card: str | Path | None = None,
        store: Store | None = None,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setObjectName("coordinatorWindow")
        self.setWindowTitle(f"Reader-study coordinator — fetal-viewer — {INTENDED_USE}")
        self.settings = settings if settings is not None else app_settings()
        self.sink = error_sink if error_sink is not None else ErrorSink(self)
        self._owns_sink = error_sink is None
        self.model_card = str(model_card) if model_card else None
        self.lane = Lane(self.sink.report, "coordinatorLane")
        self.store: Store | None = store
        self._owns_store = store is None
        self.choices: list[StudyChoice] = []
        self._refreshing = False
        self._closed = False
        self.dialog: QDialog | None = None
        QShortcut(QKeySequence("Ctrl+Q"), self, self.close)  # as in the viewer

        w = QWidget(self)
        self.setCentralWidget(w)
        self.db_label = QLabel("", w)
        self.db_label.setObjectName("dbLabel")
        self.db_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.study_combo = QComboBox(w)
        self.study_combo.setObjectName("studyCombo")
        self.study_combo.setMinimumWidth(240)
        self.new_button = QPushButton("New study…", w)
        self.new_button.setObjectName("newStudyButton")
        self.study_info = QLabel("", w)
        self.study_info.setObjectName("studyInfo")
        self.study_info.setWordWrap(True)
        self.table = QTableWidget(0, 5, w)
        self.table.setObjectName("readerTable")
        self.table.setHorizontalHeaderLabels(["Reader", "Progress", "Reads", "Session", "Note"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.total = QProgressBar(w)
        self.total.setObjectName("studyProgress")
        self.add_reader_button = QPushButton("Add reader…", w)
        self.add_reader_button.setObjectName("addReaderButton")
        self.merge_button = QPushButton("Import reader database…", w)
        self.preview_button = QPushButton("Preview cases…", w)
        self.preview_button.setObjectName("previewButton")
        self.preview_button.setToolTip("The study's cases exactly as readers will see them")
        self.export_button = QPushButton("Export…", w)
        self.export_button.setObjectName("exportButton")
        self.analyse_button = QPushButton("Analyse and open report…", w)
        self.analyse_button.setObjectName("analyseButton")
        self.status = QLabel("", w)
        self.status.setObjectName("coordinatorStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(QLabel("Study", w))
        top.addWidget(self.study_combo, 1)
        top.addWidget(self.new_button)
        actions = QHBoxLayout()
        for b in (
            self.add_reader_button,
            self.preview_button,
            self.merge_button,
            self.export_button,
        ):
            actions.addWidget(b)
        actions.addStretch(1)
        actions.addWidget(self.analyse_button)
        banner = QLabel(INTENDED_USE, w)
        banner.setObjectName("intendedUseBanner")
        layout = QVBoxLayout(w)
        layout.addWidget(banner)
        layout.addWidget(self.db_label)
        layout.addLayout(top)
        layout.addWidget(self.study_info)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.total)
        layout.addLayout(actions)
        layout.addWidget(self.status)
        self.study_combo.currentIndexChanged.connect(self._show_study)
        self.new_button.clicked.connect(self.new_study_dialog)
        self.add_reader_button.clicked.connect(self.add_reader_dialog)
        self.merge_button.clicked.connect(self.merge_dialog)
        self.preview_button.clicked.connect(self.preview_dialog)
        self.export_button.clicked.connect(self.export_dialog)
        self.analyse_button.clicked.connect(self.analyse_dialog)
        self._set_study_actions(False)
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        from fetal_viewer.gui.app import size_to_screen

        size_to_screen(self, 0.9, at_most=(900, 560))
        if self.store is None:
            self.status.setText("Opening the study database…")
            self.lane.run(
                open_store_job, db, context="Opening the study database", on_returned=self._on_store
            )
        else:
            self._on_store(self.store)

    # ----- data -------------------------------------------------------------------------
    def _on_store(self, store: Store) -> None:
        self.store = store
        self.db_label.setText(f"Database: {store.url}")
        self.status.setText("")
        self.refresh()
        self.timer.start()

    def refresh(self) -> None:
        """Reload studies and progress (in the lane; skipped while one is in flight)."""
        if self.store is None or self._refreshing or self._closed:
            return
        self._refreshing = True
        self.lane.run(
            study_choices,
            self.store,
            context="Reading study progress",
            on_returned=self._on_choices,
            on_errored=lambda _e: setattr(self, "_refreshing", False),
        )

    def _on_choices(self, choices: list[StudyChoice]) -> None:
        self._refreshing = False
        self.choices = choices
        refill_studies(self.study_combo, [c.name for c in choices])
        self._show_study()
        self.choices_loaded.emit()

    def current_name(self) -> str | None:
        return self.study_combo.currentText() or None

    def current(self) -> StudyChoice | None:
        name = self.study_combo.currentText()
        return next((c for c in self.choices if c.name == name), None)

    def _set_study_actions(self, enabled: bool) -> None:
        for b in (self.add_reader_button, self.preview_button):
            b.setEnabled(enabled)
        for b in (self.merge_button, self.export_button):
            b.setEnabled(enabled)
        self.analyse_button.setEnabled(enabled)

    def _show_study(self, *_: object) -> None:
        c = self.current()
        self._set_study_actions(c is not None)
        if c is None:
            self.study_info.setText("No study yet: create one with New study….")
            self.table.setRowCount(0)
            self.total.setValue(0)
            return
        model = f"model card sha256 {c.model_sha256[:12]}…" if c.model_sha256 else "no AI model"
        self.study_info.setText(
            f"Design <b>{c.design}</b> · {c.n_cases} cases · {len(c.readers)} readers · {model}"
        )
        now = datetime.now(UTC)
        self.table.setRowCount(len(c.readers))
        for row, r in enumerate(c.readers):
            bar = QProgressBar(self.table)
            bar.setRange(0, max(1, r.total))
            bar.setValue(r.done)
            self.table.setCellWidget(row, 1, bar)
            note = "finished" if r.finished else ""
            if r.next_session_at is not None and not r.finished:
                when = f"{r.next_session_at:%Y-%m-%d}"
                note = f"session 2 from {when}" if r.next_session_at > now else "session 2 open"
            session = f"{r.arm} of 2" if c.design == "crossover" else "1 of 1"
            for col, text in ((0, r.reader), (2, f"{r.done} / {r.total}"), (3, session), (4, note)):
                self.table.setItem(row, col, QTableWidgetItem(text))
        done, total = sum(r.done for r in c.readers), sum(r.total for r in c.readers)
        self.total.setRange(0, max(1, total))
        self.total.setValue(done)
        self.total.setFormat(f"study: {done} / {total} reads (%p%)")

    # ----- actions ----------------------------------------------------------------------
    def new_study_dialog(self) -> NewStudyDialog:
        dlg = NewStudyDialog(self, self.model_card)
        dlg.accepted.connect(lambda: self.create_study(dlg.request()))
        dlg.finished.connect(dlg.deleteLater)
        self.dialog = dlg
        dlg.open()
        return dlg

    def create_study(self, req: NewStudy) -> None:
        if self.store is None:
            return
        if req.model_card:
            remember_model(self.settings, req.model_card)
        self.status.setText(f"Creating study {req.name!r}…")
        self.lane.run(
            create_study_job,
            self.store,
            req,
            context="Creating the study",
            on_returned=self._on_created,
            on_errored=lambda _e: self.status.setText("The study was not created."),
        )

    def _on_created(self, study: Study) -> None:
        self.status.setText(f"Created {study.name!r}: {study.n_cases} cases, {study.design}.")
        self.study_combo.blockSignals(True)
        self.study_combo.addItem(study.name)
        self.study_combo.setCurrentText(study.name)
        self.study_combo.blockSignals(False)
        self.study_created.emit(study)
        self.refresh()

    def add_reader_dialog(self) -> AddReaderDialog:
        dlg = AddReaderDialog(self)
        dlg.accepted.connect(
            lambda: self.add_reader(
                dlg.pseudonym.text().strip(), dlg.role.currentText(), dlg.years.value()
            )
        )
        dlg.finished.connect(dlg.deleteLater)
        self.dialog = dlg
        dlg.open()
        return dlg

    def add_reader(self, pseudonym: str, role: str = "radiologist", years: float = 0.0) -> None:
        name = self.current_name()
        if name is None or self.store is None:
            return
        self.lane.run(
            add_reader_job,
            self.store,
            name,
            pseudonym,
            role,
            years,
            context="Adding a reader",
            on_returned=self._on_reader_added,
        )

    def _on_reader_added(self, enrolled: Enrolled) -> None:
        self.status.setText(enrolled.words())
        self.reader_added.emit(enrolled.enrolment)
        self.refresh()

    def preview_dialog(self) -> CasePreviewDialog | None:
        """The study's cases as readers will see them (same loader, same crop)."""
        name = self.current_name()
        if name is None or self.store is None:
            return None
        dlg = CasePreviewDialog(self, self.lane, self.store, name)
        dlg.finished.connect(dlg.deleteLater)
        self.dialog = dlg
        dlg.open()
        return dlg

    def _directory(self, title: str) -> str:
        return QFileDialog.getExistingDirectory(self, title)

    def export_dialog(self) -> None:
        folder = self._directory("Export into folder")
        if folder:
            self.export_to(folder)

    def export_to(self, folder: str | Path) -> None:
        name = self.current_name()
        if name is None or self.store is None:
            return
        self.status.setText("Exporting…")
        self.lane.run(
            export_job,
            self.store,
            name,
            str(folder),
            context="Exporting the study",
            on_returned=self._on_exported,
        )

    def _on_exported(self, paths: dict[str, Path]) -> None:
        lines = "<br>".join(f"{k}: {p}" for k, p in paths.items())
        self.status.setText(f"Exported (no patient identities):<br>{lines}")
        self.exported.emit(paths)

    def analyse_dialog(self) -> None:
        folder = self._directory("Write the analysis report into folder")
        if folder:
            self.analyse_to(folder)

    def analyse_to(self, folder: str | Path) -> None:
        name = self.current_name()
        if name is None or self.store is None:
            return
        self.status.setText("Analysing…")
        self.analyse_button.setEnabled(False)
        self.lane.run(
            analyse_job,
            self.store,
            name,
            str(folder),
            context="Analysing the study",
            on_returned=self._on_analysed,
            on_errored=self._analysis_failed,
        )

    def _analysis_failed(self, _exc: BaseException) -> None:
        self.analyse_button.setEnabled(True)
        self.status.setText("")  # not "Analysing…" any more: the error dialog says why

    def _on_analysed(self, paths: dict[str, Path]) -> None:
        self.analyse_button.setEnabled(True)
        self.status.setText(f"Report: {paths['html']}")
        self.analysed.emit(paths)
        open_url(QUrl.fromLocalFile(str(paths["html"])))

    def merge_dialog(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Reader database", "", "Database (*.db);;All (*)")
        if f:
            self.merge_from(f)

    def merge_from(self, source: str | Path) -> None:
        name = self.current_name()
        if name is None or self.store is None:
            return
        self.lane.run(
            merge_job,
            self.store,
            name,
            str(source),
            context="Importing a reader database",
            on_returned=self._on_merged,
        )

    def _on_merged(self, rep: MergeReport) -> None:
        text = (
            f"Imported: {rep.reads_added} reads added, {rep.reads_already_present} already "
            f"present, {len(rep.conflicts)} conflicts."
        )
        if rep.conflicts:
            text += "<br>" + "<br>".join(rep.conflicts[:10])
        self.status.setText(text)
        self.merged.emit(rep)
        self.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed:
            self._closed = True
            self.timer.stop()
            self.lane.shutdown()
            if self._owns_store and self.store is not None:
                self.store.close()
            if self._owns_sink:
                self.sink.close_all()
        super().closeEvent(event)
