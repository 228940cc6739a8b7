"""AI panel: class probabilities (frame and patient), top class, model identity, the
intended-use banner, heatmap controls and "Analyse study"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.cam.gradcam import empty_note, resolution_note
from fetal_viewer.core.cam.overlay import COLORMAPS

TOP_CLASS = "Top class"


class ProbabilityBars(QGroupBox):
    """One labelled bar per class and the top class in bold."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(6, 6, 6, 6)
        self.top_label = QLabel("–", self)
        self.top_label.setObjectName("topClass")
        self.note = QLabel("", self)
        self.note.setObjectName("barsNote")
        self.bars: list[QProgressBar] = []
        self.names: list[QLabel] = []
        self.classes: tuple[str, ...] = ()
        self.values: np.ndarray | None = None

    def set_classes(self, classes: Sequence[str]) -> None:
        for w in (*self.bars, *self.names):
            self._grid.removeWidget(w)
            w.deleteLater()
        self.bars, self.names = [], []
        self.classes = tuple(classes)
        self._grid.addWidget(self.top_label, 0, 0, 1, 2)
        for row, name in enumerate(self.classes, start=1):
            label = QLabel(name, self)
            bar = QProgressBar(self)
            bar.setRange(0, 1000)
            bar.setFormat("–")
            bar.setTextVisible(True)
            bar.setObjectName("probBar")
            self._grid.addWidget(label, row, 0)
            self._grid.addWidget(bar, row, 1)
            self.names.append(label)
            self.bars.append(bar)
        self._grid.addWidget(self.note, len(self.classes) + 1, 0, 1, 2)
        self.set_values(None)

    def set_values(self, probs: np.ndarray | None, note: str = "") -> None:
        self.values = None if probs is None else np.asarray(probs, dtype=np.float32)
        self.note.setText(note)
        self.note.setVisible(bool(note))  # an empty row would still take its height
        if self.values is None:
            for bar in self.bars:
                bar.setValue(0)
                bar.setFormat("–")
            self.top_label.setText("Top class: –")
            return
        top = int(np.argmax(self.values))
        for i, bar in enumerate(self.bars):
            p = float(self.values[i])
            bar.setValue(round(p * 1000))
            bar.setFormat(f"{100 * p:.1f} %")
            bar.setProperty("top", i == top)
            bar.style().unpolish(bar)
            bar.style().polish(bar)
        self.top_label.setText(
            f"Top class: <b>{self.classes[top]}</b> ({100 * self.values[top]:.1f} %)"
        )


