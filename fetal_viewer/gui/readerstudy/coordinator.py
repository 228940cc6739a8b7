"""Coordinator window: create a study (folder + reference CSV, or manifest), add readers,
choose the design, watch progress per reader, export, import a reader's database, run the
analysis and open its HTML report. Every store call runs in one serial lane."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.gui.error_sink import ErrorSink
from fetal_viewer.gui.image_view import ImageView
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
from fetal_viewer.gui.readerstudy.reader import remember_model
from fetal_viewer.gui.settings import app_settings

if TYPE_CHECKING:
    from fetal_viewer.core.readerstudy.coordination import CaseImage
    from fetal_viewer.core.store import Case, Enrolment, MergeReport, Store, Study

REFRESH_MS = 3000
DEFAULT_LABELS = CLASSES


def open_url(url: QUrl) -> bool:
    """Open a file in the desktop's browser (tests replace this)."""
    return bool(QDesktopServices.openUrl(url))


def _path_row(parent: QWidget, edit: QLineEdit, pick: Callable[[], object]) -> QHBoxLayout:
    row = QHBoxLayout()
    b = QToolButton(parent)
    b.setText("…")
    b.clicked.connect(pick)
    row.addWidget(edit, 1)
    row.addWidget(b)
    return row


class NewStudyDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, model_card: str | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("newStudyDialog")
        self.setWindowTitle("New reader study")
        self.name = QLineEdit(self)
        self.name.setObjectName("studyName")
        self.from_folder = QRadioButton("Folder of images + reference-standard CSV", self)
        self.from_manifest = QRadioButton("Manifest CSV (optional reference CSV)", self)
        self.from_folder.setChecked(True)
        self.folder = QLineEdit(self)
        self.folder.setObjectName("folderEdit")
        self.manifest = QLineEdit(self)
        self.manifest.setObjectName("manifestEdit")
        self.reference = QLineEdit(self)
        self.reference.setObjectName("referenceEdit")
        self.reference.setPlaceholderText("CSV with columns path,label[,source,frame,ga_weeks]")
        self.design = QComboBox(self)
        self.design.setObjectName("designCombo")
        self.design.addItems(["sequential", "crossover"])
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.washout = QDoubleSpinBox(self)
        self.washout.setRange(0, 365)
        self.washout.setValue(28)
        self.washout.setSuffix(" days")
        self.labels = QLineEdit(", ".join(DEFAULT_LABELS), self)
        self.labels.setObjectName("labelsEdit")
        self.model = QLineEdit(model_card or "", self)
        self.model.setObjectName("modelEdit")
        self.require_ratings = QCheckBox("Readers must set both ratings before submitting", self)
        self.require_ratings.setObjectName("requireRatings")
        self.show_ga = QCheckBox("Show readers the case's gestational age", self)
        self.show_ga.setObjectName("showGa")
        self.show_ga.setToolTip(
            "The reading view shows the field of view only; this shows the gestational age "
            "(from the reference CSV or the file header) beside it."
        )
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow(self.from_folder)
        form.addRow("Folder", _path_row(self, self.folder, self._pick_folder))
        form.addRow(self.from_manifest)
        form.addRow("Manifest", _path_row(self, self.manifest, self._pick_manifest))
        form.addRow("Reference CSV", _path_row(self, self.reference, self._pick_reference))
        form.addRow("Design", self.design)
        form.addRow("Washout (crossover)", self.washout)
        form.addRow("Randomisation seed", self.seed)
        form.addRow("Labels (keys 1-5 in this order)", self.labels)
        form.addRow("Model card (AI)", _path_row(self, self.model, self._pick_model))
        form.addRow(self.require_ratings)
        form.addRow(self.show_ga)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.design.currentTextChanged.connect(self._sync)
        self.from_folder.toggled.connect(self._sync)
        self._sync()

    def _sync(self, *_: object) -> None:
        folder = self.from_folder.isChecked()
        self.folder.setEnabled(folder)
        self.manifest.setEnabled(not folder)
        self.washout.setEnabled(self.design.currentText() == "crossover")

    def _pick_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder of the cases")
        if d:
            self.folder.setText(d)

    def _pick_file(self, edit: QLineEdit, title: str, pattern: str) -> None:
        f, _ = QFileDialog.getOpenFileName(self, title, "", pattern)
        if f:
            edit.setText(f)

    def _pick_manifest(self) -> None:
        self._pick_file(self.manifest, "Manifest", "CSV (*.csv)")
        self.from_manifest.setChecked(True)

    def _pick_reference(self) -> None:
        self._pick_file(self.reference, "Reference-standard CSV", "CSV (*.csv)")

    def _pick_model(self) -> None:
        self._pick_file(self.model, "Model card", "Model card (*.json)")

    def request(self) -> NewStudy:
        folder = self.from_folder.isChecked()
        labels = tuple(x.strip() for x in self.labels.text().split(",") if x.strip())
        return NewStudy(
            name=self.name.text().strip(),
            design=self.design.currentText(),
            seed=self.seed.value(),
            washout_days=self.washout.value() if self.design.currentText() == "crossover" else 0,
            labels=labels,
            folder=self.folder.text().strip() or None if folder else None,
            manifest=None if folder else self.manifest.text().strip() or None,
            reference_csv=self.reference.text().strip() or None,
            model_card=self.model.text().strip() or None,
            require_ratings=self.require_ratings.isChecked(),
            show_ga=self.show_ga.isChecked(),
        )


