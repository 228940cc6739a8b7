"""Reading mode: one reader works through a study, case by case, under the core protocol.

Start page: choose the study and the reader (the core picks the session/arm the design
allows and refuses a crossover arm 2 before the washout). Reading page: the viewer's
:class:`ImageView`, large label buttons (keys 1-5), confidence and anomaly-probability
sliders, Enter to submit. After the unaided read is stored, the AI (probabilities and the
Grad-CAM heatmap) is asked of the core's blinded ``ReadingSession.get_ai`` and shown, then
the aided decision is taken. There is no back button: the position is the core's (first
step without a stored read), so closing or crashing resumes exactly there.

Every core call runs in one serial lane; the window moves on only when the submit has
returned (committed durably). A failed submit goes to the error sink and the decision stays
on screen to be submitted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.cam.gradcam import empty_note, is_empty, resolution_note
from fetal_viewer.core.cam.overlay import HEATMAP_FLOOR, echo_mask
from fetal_viewer.errors import ModelLoadError, ProtocolError
from fetal_viewer.gui.ai_panel import ProbabilityBars
from fetal_viewer.gui.error_sink import ErrorSink
from fetal_viewer.gui.image_view import ImageView
from fetal_viewer.gui.imaging import heatmap_rgba
from fetal_viewer.gui.readerstudy.clock import ActiveClock
from fetal_viewer.gui.readerstudy.jobs import (
    CaseImage,
    Lane,
    StudyChoice,
    StudyModel,
    file_sha256,
    load_case_image,
    open_session_job,
    open_store_job,
    study_choices,
    submit_job,
)

MODEL_SETTINGS = "readerstudy/models"  # QSettings group: model sha256 -> card path
_INPUT_EVENTS = {
    QEvent.Type.KeyPress,
    QEvent.Type.MouseButtonPress,
    QEvent.Type.MouseMove,
    QEvent.Type.Wheel,
}


def remember_model(settings: QSettings, card_path: str | Path) -> str:
    """Remember where the card of a model sha256 lives (the coordinator does it)."""
    sha = file_sha256(card_path)
    settings.setValue(f"{MODEL_SETTINGS}/{sha}", str(Path(card_path).resolve()))
    return sha


def find_model_card(
    settings: QSettings, sha: str, extra: Sequence[str | Path | None] = ()
) -> Path | None:
    """A card file whose sha256 is ``sha``: given ones, remembered ones, the demo model."""
    from fetal_viewer.resources import DEMO_MODEL_CARD

    candidates = [
        *extra,
        settings.value(f"{MODEL_SETTINGS}/{sha}"),
        settings.value("model/card"),
        DEMO_MODEL_CARD,
    ]
    for c in candidates:
        if c and Path(str(c)).is_file() and file_sha256(str(c)) == sha:
            return Path(str(c))
    return None


class _InputWatcher(QObject):
    """Feeds every key/mouse event in the reader's window to the active clock."""

    def __init__(self, window: ReaderWindow) -> None:
        super().__init__(window)
        self.reader = window

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if (
            event.type() in _INPUT_EVENTS
            and isinstance(obj, QWidget)
            and obj.window() is self.reader
        ):
            self.reader.clock.touch()
        return False


