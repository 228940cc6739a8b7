"""Asks how a folder of plain images is grouped into patients (they carry no patient in
their header): one study, one patient per image, one patient per folder, or a CSV
mapping. The default offered is the core's :func:`~fetal_viewer.core.io.grouping.
infer_grouping`."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer.core.io.grouping import ImageGrouping
from fetal_viewer.gui.widgets import ok_cancel, path_row

_TEXT = {
    ImageGrouping.PER_IMAGE: "One patient per image (images of different pregnancies)",
    ImageGrouping.PER_FOLDER: "One patient per folder (each subfolder is one patient)",
    ImageGrouping.ONE_STUDY: "One study of one patient (frames of one examination)",
    ImageGrouping.MAPPING: "From a CSV file with the columns path,patient",
}


class ImageGroupingDialog(QDialog):
    def __init__(
        self, n_images: int, n_folders: int, default: ImageGrouping, parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("imageGroupingDialog")
        self.setWindowTitle("How are these images grouped?")
        intro = QLabel(
            f"{n_images} plain images in {n_folders} folder{'s' if n_folders != 1 else ''} "
            "carry no patient in their files. The AI's patient-level verdict pools the "
            "images of one patient, so say how they belong together.",
            self,
        )
        intro.setWordWrap(True)
        self.group = QButtonGroup(self)
        self.buttons: dict[ImageGrouping, QRadioButton] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        for grouping, text in _TEXT.items():
            b = QRadioButton(text, self)
            self.group.addButton(b)
            self.buttons[grouping] = b
            layout.addWidget(b)
        self.csv = QLineEdit(self)
        self.csv.setObjectName("groupingCsv")
        self.csv.setPlaceholderText("grouping CSV (path,patient)")
        layout.addLayout(path_row(self, self.csv, self._pick_csv))
        layout.addWidget(ok_cancel(self, ok=QDialogButtonBox.StandardButton.Open))
        self.buttons[default].setChecked(True)

    def _pick_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Grouping CSV", "", "CSV (*.csv)")
        if path:
            self.csv.setText(path)
            self.buttons[ImageGrouping.MAPPING].setChecked(True)

    def choice(self) -> ImageGrouping:
        return next(g for g, b in self.buttons.items() if b.isChecked())
