"""The reading window's pages and panels. Each panel renders one part of the headless
:class:`~fetal_viewer.core.viewer.reading.ReadingState` and passes the reader's input to
it; none of them decides anything.

Start page (study, reader, model card) -> reading page (:class:`ImagePanel` on the left;
:class:`CaseHeader`, :class:`AIRevealPanel` and :class:`DecisionPanel` on the right) ->
done page.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.readerstudy.protocol import Step
from fetal_viewer.core.store import Study
from fetal_viewer.core.viewer.ai import SHOW_ANYWAY, AIStatus, AIView
from fetal_viewer.core.viewer.reading import Decision, ReadingState
from fetal_viewer.gui.ai_panel import ProbabilityBars
from fetal_viewer.gui.image_view import ImageView
from fetal_viewer.gui.view_tools import OverlayControls, ViewToolBar
from fetal_viewer.gui.widgets import path_row


class StartPage(QWidget):
    """Choose the study, the reader and (when not found) the study's model card."""

    choose_model = Signal()

    def __init__(self, model_card: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("readerStartPage")
        self.study_combo = QComboBox(self)
        self.study_combo.setObjectName("studyCombo")
        self.reader_combo = QComboBox(self)
        self.reader_combo.setObjectName("readerCombo")
        self.start_info = QLabel("", self)
        self.start_info.setObjectName("startInfo")
        self.start_info.setWordWrap(True)
        self.model_edit = QLineEdit(model_card or "", self)
        self.model_edit.setObjectName("modelCardEdit")
        self.model_edit.setPlaceholderText("found automatically when known")
        model_row = path_row(self, self.model_edit, lambda: self.choose_model.emit())
        self.start_button = QPushButton("Start reading", self)
        self.start_button.setObjectName("startButton")
        self.start_button.setEnabled(False)
        self.start_status = QLabel("", self)
        self.start_status.setObjectName("startStatus")
        self.start_status.setWordWrap(True)
        title = QLabel("<h2>Reader study</h2>", self)
        banner = QLabel(INTENDED_USE, self)
        banner.setObjectName("intendedUseBanner")
        form = QFormLayout()
        form.addRow("Study", self.study_combo)
        form.addRow("Reader", self.reader_combo)
        form.addRow("Study model card", model_row)
        box = QVBoxLayout()
        box.addWidget(title)
        box.addWidget(banner)
        box.addLayout(form)
        box.addWidget(self.start_info)
        box.addWidget(self.start_button)
        box.addWidget(self.start_status)
        box.addStretch(1)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(box, 2)
        outer.addStretch(1)


class ImagePanel(QWidget):
    """The case image with the shared view tools; covered while the reading is paused, or
    by what went wrong (with Try again) when the case's image cannot be loaded."""

    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = ImageView(self)
        self.paused_label = QLabel("Paused — press P or Resume to continue", self)
        self.paused_label.setObjectName("pausedLabel")
        self.paused_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.unavailable = QWidget(self)
        self.unavailable_label = QLabel("", self.unavailable)
        self.unavailable_label.setWordWrap(True)
        self.unavailable_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        retry = QPushButton("Try again", self.unavailable)
        retry.clicked.connect(self.retry_requested)
        box = QVBoxLayout(self.unavailable)
        box.addStretch(1)
        box.addWidget(self.unavailable_label)
        box.addWidget(retry, 0, Qt.AlignmentFlag.AlignHCenter)
        box.addStretch(1)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.paused_label)
        self.stack.addWidget(self.unavailable)
        self.tools = ViewToolBar(self.view, parent=self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tools)
        layout.addWidget(self.stack, 1)

    def set_paused(self, paused: bool) -> None:
        self.stack.setCurrentWidget(self.paused_label if paused else self.view)

    def set_unavailable(self, message: str | None) -> None:
        """Cover the image with ``message`` and Try again (None: show the image)."""
        self.unavailable_label.setText(message or "")
        self.stack.setCurrentWidget(self.unavailable if message else self.view)


def _rating(value: int | None, unit: str = "") -> str:
    return "not set" if value is None else f"{value}{unit}"


def ga_text(weeks: float) -> str:
    """Gestational age as scanners print it: 20.5 -> "20w4d"."""
    whole = int(weeks)
    days = round((weeks - whole) * 7)
    if days == 7:
        whole, days = whole + 1, 0
    return f"{whole}w{days}d"