class ReaderWindow(QMainWindow):
    step_shown = Signal(object)  # Step or None (finished)
    ai_revealed = Signal(object)  # AIOutput
    read_saved = Signal(object)  # Read
    image_shown = Signal(str)  # case pseudonym
    choices_loaded = Signal()

    def __init__(
        self,
        db: str | Path | None = None,
        parent: QWidget | None = None,
        *,
        error_sink: ErrorSink | None = None,
        settings: QSettings | None = None,
        model_card: str | Path | None = None,
        store: Any = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setObjectName("readerWindow")
        self.setWindowTitle(f"Reading — fetal-viewer — {INTENDED_USE}")
        self.db = db
        self.settings = settings if settings is not None else QSettings()
        self.sink = error_sink if error_sink is not None else ErrorSink(self)
        self._owns_sink = error_sink is None
        self.model_card = str(model_card) if model_card else None
        self.store_lane = Lane(self.sink.report, "readerStoreLane")
        self.image_lane = Lane(self.sink.report, "readerImageLane")
        self.model_lane = Lane(self.sink.report, "readerModelLane")
        self.clock = ActiveClock()
        self.store: Any = store
        self._owns_store = store is None
        self.choices: list[StudyChoice] = []
        self.session: Any = None
        self.provider: StudyModel | None = None
        self.step: Any = None
        self.ai: Any = None
        self.case_image: CaseImage | None = None
        self.saving = False
        self.acknowledged: list[Any] = []
        self._closed = False

        self.pages = QStackedWidget(self)
        self.setCentralWidget(self.pages)
        self._build_start_page()
        self._build_reading_page()
        self._build_done_page()
        self._build_shortcuts()
        self._watcher = _InputWatcher(self)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self._watcher)
        self.resize(1280, 820)
        if self.store is None:
            self.start_status.setText("Opening the study database…")
            self.store_lane.run(
                open_store_job, db, context="Opening the study database", on_returned=self._on_store
            )
        else:
            self._on_store(self.store)

    # ==================================================================================
    # pages
    # ==================================================================================
    def _build_start_page(self) -> None:
        page = QWidget(self)
        page.setObjectName("readerStartPage")
        self.study_combo = QComboBox(page)
        self.study_combo.setObjectName("studyCombo")
        self.reader_combo = QComboBox(page)
        self.reader_combo.setObjectName("readerCombo")
        self.start_info = QLabel("", page)
        self.start_info.setObjectName("startInfo")
        self.start_info.setWordWrap(True)
        self.model_edit = QLineEdit(self.model_card or "", page)
        self.model_edit.setObjectName("modelCardEdit")
        self.model_edit.setPlaceholderText("found automatically when known")
        choose = QToolButton(page)
        choose.setText("…")
        choose.clicked.connect(self._choose_model)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(choose)
        self.start_button = QPushButton("Start reading", page)
        self.start_button.setObjectName("startButton")
        self.start_button.setEnabled(False)
        self.start_status = QLabel("", page)
        self.start_status.setObjectName("startStatus")
        self.start_status.setWordWrap(True)
        title = QLabel("<h2>Reader study</h2>", page)
        banner = QLabel(INTENDED_USE, page)
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
        outer = QHBoxLayout(page)
        outer.addStretch(1)
        outer.addLayout(box, 2)
        outer.addStretch(1)
        self.study_combo.currentIndexChanged.connect(self._on_study_chosen)
        self.reader_combo.currentIndexChanged.connect(self._update_start_info)
        self.start_button.clicked.connect(self.start_reading)
        self.pages.addWidget(page)
        self.start_page = page

    def _build_reading_page(self) -> None:
        page = QWidget(self)
        page.setObjectName("readerReadingPage")
        self.view = ImageView(page)
        self.paused_label = QLabel("Paused — press P or Resume to continue", page)
        self.paused_label.setObjectName("pausedLabel")
        self.paused_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_stack = QStackedWidget(page)
        self.image_stack.addWidget(self.view)
        self.image_stack.addWidget(self.paused_label)
        tools = QHBoxLayout()
        for text, tip, slot in (
            ("Fit", "Fit to window (F)", self.view.fit),
            ("+", "Zoom in (+)", self.view.zoom_in),
            ("−", "Zoom out (-)", self.view.zoom_out),
            ("⟳", "Rotate 90° (R)", self.view.rotate_right),
            ("⇋", "Flip horizontally (H)", self.view.toggle_flip_h),
            ("Reset", "Reset view (Backspace)", self.view.reset_view),
        ):
            b = QToolButton(page)
            b.setText(text)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(slot)
            tools.addWidget(b)
        tools.addStretch(1)
        left = QVBoxLayout()
        left.addLayout(tools)
        left.addWidget(self.image_stack, 1)

        # right: header, decision, AI
        self.header = QLabel("", page)
        self.header.setObjectName("readingHeader")
        self.condition_label = QLabel("", page)
        self.condition_label.setObjectName("conditionLabel")
        self.progress = QProgressBar(page)
        self.progress.setObjectName("readingProgress")
        banner = QLabel(INTENDED_USE, page)
        banner.setObjectName("intendedUseBanner")
        banner.setWordWrap(True)
        self.locked_label = QLabel("", page)
        self.locked_label.setObjectName("lockedUnaided")
        self.locked_label.setWordWrap(True)

        decision = QGroupBox("Your decision", page)
        self.label_box = QVBoxLayout()
        self.label_group = QButtonGroup(self)
        self.label_group.setExclusive(True)
        self.label_buttons: list[QPushButton] = []
        self.confidence = QSlider(Qt.Orientation.Horizontal, page)
        self.confidence.setObjectName("confidenceSlider")
        self.confidence_value = QLabel("", page)
        self.anomaly = QSlider(Qt.Orientation.Horizontal, page)
        self.anomaly.setObjectName("anomalySlider")
        self.anomaly.setRange(0, 100)
        self.anomaly_value = QLabel("", page)
        for s in (self.confidence, self.anomaly):
            s.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.confidence.valueChanged.connect(lambda v: self.confidence_value.setText(f"{v}"))
        self.anomaly.valueChanged.connect(lambda v: self.anomaly_value.setText(f"{v} %"))
        self.comment = QLineEdit(page)
        self.comment.setObjectName("commentEdit")
        self.comment.setPlaceholderText("Comment (optional)")
        self.submit_button = QPushButton("Submit (Enter)", page)
        self.submit_button.setObjectName("submitButton")
        self.submit_button.setMinimumHeight(40)
        self.submit_button.clicked.connect(self.submit)
        self.comment.returnPressed.connect(self.submit)
        self.pause_button = QPushButton("Pause (P)", page)
        self.pause_button.setObjectName("pauseButton")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self.set_paused)
        sliders = QGridLayout()
        for row, (name, slider, value) in enumerate(
            (
                ("Confidence", self.confidence, self.confidence_value),
                ("Any anomaly", self.anomaly, self.anomaly_value),
            )
        ):
            sliders.addWidget(QLabel(name, page), row, 0)
            sliders.addWidget(slider, row, 1)
            sliders.addWidget(value, row, 2)
        self.anomaly.setToolTip("Your probability that the fetus has any CNS anomaly")
        dl = QVBoxLayout(decision)
        dl.addLayout(self.label_box)
        dl.addLayout(sliders)
        dl.addWidget(self.comment)
        buttons = QHBoxLayout()
        buttons.addWidget(self.submit_button, 1)
        buttons.addWidget(self.pause_button)
        dl.addLayout(buttons)

        self.ai_group = QGroupBox("AI (shown after your unaided answer is saved)", page)
        self.ai_group.setObjectName("aiRevealGroup")
        self.ai_bars = ProbabilityBars("Class probabilities", self.ai_group)
        self.ai_model_label = QLabel("", self.ai_group)
        self.ai_model_label.setObjectName("aiModelLabel")
        self.ai_model_label.setWordWrap(True)
        self.overlay_check = QCheckBox("Heatmap overlay (O)", self.ai_group)
        self.overlay_check.setObjectName("overlayCheck")
        self.overlay_check.setChecked(True)
        self.overlay_check.toggled.connect(self.view.set_overlay_visible)
        self.heat_note = QLabel("", self.ai_group)
        self.heat_note.setObjectName("heatmapResolution")
        self.heat_note.setWordWrap(True)
        self.heat_note.setVisible(False)
        self.opacity = QSlider(Qt.Orientation.Horizontal, self.ai_group)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.opacity.valueChanged.connect(lambda v: self.view.set_overlay_opacity(v / 100))
        self.view.set_overlay_opacity(0.45)
        self.retry_ai = QPushButton("Show the AI again", self.ai_group)
        self.retry_ai.setVisible(False)
        self.retry_ai.clicked.connect(self._request_ai)
        al = QVBoxLayout(self.ai_group)
        al.addWidget(self.ai_model_label)
        al.addWidget(self.ai_bars)
        al.addWidget(self.overlay_check)
        al.addWidget(self.heat_note)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Heatmap opacity", self.ai_group))
        opacity_row.addWidget(self.opacity, 1)
        al.addLayout(opacity_row)
        al.addWidget(self.retry_ai)
        self.ai_group.setVisible(False)

        self.status = QLabel("", page)
        self.status.setObjectName("readingStatus")
        self.status.setWordWrap(True)
        right_w = QWidget(page)
        right_w.setFixedWidth(380)
        right = QVBoxLayout(right_w)
        right.addWidget(banner)
        right.addWidget(self.header)
        right.addWidget(self.progress)
        right.addWidget(self.condition_label)
        right.addWidget(self.locked_label)
        # the aided read shows the AI first, then asks: it sits above the decision
        right.addWidget(self.ai_group)
        right.addWidget(decision)
        right.addWidget(self.status)
        right.addStretch(1)
        # on short screens the column scrolls instead of squeezing its controls together
        scroll = QScrollArea(page)
        scroll.setWidget(right_w)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedWidth(right_w.width() + scroll.verticalScrollBar().sizeHint().width())
        layout = QHBoxLayout(page)
        layout.addLayout(left, 1)
        layout.addWidget(scroll)
        self.pages.addWidget(page)
        self.reading_page = page

    def _build_done_page(self) -> None:
        page = QWidget(self)
        page.setObjectName("readerDonePage")
        self.done_label = QLabel("", page)
        self.done_label.setObjectName("doneLabel")
        self.done_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.done_label.setWordWrap(True)
        close = QPushButton("Close", page)
        close.clicked.connect(self.close)
        layout = QVBoxLayout(page)
        layout.addStretch(1)
        layout.addWidget(self.done_label)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignCenter)
        layout.addStretch(1)
        self.pages.addWidget(page)
        self.done_page = page

    def _build_shortcuts(self) -> None:
        self._label_shortcuts: list[QShortcut] = []
        for key, slot in (
            ("Return", self.submit),
            ("Enter", self.submit),
            ("P", lambda: self.pause_button.toggle()),
            ("O", lambda: self.overlay_check.toggle()),
            ("F", self.view.fit),
            ("+", self.view.zoom_in),
            ("-", self.view.zoom_out),
            ("R", self.view.rotate_right),
            ("H", self.view.toggle_flip_h),
            ("Backspace", self.view.reset_view),
        ):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(slot)

    def _set_labels(self, labels: Sequence[str]) -> None:
        for b in self.label_buttons:
            self.label_group.removeButton(b)
            self.label_box.removeWidget(b)
            b.deleteLater()
        for sc in self._label_shortcuts:
            sc.setEnabled(False)
            sc.deleteLater()
        self.label_buttons, self._label_shortcuts = [], []
        for i, name in enumerate(labels):
            b = QPushButton(f"{i + 1}   {name}", self.reading_page)
            b.setObjectName(f"labelButton_{name}")
            b.setCheckable(True)
            b.setMinimumHeight(32)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setProperty("label", name)
            self.label_group.addButton(b, i)
            self.label_box.addWidget(b)
            self.label_buttons.append(b)
            if i < 9:
                sc = QShortcut(QKeySequence(str(i + 1)), self)
                sc.setContext(Qt.ShortcutContext.WindowShortcut)
                sc.activated.connect(lambda i=i: self.choose_label(i))
                self._label_shortcuts.append(sc)

    # ==================================================================================
    # start page
    # ==================================================================================
    def _on_store(self, store: Any) -> None:
        self.store = store
        self.refresh_choices()

    def refresh_choices(self) -> None:
        if self.store is None:
            return
        self.store_lane.run(
            study_choices, self.store, context="Listing studies", on_returned=self._on_choices
        )

    def _on_choices(self, choices: list[StudyChoice]) -> None:
        self.choices = choices
        keep = self.study_combo.currentText()
        self.study_combo.blockSignals(True)
        self.study_combo.clear()
        self.study_combo.addItems([c.name for c in choices])
        if keep in [c.name for c in choices]:
            self.study_combo.setCurrentText(keep)
        self.study_combo.blockSignals(False)
        self.start_status.setText("" if choices else "This database has no studies yet.")
        self._on_study_chosen()
        self.choices_loaded.emit()

    def _choice(self) -> StudyChoice | None:
        name = self.study_combo.currentText()
        return next((c for c in self.choices if c.name == name), None)

    def _reader_progress(self) -> Any:
        choice = self._choice()
        if choice is None:
            return None
        return next(
            (r for r in choice.readers if r.reader == self.reader_combo.currentText()), None
        )

    def _on_study_chosen(self, *_: object) -> None:
        choice = self._choice()
        keep = self.reader_combo.currentText()
        self.reader_combo.blockSignals(True)
        self.reader_combo.clear()
        if choice is not None:
            self.reader_combo.addItems([r.reader for r in choice.readers])
            if keep:
                self.reader_combo.setCurrentText(keep)
        self.reader_combo.blockSignals(False)
        self._update_start_info()

    def _update_start_info(self, *_: object) -> None:
        choice, prog = self._choice(), self._reader_progress()
        ok = choice is not None and prog is not None and not prog.finished
        text = ""
        if choice is not None:
            text = f"Design: <b>{choice.design}</b> · {choice.n_cases} cases"
            if not choice.readers:
                text += "<br>No reader is enrolled yet (the coordinator adds readers)."
        if prog is not None:
            text += f"<br>Read so far: {prog.done} of {prog.total}"
            if choice is not None and choice.design == "crossover":
                text += f" · session {prog.arm} of 2"
            if prog.finished:
                text += "<br><b>You have finished this study.</b>"
            at = prog.next_session_at
            if at is not None and at > datetime.now(UTC):
                text += f"<br>Session 2 opens after the washout, on {at:%Y-%m-%d %H:%M} UTC."
                ok = False
        self.start_info.setText(text)
        self.start_button.setEnabled(ok)

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Study model card", "", "Model card (*.json);;All files (*)"
        )
        if path:
            self.model_edit.setText(path)

    def _make_provider(self, choice: StudyChoice) -> StudyModel | None:
        if not choice.model_sha256:
            return None
        given = self.model_edit.text().strip() or None
        card = find_model_card(self.settings, choice.model_sha256, [given, self.model_card])
        if card is None:
            raise ModelLoadError(
                "The study's model card was not found on this workstation.",
                why=f"The study uses the model with card sha256 {choice.model_sha256[:12]}…; "
                "no known card file has that checksum.",
                fix="Choose the study's card.json in 'Study model card' (the coordinator "
                "has it), then start again.",
            )
        return StudyModel(card, choice.model_sha256)

    def start_reading(self, study: str | None = None, reader: str | None = None) -> None:
        """Open the session of ``reader`` in ``study`` (default: the chosen ones)."""
        if study:
            self.study_combo.setCurrentText(study)
        if reader:
            self.reader_combo.setCurrentText(reader)
        choice = self._choice()
        if choice is None or not self.reader_combo.currentText():
            return
        try:
            self.provider = self._make_provider(choice)
        except Exception as exc:
            self.sink.report(exc, "Starting the reading session")
            return
        if self.provider is not None:
            self.model_lane.run(self.provider.ensure_loaded, context="Loading the study's model")
        self.start_button.setEnabled(False)
        self.start_status.setText("Opening your reading session…")
        self._set_labels(())
        self.store_lane.run(
            open_session_job,
            self.store,
            choice.name,
            self.reader_combo.currentText(),
            self.provider,
            context="Opening the reading session",
            on_returned=self._on_session,
            on_errored=lambda _e: self._update_start_info(),
        )

    def _on_session(self, session: Any) -> None:
        self.session = session
        study = session.study
        self._set_labels(study.labels)
        lo, hi = study.confidence_scale
        self.confidence.setRange(lo, hi)
        arm = f" · session {session.arm} of 2" if study.design == "crossover" else ""
        self.setWindowTitle(
            f"Reading {study.name} as {session.reader.pseudonym}{arm} — {INTENDED_USE}"
        )
        self.pages.setCurrentWidget(self.reading_page)
        self.store_lane.run(
            session.begin, context="Resuming the reading session", on_returned=self._show_step
        )

    # ==================================================================================
    # reading
    # ==================================================================================
    def _show_step(self, step: Any) -> None:
        self.clock.stop()
        if step is None:
            self.step = None
            self._finish()
            self.step_shown.emit(None)
            return
        same_case = self.step is not None and self.step.case.case_id == step.case.case_id
        self.step = step
        self.ai = None
        self.ai_group.setVisible(False)
        self.retry_ai.setVisible(False)
        self.view.set_overlay(None)
        study = self.session.study
        self.header.setText(
            f"<b>{study.name}</b> · reader {self.session.reader.pseudonym}<br>"
            f"Case {step.case.pseudonym} · {step.position + 1} of {study.n_cases}"
        )
        self.progress.setRange(0, step.total)
        self.progress.setValue(step.index)
        self.progress.setFormat(f"step {step.index + 1} of {step.total}")
        aided = step.condition == "aided"
        self.condition_label.setText(
            "<b>Aided read</b>: the AI is shown below" if aided else "<b>Unaided read</b>: no AI"
        )
        self.comment.clear()
        lo, hi = study.confidence_scale
        if aided and step.unaided is not None:
            u = step.unaided
            self.locked_label.setText(
                f"Your unaided answer (locked): <b>{u.label}</b>, confidence {u.confidence}, "
                f"anomaly {u.anomaly_prob} %"
            )
            self._set_decision(u.label, u.confidence, u.anomaly_prob)
        else:
            self.locked_label.setText("")
            self._set_decision(None, (lo + hi) // 2, 50)
        if not same_case or self.case_image is None:
            self.case_image = None
            self.view.set_frame(None)
            self.image_lane.run(
                load_case_image,
                step.case.pseudonym,
                step.case.source_path,
                step.case.frame,
                context=f"Loading case {step.case.pseudonym}",
                on_returned=self._on_image,
            )
        if aided:
            self._request_ai()
        self._update_ready()
        self.step_shown.emit(step)

    def _set_decision(self, label: str | None, confidence: int, anomaly: int) -> None:
        self.label_group.setExclusive(False)
        for b in self.label_buttons:
            b.setChecked(b.property("label") == label)
        self.label_group.setExclusive(True)
        self.confidence.setValue(int(confidence))
        self.anomaly.setValue(int(anomaly))
        self.confidence_value.setText(str(self.confidence.value()))
        self.anomaly_value.setText(f"{self.anomaly.value()} %")

    def _on_image(self, image: CaseImage) -> None:
        if self.step is None or image.pseudonym != self.step.case.pseudonym:
            return  # a stale load
        self.case_image = image
        self.view.set_calibration(image.spacing_mm)
        self.view.set_frame(image.frame)
        self.view.fit()
        self._update_ready()
        self.image_shown.emit(image.pseudonym)

    def _request_ai(self) -> None:
        if self.session is None or self.step is None:
            return
        self.retry_ai.setVisible(False)
        self.status.setText("Asking the AI…")
        pseudonym = self.step.case.pseudonym
        self.store_lane.run(
            self.session.get_ai,
            pseudonym,
            context="Showing the AI",
            on_returned=lambda out: self._on_ai(pseudonym, out),
            on_errored=self._on_ai_failed,
        )

    def _on_ai(self, pseudonym: str, out: Any) -> None:
        if self.step is None or self.step.case.pseudonym != pseudonym:
            return
        self.ai = out
        classes = list(out.probabilities)
        self.ai_bars.set_classes(classes)
        self.ai_bars.set_values(np.array([out.probabilities[c] for c in classes]))
        self.ai_model_label.setText(f"Model card sha256 {out.model_sha[:12]}… · {INTENDED_USE}")
        self.ai_group.setTitle("AI")
        self.ai_group.setVisible(True)
        if out.heatmap is not None:
            frame = self.view.frame
            # colour only where there is echo, as the viewer does
            mask = echo_mask(frame) if frame is not None else None
            self.view.set_overlay(heatmap_rgba(np.asarray(out.heatmap), "jet", HEATMAP_FLOOR, mask))
            self.view.set_overlay_visible(self.overlay_check.isChecked())
        self.overlay_check.setEnabled(out.heatmap is not None)
        shows_note = out.heatmap is not None and bool(out.input_size)
        note = resolution_note(out.input_size) if shows_note else ""
        if out.heatmap is not None and is_empty(out.heatmap):
            note += " " + empty_note(out.top_label)
        self.heat_note.setText(note.strip())
        self.heat_note.setVisible(bool(note))
        self.status.setText("")
        self._update_ready()
        self.ai_revealed.emit(out)

    def _on_ai_failed(self, _exc: BaseException) -> None:
        self.status.setText("The AI could not be shown; the aided read needs it.")
        self.ai_group.setVisible(True)
        self.retry_ai.setVisible(True)

    @property
    def ready(self) -> bool:
        return (
            self.step is not None
            and self.case_image is not None
            and not self.saving
            and not self.pause_button.isChecked()
            and (self.step.condition == "unaided" or self.ai is not None)
        )

    def _update_ready(self) -> None:
        ready = self.ready
        self.submit_button.setEnabled(ready)
        for b in self.label_buttons:
            b.setEnabled(ready)
        if ready and not self.clock.running:
            self.clock.start()

    def choose_label(self, index: int) -> None:
        if 0 <= index < len(self.label_buttons) and self.ready:
            self.label_buttons[index].setChecked(True)

    def chosen_label(self) -> str | None:
        b = self.label_group.checkedButton()
        return None if b is None else str(b.property("label"))

    def submit(self) -> None:
        """Store the decision on screen through the core; move on only once it is stored."""
        if not self.ready or self.session is None:
            return
        label = self.chosen_label()
        if label is None:
            self.status.setText(f"Choose a label first (keys 1–{len(self.label_buttons)}).")
            return
        aided = self.step.condition == "aided"
        self.saving = True
        self._update_ready()
        self.status.setText("Saving…")
        self.store_lane.run(
            submit_job,
            self.session,
            label,
            self.confidence.value(),
            self.anomaly.value(),
            free_text=self.comment.text().strip() or None,
            active_ms=self.clock.elapsed_ms(),
            heatmap_visible=self.overlay_check.isChecked() if aided else None,
            context="Saving your answer",
            on_returned=self._on_saved,
            on_errored=self._on_save_failed,
        )

    def _on_saved(self, result: tuple[Any, Any]) -> None:
        read, step = result
        self.saving = False
        self.acknowledged.append(read)
        self.status.setText(f"Saved ({read.condition} read of {self.step.case.pseudonym}).")
        self.read_saved.emit(read)
        self._show_step(step)

    def _on_save_failed(self, exc: BaseException) -> None:
        self.saving = False
        self.status.setText(
            "<b>Your answer was NOT saved</b> (see the message). It is still on screen: "
            "press Enter to try again."
        )
        if isinstance(exc, ProtocolError) and "already stored" in exc.what:
            # another window or process stored this step: follow the core's position
            self.store_lane.run(
                self.session.begin, context="Reloading the session", on_returned=self._show_step
            )
            return
        self._update_ready()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self.clock.pause()
            self.image_stack.setCurrentWidget(self.paused_label)
        else:
            self.clock.resume()
            self.image_stack.setCurrentWidget(self.view)
        self.pause_button.setText("Resume (P)" if paused else "Pause (P)")
        self._update_ready()

    def _finish(self) -> None:
        prog = self.session.progress() if self.session is not None else None
        text = "<h2>Session finished — thank you.</h2>"
        if prog is not None and not prog.finished and prog.next_session_at is not None:
            text += (
                f"<p>Your second session opens after the washout, on "
                f"{prog.next_session_at:%Y-%m-%d %H:%M} UTC.</p>"
            )
        elif prog is not None:
            text += f"<p>{prog.done} of {prog.total} reads stored.</p>"
        self.done_label.setText(text)
        self.pages.setCurrentWidget(self.done_page)

    # ==================================================================================
    # closing
    # ==================================================================================
    def changeEvent(self, event: QEvent) -> None:
        if (
            event.type() == QEvent.Type.WindowStateChange
            and self.isMinimized()
            and self.step is not None
            and not self.pause_button.isChecked()
        ):
            self.pause_button.setChecked(True)
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed:
            self._closed = True
            self.clock.stop()
            app = QApplication.instance()
            if app is not None:
                app.removeEventFilter(self._watcher)
            # a submit in flight finishes (it is durable or it failed); nothing is left half
            self.store_lane.shutdown()
            self.image_lane.shutdown()
            self.model_lane.shutdown()
            if self._owns_store and self.store is not None:
                self.store.close()
            if self._owns_sink:
                self.sink.close_all()
        super().closeEvent(event)