class CasePreviewDialog(QDialog):
    """One case at a time, loaded by the reading window's own loader
    (:func:`~fetal_viewer.core.readerstudy.cases.load_case_image`): what a reader will see."""

    image_shown = Signal(object)  # CaseImage

    def __init__(self, parent: QWidget, lane: Lane, store: Store, study: str) -> None:
        super().__init__(parent)
        self.setObjectName("casePreviewDialog")
        self.setWindowTitle(f"Cases of {study} as readers see them")
        self.lane = lane
        self.cases: list[Case] = []
        self.combo = QComboBox(self)
        self.view = ImageView(self)
        self.note = QLabel("", self)
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.combo)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.note)
        self.combo.currentIndexChanged.connect(self._load)
        self.resize(720, 620)
        lane.run(store.list_cases, study, context="Listing the cases", on_returned=self._on_cases)

    def _on_cases(self, cases: list[Case]) -> None:
        self.cases = cases
        self.combo.addItems([f"{c.pseudonym} (reference: {c.reference_label})" for c in cases])

    def _load(self, index: int) -> None:
        if not 0 <= index < len(self.cases):
            return
        from fetal_viewer.core.readerstudy.coordination import load_case_image

        c = self.cases[index]
        self.lane.run(
            load_case_image,
            c.pseudonym,
            c.source_path,
            c.frame,
            context=f"Loading case {c.pseudonym}",
            on_returned=self._show,
        )

    def _show(self, image: CaseImage) -> None:
        self.view.set_calibration(image.spacing_mm)
        self.view.set_frame(image.frame)
        self.view.fit()
        h, w = image.full_shape
        self.note.setText(
            f"Field of view {image.frame.shape[1]}×{image.frame.shape[0]} of the "
            f"{w}×{h} frame: text burned in outside it stays off the reading screen."
            + (f" Not calibrated: {image.calibration_note}." if image.calibration_note else "")
        )
        self.image_shown.emit(image)


class AddReaderDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("addReaderDialog")
        self.setWindowTitle("Add reader")
        self.pseudonym = QLineEdit(self)
        self.pseudonym.setObjectName("readerPseudonym")
        self.pseudonym.setPlaceholderText("a pseudonym, not a name (e.g. R07)")
        self.role = QComboBox(self)
        self.role.setEditable(True)
        self.role.addItems(["radiologist", "obstetrician", "sonographer", "trainee"])
        self.years = QDoubleSpinBox(self)
        self.years.setRange(0, 60)
        form = QFormLayout()
        form.addRow("Pseudonym", self.pseudonym)
        form.addRow("Role", self.role)
        form.addRow("Years of experience", self.years)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)


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
        keep = self.study_combo.currentText()
        self.study_combo.blockSignals(True)
        self.study_combo.clear()
        self.study_combo.addItems([c.name for c in choices])
        if keep in [c.name for c in choices]:
            self.study_combo.setCurrentText(keep)
        self.study_combo.blockSignals(False)
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

    def _on_reader_added(self, enrolment: Enrolment) -> None:
        self.status.setText(f"Reader {enrolment.reader} enrolled in {enrolment.study}.")
        self.reader_added.emit(enrolment)
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
            on_errored=lambda _e: self.analyse_button.setEnabled(True),
        )

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