class CaseHeader(QWidget):
    """Intended use, study and case, progress, the condition and the locked unaided answer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.banner = QLabel(INTENDED_USE, self)
        self.banner.setObjectName("intendedUseBanner")
        self.banner.setWordWrap(True)
        self.header = QLabel("", self)
        self.header.setObjectName("readingHeader")
        self.header.setWordWrap(True)
        self.progress = QProgressBar(self)  # thin: the header says "step n of m"
        self.progress.setObjectName("readingProgress")
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(6)
        self.condition_label = QLabel("", self)
        self.condition_label.setObjectName("conditionLabel")
        self.locked_label = QLabel("", self)
        self.locked_label.setObjectName("lockedUnaided")
        self.locked_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        for w in (self.banner, self.header, self.progress, self.condition_label):
            layout.addWidget(w)
        layout.addWidget(self.locked_label)

    def show_step(self, step: Step, study: Study, reader: str) -> None:
        ga = step.case.ga_weeks
        self.header.setText(
            f"<b>{study.name}</b> · {reader} · case {step.case.pseudonym} "
            f"({step.position + 1} of {study.n_cases}) · step {step.index + 1} of {step.total}"
            + (f" · <b>GA {ga_text(ga)}</b>" if ga is not None else "")
        )
        self.header.setToolTip(f"Study {study.name}, reader {reader}")
        self.progress.setRange(0, step.total)
        self.progress.setValue(step.index)
        self.progress.setFormat(f"step {step.index + 1} of {step.total}")
        aided = step.condition == "aided"
        u = step.unaided
        locked = aided and u is not None
        self.condition_label.setText(
            "<b>Aided read</b>: the AI is shown below" if aided else "<b>Unaided read</b>: no AI"
        )
        self.condition_label.setVisible(not locked)
        self.locked_label.setText(
            f"<b>Aided read</b> (AI below). Your unaided answer (locked): <b>{u.label}</b>, "
            f"confidence {_rating(u.confidence)}, anomaly {_rating(u.anomaly_prob, ' %')}"
            if aided and u is not None
            else ""
        )
        self.locked_label.setVisible(locked)


class DecisionPanel(QGroupBox):
    """Large label buttons (keys 1-9), confidence and any-anomaly sliders, a comment,
    Submit and Pause. Shows the state's :class:`Decision`; the reader's input goes to it."""

    submit_requested = Signal()

    def __init__(self, state: ReadingState, parent: QWidget | None = None) -> None:
        super().__init__("Your decision", parent)
        self.state = state
        self.label_box = QVBoxLayout()
        self.label_box.setSpacing(3)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: list[QPushButton] = []
        self.confidence = QSlider(Qt.Orientation.Horizontal, self)
        self.confidence.setObjectName("confidenceSlider")
        self.confidence_value = QLabel("", self)
        self.anomaly = QSlider(Qt.Orientation.Horizontal, self)
        self.anomaly.setObjectName("anomalySlider")
        self.anomaly.setRange(0, 100)
        self.anomaly.setToolTip("Your probability that the fetus has any CNS anomaly")
        self.anomaly_value = QLabel("", self)
        for s in (self.confidence, self.anomaly):
            # Tab reaches the sliders and the arrow keys move them
            s.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.comment = QLineEdit(self)
        self.comment.setObjectName("commentEdit")
        self.comment.setPlaceholderText("Comment (optional)")
        self.submit_button = QPushButton("Submit (Enter)", self)
        self.submit_button.setObjectName("submitButton")
        self.submit_button.setMinimumHeight(34)
        self.pause_button = QPushButton("Pause (P)", self)
        self.pause_button.setObjectName("pauseButton")
        self.pause_button.setCheckable(True)
        sliders = QGridLayout()
        for row, (name, slider, value) in enumerate(
            (
                ("Confidence", self.confidence, self.confidence_value),
                ("Any anomaly", self.anomaly, self.anomaly_value),
            )
        ):
            sliders.addWidget(QLabel(name, self), row, 0)
            sliders.addWidget(slider, row, 1)
            sliders.addWidget(value, row, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(self.label_box)
        layout.addLayout(sliders)
        layout.addWidget(self.comment)
        buttons = QHBoxLayout()
        buttons.addWidget(self.submit_button, 1)
        buttons.addWidget(self.pause_button)
        layout.addLayout(buttons)

        self.submit_button.clicked.connect(self.submit_requested)
        self.comment.returnPressed.connect(self.submit_requested)
        self.group.idClicked.connect(self._label_clicked)
        for slider, setter in (
            (self.confidence, state.set_confidence),
            (self.anomaly, state.set_anomaly),
        ):
            slider.valueChanged.connect(setter)
            # a click on a slider not yet set sets it where it is
            slider.sliderPressed.connect(lambda s=slider, f=setter: f(s.value()))
        state.decision_changed.connect(self.show_decision)
        state.ready_changed.connect(self.set_ready)

    def set_labels(self, labels: Sequence[str]) -> None:
        for b in self.buttons:
            self.group.removeButton(b)
            self.label_box.removeWidget(b)
            b.deleteLater()
        self.buttons = []
        for i, name in enumerate(labels):
            b = QPushButton(self._label_text(i, name, False, False), self)
            b.setObjectName(f"labelButton_{name}")
            b.setProperty("role", "label")  # the theme styles the checked one
            b.setCheckable(True)
            b.setMinimumHeight(28)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setProperty("label", name)
            self.group.addButton(b, i)
            self.label_box.addWidget(b)
            self.buttons.append(b)

    def set_scale(self, lo: int, hi: int) -> None:
        self.confidence.blockSignals(True)
        self.confidence.setRange(lo, hi)
        self.confidence.blockSignals(False)

    def _label_clicked(self, index: int) -> None:
        if not self.state.choose(index):
            self.show_decision(self.state.decision)

    @staticmethod
    def _label_text(index: int, name: str, chosen: bool, reference: bool) -> str:
        text = f"{index + 1}   {name}"
        if reference:
            text += "   · your unaided answer"
        return f"{text}   ✓" if chosen else text

    def show_decision(self, d: Decision) -> None:
        reference = self.state.reference_label
        self.group.setExclusive(False)
        for i, b in enumerate(self.buttons):
            name = str(b.property("label"))
            chosen, ref = name == d.label, name == reference
            b.setChecked(chosen)
            b.setText(self._label_text(i, name, chosen, ref))
            if bool(b.property("reference")) != ref:
                b.setProperty("reference", ref)
                b.style().unpolish(b)
                b.style().polish(b)
        self.group.setExclusive(True)
        for slider, label, value, unit in (
            (self.confidence, self.confidence_value, d.confidence, ""),
            (self.anomaly, self.anomaly_value, d.anomaly, " %"),
        ):
            unset = value is None
            slider.blockSignals(True)
            # a rating not set waits in the middle, its handle hollow, its value "not set"
            mid = (slider.minimum() + slider.maximum()) // 2
            slider.setValue(mid if value is None else int(value))
            slider.blockSignals(False)
            label.setText("not set" if unset else f"{value}{unit}")
            if bool(slider.property("unset")) != unset:
                slider.setProperty("unset", unset)
                slider.style().unpolish(slider)
                slider.style().polish(slider)

    def set_ready(self, ready: bool) -> None:
        self.submit_button.setEnabled(ready)
        for b in self.buttons:
            b.setEnabled(ready)

    def clear_comment(self) -> None:
        self.comment.clear()


class AIRevealPanel(QGroupBox):
    """The AI of the aided step: probabilities, the model's identity, the heatmap layer's
    controls (shared with the viewer) and what the map can say; hidden while blinded."""

    retry_requested = Signal()

    def __init__(self, state: ReadingState, parent: QWidget | None = None) -> None:
        super().__init__("AI (shown after your unaided answer is saved)", parent)
        self.setObjectName("aiRevealGroup")
        self.bars = ProbabilityBars("", self, compact=True)
        self.controls = OverlayControls(
            state.overlay,
            colormaps=False,
            opacity_label="Heatmap opacity",
            parent=self,
            inline=True,
        )
        self.heat_note = QLabel("", self)
        self.heat_note.setObjectName("heatmapResolution")
        self.heat_note.setWordWrap(True)
        self.heat_note.setVisible(False)
        self.controls.form.insertRow(1, self.heat_note)
        self.retry = QPushButton("Show the AI again", self)
        self.retry.setVisible(False)
        self.retry.clicked.connect(self.retry_requested)
        # the domain guard's verdict, and the deliberate way past a withheld output, as in
        # the viewer's AI panel
        self.domain_label = QLabel("", self)
        self.domain_label.setObjectName("domainNote")
        self.domain_label.setWordWrap(True)
        self.domain_label.setVisible(False)
        self.reveal_button = QPushButton(SHOW_ANYWAY, self)
        self.reveal_button.setObjectName("revealButton")
        self.reveal_button.setVisible(False)
        self.reveal_button.clicked.connect(state.reveal)
        layout = QVBoxLayout(self)
        layout.setSpacing(4)
        layout.addWidget(self.domain_label)
        layout.addWidget(self.reveal_button)
        layout.addWidget(self.bars)
        layout.addWidget(self.controls)
        layout.addWidget(self.retry)
        self.setVisible(False)
        state.ai_changed.connect(self.show_view)

    def show_view(self, view: AIView) -> None:
        status = view.status
        self.setVisible(status in (AIStatus.SHOWN, AIStatus.FAILED, AIStatus.WITHHELD))
        self.retry.setVisible(status is AIStatus.FAILED)
        self.retry.setText(view.action or "Show the AI again")
        self.reveal_button.setVisible(status is AIStatus.WITHHELD)
        self.domain_label.setText(view.domain)
        self.domain_label.setVisible(bool(view.domain))
        self.domain_label.setProperty("outside", view.in_domain is False)
        self.domain_label.style().unpolish(self.domain_label)
        self.domain_label.style().polish(self.domain_label)
        self.bars.setVisible(view.shown)
        self.controls.setVisible(view.shown)
        if not view.shown:
            return
        self.setTitle(f"AI · {view.caption}" if view.caption else "AI")  # the model's identity
        if view.classes != self.bars.classes:
            self.bars.set_classes(view.classes)
        self.bars.set_values(view.probs)
        has_heat = view.heat_class is not None
        self.controls.overlay_check.setEnabled(has_heat)
        notes = list(view.notes)
        if view.heat_empty and view.top_label is not None:
            from fetal_viewer.core.cam.gradcam import empty_note

            notes.append(empty_note(view.top_label))
        self.heat_note.setText(" ".join(notes))
        self.heat_note.setVisible(bool(notes))


class DonePage(QWidget):
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("readerDonePage")
        self.label = QLabel("", self)
        self.label.setObjectName("doneLabel")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        close = QPushButton("Close", self)
        close.clicked.connect(self.closed)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.label)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignCenter)
        layout.addStretch(1)