class AIPanel(QWidget):
    overlay_toggled = Signal(bool)
    display_changed = Signal()  # class, opacity, colormap or method changed
    analyse_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aiPanel")
        self.banner = QLabel(INTENDED_USE, self)
        self.banner.setObjectName("intendedUseBanner")
        self.banner.setWordWrap(True)
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.model_label = QLabel("No model loaded (AI > Load model…)", self)
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.frame_bars = ProbabilityBars("This frame", self)
        self.patient_bars = ProbabilityBars("This patient", self)

        self.overlay_check = QCheckBox("Heatmap overlay (O)", self)
        self.overlay_check.setObjectName("overlayCheck")
        self.overlay_check.setChecked(True)
        self.class_combo = QComboBox(self)
        self.class_combo.setObjectName("classCombo")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setObjectName("opacitySlider")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(45)
        self.colormap_combo = QComboBox(self)
        self.colormap_combo.setObjectName("colormapCombo")
        self.colormap_combo.addItems(COLORMAPS)
        self.method_combo = QComboBox(self)
        self.method_combo.setObjectName("methodCombo")
        self.heat_note = QLabel("", self)
        self.heat_note.setObjectName("heatmapResolution")
        self.heat_note.setWordWrap(True)
        self.empty_note = QLabel("", self)
        self.empty_note.setObjectName("emptyHeatmapNote")
        self.empty_note.setWordWrap(True)
        self.empty_note.setVisible(False)
        self._input_size: int | None = None
        heat = QGroupBox("Heatmap", self)
        form = QFormLayout(heat)
        form.addRow(self.heat_note)
        form.addRow(self.empty_note)
        form.addRow(self.overlay_check)
        form.addRow("Class", self.class_combo)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow("Colormap", self.colormap_combo)
        form.addRow("Method", self.method_combo)

        self.analyse_button = QPushButton("Analyse study", self)
        self.analyse_button.setObjectName("analyseButton")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar(self)
        self.progress.setObjectName("analysisProgress")
        self.progress.setVisible(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.analyse_button, 1)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.model_label)
        layout.addWidget(self.frame_bars)
        layout.addWidget(self.patient_bars)
        layout.addWidget(heat)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addStretch(1)

        self.overlay_check.toggled.connect(self.overlay_toggled)
        self.class_combo.currentIndexChanged.connect(lambda _i: self.display_changed.emit())
        self.opacity_slider.valueChanged.connect(lambda _v: self.display_changed.emit())
        self.colormap_combo.currentIndexChanged.connect(lambda _i: self.display_changed.emit())
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.analyse_button.clicked.connect(self.analyse_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.set_methods(("gradcam",))
        self.set_model(None)

    # ----- model ------------------------------------------------------------------------
    def set_model(
        self,
        name: str | None,
        version: str = "",
        sha: str = "",
        classes: Sequence[str] = (),
        intended_use: str = INTENDED_USE,
        *,
        input_size: int | None = None,
        runtime: str = "",
    ) -> None:
        loaded = name is not None
        self._input_size = input_size
        self.heat_note.setVisible(loaded and bool(input_size))
        if input_size:
            self.heat_note.setText(resolution_note(input_size, self.method_combo.currentText()))
        if loaded:
            self.model_label.setText(f"Model: <b>{name}</b> v{version} · sha256 {sha[:10]}")
            if runtime:
                self.model_label.setText(f"{self.model_label.text()}<br>Runtime: {runtime}")
            extra = intended_use.strip()
            same = extra.lower().rstrip(".") in INTENDED_USE.lower()
            self.banner.setText(INTENDED_USE if same or not extra else f"{INTENDED_USE}\n{extra}")
        else:
            self.model_label.setText("No model loaded (AI > Load model…)")
        self.frame_bars.set_classes(classes)
        self.patient_bars.set_classes(classes)
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem(TOP_CLASS)
        self.class_combo.addItems(list(classes))
        self.class_combo.blockSignals(False)
        self.analyse_button.setEnabled(loaded)

    def _method_changed(self, _index: int) -> None:
        if self._input_size:
            self.heat_note.setText(
                resolution_note(self._input_size, self.method_combo.currentText())
            )
        self.display_changed.emit()

    def set_methods(self, methods: Sequence[str]) -> None:
        self.method_combo.blockSignals(True)
        self.method_combo.clear()
        self.method_combo.addItems(list(methods))
        self.method_combo.blockSignals(False)
        self.method_combo.setEnabled(len(methods) > 1)

    # ----- display choices ----------------------------------------------------------------
    def chosen_class(self, probs: np.ndarray | None) -> int | None:
        """Index of the class whose heatmap to show: the top class unless one is picked."""
        pick = self.class_combo.currentIndex()
        if pick > 0:
            return pick - 1
        if probs is None:
            return None
        return int(np.argmax(probs))

    def show_empty_heat(self, class_index: int | None) -> None:
        """Say that this class's map is empty, or (``None``) hide the note."""
        if class_index is not None:
            self.empty_note.setText(empty_note(self.class_combo.itemText(class_index + 1)))
        self.empty_note.setVisible(class_index is not None)

    def cycle_class(self, step: int = 1) -> None:
        n = self.class_combo.count()
        if n:
            self.class_combo.setCurrentIndex((self.class_combo.currentIndex() + step) % n)

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    @property
    def colormap(self) -> str:
        return self.colormap_combo.currentText()

    @property
    def method(self) -> str:
        return self.method_combo.currentText()

    # ----- analysis ---------------------------------------------------------------------
    def set_analysing(self, running: bool) -> None:
        self.analyse_button.setEnabled(not running and self.class_combo.count() > 1)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setValue(0)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"Analysing %v / {total} frames")
