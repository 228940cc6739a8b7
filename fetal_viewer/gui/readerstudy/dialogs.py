"""The coordinator window's dialogs: new study, add reader, and the case preview (the
study's cases as readers will see them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.gui.image_view import ImageView
from fetal_viewer.gui.readerstudy.jobs import Lane, NewStudy
from fetal_viewer.gui.widgets import ok_cancel, path_row

if TYPE_CHECKING:
    from fetal_viewer.core.readerstudy.coordination import CaseImage
    from fetal_viewer.core.store import Case, Store

DEFAULT_LABELS = CLASSES


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
        form.addRow("Folder", path_row(self, self.folder, self._pick_folder))
        form.addRow(self.from_manifest)
        form.addRow("Manifest", path_row(self, self.manifest, self._pick_manifest))
        form.addRow("Reference CSV", path_row(self, self.reference, self._pick_reference))
        form.addRow("Design", self.design)
        form.addRow("Washout (crossover)", self.washout)
        form.addRow("Randomisation seed", self.seed)
        form.addRow("Labels (keys 1-5 in this order)", self.labels)
        form.addRow("Model card (AI)", path_row(self, self.model, self._pick_model))
        form.addRow(self.require_ratings)
        form.addRow(self.show_ga)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(ok_cancel(self))
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
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(ok_cancel(self))
