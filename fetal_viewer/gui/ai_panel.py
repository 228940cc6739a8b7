"""AI panel: class probabilities (frame and patient), top class, model identity, the
intended-use banner, heatmap controls and "Analyse study". It renders the viewer state's
:class:`~fetal_viewer.core.viewer.ai.AIView` and passes the reader's choices to the state."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.cam.gradcam import empty_note
from fetal_viewer.core.viewer.ai import SHOW_ANYWAY, AIStatus, AIView
from fetal_viewer.core.viewer.results import ModelInfo
from fetal_viewer.core.viewer.state import ViewerState
from fetal_viewer.gui.view_tools import OverlayControls
from fetal_viewer.gui.widgets import vertical_scroll

TOP_CLASS = "Top class"


class ProbabilityBars(QGroupBox):
    """One labelled bar per class and the top class in bold."""

    def __init__(self, title: str, parent: QWidget | None = None, compact: bool = False) -> None:
        super().__init__(title, parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(6, 6, 6, 6)
        self.compact = compact  # thin rows without a frame (the reading window's column)
        if compact:
            self.setObjectName("compactBars")
            self._grid.setContentsMargins(0, 0, 0, 0)
            self._grid.setVerticalSpacing(2)
        self.top_label = QLabel("–", self)
        self.top_label.setObjectName("topClass")
        self.note = QLabel("", self)
        self.note.setObjectName("barsNote")
        self.note.setWordWrap(True)  # "No assessable frames: ..." must not widen the panel
        self.bars: list[QProgressBar] = []
        self.names: list[QLabel] = []
        self.classes: tuple[str, ...] = ()
        self.values: np.ndarray | None = None

    def show_view(self, view: AIView) -> None:
        """The classes and probabilities of an AI panel rendering (a dash while none)."""
        if view.classes != self.classes:
            self.set_classes(view.classes)
        self.set_values(view.probs, view.caption)

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
            if self.compact:
                bar.setMaximumHeight(18)
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
    analyse_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aiPanel")
        self.state = state
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
        # the domain guard's verdict on the frame, and the deliberate way past a withheld one
        self.domain_label = QLabel("", self)
        self.domain_label.setObjectName("domainNote")
        self.domain_label.setWordWrap(True)
        self.domain_label.setVisible(False)
        self.reveal_button = QPushButton(SHOW_ANYWAY, self)
        self.reveal_button.setObjectName("revealButton")
        self.reveal_button.setToolTip(
            "Show the model's output although the frame is outside what it was trained on (logged)"
        )
        self.reveal_button.setVisible(False)

        heat = QGroupBox("Heatmap", self)
        self.controls = OverlayControls(state.overlay, colormaps=True, parent=heat)
        self.overlay_check = self.controls.overlay_check
        self.opacity_slider = self.controls.opacity_slider
        self.colormap_combo = self.controls.colormap_combo
        self.class_combo = QComboBox(heat)
        self.class_combo.setObjectName("classCombo")
        self.method_combo = QComboBox(heat)
        self.method_combo.setObjectName("methodCombo")
        self.heat_note = QLabel("", heat)
        self.heat_note.setObjectName("heatmapResolution")
        self.heat_note.setWordWrap(True)
        self.empty_note = QLabel("", heat)
        self.empty_note.setObjectName("emptyHeatmapNote")
        self.empty_note.setWordWrap(True)
        self.empty_note.setVisible(False)
        form = self.controls.form
        form.insertRow(0, self.heat_note)
        form.insertRow(1, self.empty_note)
        form.insertRow(3, "Class", self.class_combo)
        form.addRow("Method", self.method_combo)
        QVBoxLayout(heat).addWidget(self.controls)

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

        # the read-outs scroll when the screen is short, rather than squeezing their wrapped
        # notes; Analyse study and its progress stay in view below them
        content = QWidget(self)
        content.setObjectName("aiPanelContent")
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        for widget in (
            self.banner,
            self.model_label,
            self.domain_label,
            self.reveal_button,
            self.frame_bars,
            self.patient_bars,
            heat,
        ):
            column.addWidget(widget)
        column.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(vertical_scroll(self, content), 1)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)

        self.class_combo.currentIndexChanged.connect(self._class_picked)
        self.method_combo.currentTextChanged.connect(state.set_method)
        self.reveal_button.clicked.connect(state.reveal)
        self.analyse_button.clicked.connect(self.analyse_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        state.model_changed.connect(self.set_model)
        state.ai_changed.connect(self.show_view)
        state.heat_pick_changed.connect(self._show_pick)
        self.set_methods((state.method,))
        self.set_model(state.model)

    # ----- rendering the state -----------------------------------------------------------
    def set_model(self, info: ModelInfo | None) -> None:
        loaded = info is not None
        if info is not None:
            self.model_label.setText(
                f"Model: <b>{info.name}</b> v{info.version} · sha256 {info.sha[:10]}"
            )
            if info.runtime:
                self.model_label.setText(f"{self.model_label.text()}<br>Runtime: {info.runtime}")
            if info.operating_point:
                point = escape(info.operating_point.capitalize())
                self.model_label.setText(f"{self.model_label.text()}<br>{point}")
            extra = info.intended_use.strip()
            same = extra.lower().rstrip(".") in INTENDED_USE.lower()
            self.banner.setText(INTENDED_USE if same or not extra else f"{INTENDED_USE}\n{extra}")
        else:
            self.model_label.setText("No model loaded (AI > Load model…)")
        classes = info.classes if info is not None else ()
        self.frame_bars.set_classes(classes)
        self.patient_bars.set_classes(classes)
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem(TOP_CLASS)
        self.class_combo.addItems(list(classes))
        self.class_combo.blockSignals(False)
        self.analyse_button.setEnabled(loaded)
        self.show_view(self.state.ai_view())

    def show_view(self, view: AIView) -> None:
        self.frame_bars.set_values(view.probs, view.caption)
        self.domain_label.setText(view.domain)
        self.domain_label.setVisible(bool(view.domain))
        self.domain_label.setProperty("outside", view.in_domain is False)
        self.domain_label.style().unpolish(self.domain_label)
        self.domain_label.style().polish(self.domain_label)
        self.reveal_button.setVisible(view.status is AIStatus.WITHHELD)
        self.heat_note.setText(" ".join(view.notes))
        self.heat_note.setVisible(bool(view.notes))
        empty = view.heat_empty and view.heat_class is not None
        if empty and view.heat_class is not None:
            self.empty_note.setText(empty_note(view.classes[view.heat_class]))
        self.empty_note.setVisible(empty)

    def _show_pick(self, pick: int | None) -> None:
        self.class_combo.blockSignals(True)
        self.class_combo.setCurrentIndex(0 if pick is None else pick + 1)
        self.class_combo.blockSignals(False)

    def _class_picked(self, index: int) -> None:
        self.state.set_heat_pick(None if index <= 0 else index - 1)

    def set_methods(self, methods: Sequence[str]) -> None:
        self.method_combo.blockSignals(True)
        self.method_combo.clear()
        self.method_combo.addItems(list(methods))
        self.method_combo.setCurrentText(self.state.method)
        self.method_combo.blockSignals(False)
        self.method_combo.setEnabled(len(methods) > 1)

    @property
    def opacity(self) -> float:
        return self.state.overlay.settings.opacity

    @property
    def colormap(self) -> str:
        return self.state.overlay.settings.colormap

    @property
    def method(self) -> str:
        return self.state.method

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
