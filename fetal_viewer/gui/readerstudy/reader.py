"""Reading mode: one reader works through a study, case by case, under the core protocol.

Start page (:mod:`.start`): choose the study and the reader (the core picks the session/arm
the design allows and refuses a crossover arm 2 before the washout). Reading page (panels in
:mod:`.panels`): the viewer's :class:`ImageView` with the shared view tools, large label
buttons (keys 1-5), confidence and anomaly-probability sliders, Enter to submit. What is
on the page is the headless :class:`~fetal_viewer.core.viewer.reading.ReadingState`'s. After the unaided read is stored, the AI (probabilities and the
Grad-CAM heatmap) is asked of the core's blinded ``ReadingSession.get_ai`` and shown, then
the aided decision is taken. There is no back button: the position is the core's (first
step without a stored read), so closing or crashing resumes exactly there.

Every core call runs in one serial lane; the window moves on only when the submit has
returned (committed durably). A failed submit goes to the error sink and the decision stays
on screen to be submitted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.readerstudy.coordination import CaseImage
from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession, Step
from fetal_viewer.core.store import Read
from fetal_viewer.core.viewer.ai import AIStatus, AIView
from fetal_viewer.core.viewer.reading import ReadingState
from fetal_viewer.errors import FetalViewerError, ProtocolError
from fetal_viewer.gui.error_sink import ErrorSink
from fetal_viewer.gui.readerstudy.clock import ActiveClock
from fetal_viewer.gui.readerstudy.jobs import (
    Lane,
    StudyChoice,
    StudyModel,
    open_store_job,
    reader_case_image,
    submit_job,
)
from fetal_viewer.gui.readerstudy.panels import (
    AIRevealPanel,
    CaseHeader,
    DecisionPanel,
    DonePage,
    ImagePanel,
)
from fetal_viewer.gui.readerstudy.start import StartPageMixin
from fetal_viewer.gui.settings import app_settings
from fetal_viewer.gui.shortcuts import ShortcutsDialog
from fetal_viewer.gui.view_tools import READER_TOOLS, bind_view, view_commands
from fetal_viewer.gui.widgets import vertical_scroll

if TYPE_CHECKING:
    from fetal_viewer.core.store import Store

__all__ = ["ReaderWindow"]

_INPUT_EVENTS = {
    QEvent.Type.KeyPress,
    QEvent.Type.MouseButtonPress,
    QEvent.Type.MouseMove,
    QEvent.Type.Wheel,
}


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


class ReaderWindow(StartPageMixin):
    step_shown = Signal(object)  # Step or None (finished)
    ai_revealed = Signal(object)  # AIOutput
    read_saved = Signal(object)  # Read
    image_shown = Signal(str)  # case pseudonym
    # choices_loaded: the start page's (StartPageMixin)

    def __init__(
        self,
        db: str | Path | None = None,
        parent: QWidget | None = None,
        *,
        error_sink: ErrorSink | None = None,
        settings: QSettings | None = None,
        model_card: str | Path | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setObjectName("readerWindow")
        self.setWindowTitle(f"Reading — fetal-viewer — {INTENDED_USE}")
        self.db = db
        self.settings = settings if settings is not None else app_settings()
        self.sink = error_sink if error_sink is not None else ErrorSink(self)
        self._owns_sink = error_sink is None
        self.model_card = str(model_card) if model_card else None
        self.store_lane = Lane(self.sink.report, "readerStoreLane")
        self.image_lane = Lane(self.sink.report, "readerImageLane")
        self.model_lane = Lane(self.sink.report, "readerModelLane")
        self.clock = ActiveClock()
        self.store: Store | None = store
        self._owns_store = store is None
        self.choices: list[StudyChoice] = []
        self.session: ReadingSession | None = None
        self.provider: StudyModel | None = None
        self.state = ReadingState()
        self.acknowledged: list[Read] = []
        self._closed = False
        self._hint: str | None = None  # the status line's word on a submit that lacked something

        self.pages = QStackedWidget(self)
        self.setCentralWidget(self.pages)
        self._build_start_page()
        self._build_reading_page()
        self.done_page = DonePage(self)
        self.done_page.closed.connect(self.close)
        self.done_label = self.done_page.label
        self.pages.addWidget(self.done_page)
        self._build_shortcuts()
        self._connect_state()
        self._watcher = _InputWatcher(self)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self._watcher)
        from fetal_viewer.gui.app import size_to_screen

        size_to_screen(self, 0.9)  # when not maximized
        if self.store is None:
            self.start_status.setText("Opening the study database…")
            self.store_lane.run(
                open_store_job,
                db,
                db is None,  # a reader never makes a database: a mistyped path is an error
                context="Opening the study database",
                on_returned=self._on_store,
                on_errored=lambda exc: self.start_status.setText(
                    f"The study database could not be opened: "
                    f"{exc.what if isinstance(exc, FetalViewerError) else exc}"
                ),
            )
        else:
            self._on_store(self.store)

    # ----- the state, as tests and scripts read it ---------------------------------------
    @property
    def step(self) -> Step | None:
        return self.state.step

    @property
    def ai(self) -> AIOutput | None:
        return self.state.ai

    @property
    def case_image(self) -> CaseImage | None:
        return self.state.image

    @property
    def saving(self) -> bool:
        return self.state.saving

    @property
    def ready(self) -> bool:
        return self.state.ready

    @property
    def label_buttons(self) -> list[QPushButton]:
        return self.decision.buttons

    # ==================================================================================
    # pages
    # ==================================================================================
    def _build_reading_page(self) -> None:
        page = QWidget(self)
        page.setObjectName("readerReadingPage")
        self.image_panel = ImagePanel(page)
        self.image_panel.retry_requested.connect(self._retry_image)
        self.view = self.image_panel.view
        self.case_header = CaseHeader(page)
        self.progress = self.case_header.progress
        self.locked_label = self.case_header.locked_label
        self.ai_group = AIRevealPanel(self.state, page)
        self.ai_bars = self.ai_group.bars
        self.heat_note = self.ai_group.heat_note
        self.overlay_check = self.ai_group.controls.overlay_check
        self.retry_ai = self.ai_group.retry
        self.ai_group.retry_requested.connect(self._request_ai)
        self.decision = DecisionPanel(self.state, page)
        self.confidence = self.decision.confidence
        self.anomaly = self.decision.anomaly
        self.comment = self.decision.comment
        self.submit_button = self.decision.submit_button
        self.pause_button = self.decision.pause_button
        self.decision.submit_requested.connect(self.submit)
        self.pause_button.toggled.connect(self.set_paused)
        self.status = QLabel("", page)
        self.status.setObjectName("readingStatus")
        self.status.setWordWrap(True)

        right_w = QWidget(page)
        right_w.setFixedWidth(380)
        right = QVBoxLayout(right_w)
        right.setContentsMargins(6, 0, 4, 0)
        right.setSpacing(6)
        right.addWidget(self.case_header)
        # the aided read shows the AI first, then asks: it sits above the decision
        right.addWidget(self.ai_group)
        right.addWidget(self.decision)
        right.addWidget(self.status)
        right.addStretch(1)
        # on short screens the column scrolls instead of squeezing its controls together
        scroll = vertical_scroll(page, right_w)
        scroll.setFixedWidth(right_w.width() + scroll.verticalScrollBar().sizeHint().width())
        self.right_scroll = scroll
        layout = QHBoxLayout(page)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.image_panel, 1)
        layout.addWidget(scroll)
        self.pages.addWidget(page)
        self.reading_page = page

    def _build_shortcuts(self) -> None:
        self._label_shortcuts: list[QShortcut] = []
        commands = view_commands(self.view)
        keys: list[tuple[str, object]] = [
            ("Return", self.submit),
            ("Enter", self.submit),
            ("Esc", self.view.setFocus),  # out of the comment: 1-9 choose labels again
            ("Ctrl+Q", self.close),  # as in the viewer; every stored read is kept
            ("P", self.pause_button.toggle),
            ("O", self.state.overlay.toggle),
            ("F1", self.show_shortcuts),
        ]
        for d in range(1, 10):
            keys.append((f"Ctrl+{d}", lambda d=d: self.state.rate("confidence", d)))
            keys.append((f"Alt+{d}", lambda d=d: self.state.rate("anomaly", d)))
        from fetal_viewer.gui.shortcuts import BY_NAME

        for name, _text, _tip in READER_TOOLS:
            keys += [(k, commands[name]) for k in BY_NAME[name].keys]
        for key, slot in keys:
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(slot)

    def show_shortcuts(self) -> ShortcutsDialog:
        from fetal_viewer.gui.shortcuts import READER_SHORTCUTS

        dialog = ShortcutsDialog(self, READER_SHORTCUTS)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _connect_state(self) -> None:
        state = self.state
        self._unbind_view = bind_view(self.view, state.overlay)
        state.image_changed.connect(self._on_image_changed)
        state.ai_changed.connect(self._on_ai_view)
        state.ready_changed.connect(self._on_ready)
        state.decision_changed.connect(self._clear_hint)

    def _set_labels(self, labels: Sequence[str]) -> None:
        self.decision.set_labels(labels)
        for sc in self._label_shortcuts:
            sc.setEnabled(False)
            sc.deleteLater()
        self._label_shortcuts = []
        for i in range(min(9, len(labels))):
            sc = QShortcut(QKeySequence(str(i + 1)), self)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(lambda i=i: self.choose_label(i))
            self._label_shortcuts.append(sc)

    def _on_session(self, session: ReadingSession) -> None:
        self.session = session
        study = session.study
        self.state.start(study)
        self._set_labels(study.labels)
        self.decision.set_scale(*study.confidence_scale)
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
    def _show_step(self, step: Step | None) -> None:
        self.clock.stop()
        session = self.session
        needs_image = self.state.show_step(step)
        if step is None or session is None:
            self._finish()
            self.step_shown.emit(None)
            return
        self.case_header.show_step(step, session.study, session.reader.pseudonym)
        self.decision.clear_comment()
        self.image_panel.set_unavailable(None)
        if needs_image:
            self._load_image()
        if step.condition == "aided":
            self._request_ai()
        self.step_shown.emit(step)

    def _load_image(self) -> None:
        step = self.state.step
        if step is None:
            return
        self.image_lane.run(
            reader_case_image,
            step.case.pseudonym,
            step.case.source_path,
            step.case.frame,
            context=f"Loading case {step.case.pseudonym}",
            on_returned=self._on_image,
            on_errored=self._on_image_failed,
        )

    def _on_image_failed(self, exc: BaseException) -> None:
        what = exc.message if isinstance(exc, FetalViewerError) else str(exc)
        self.image_panel.set_unavailable(what)

    def _retry_image(self) -> None:
        self.image_panel.set_unavailable(None)
        self._load_image()

    def _on_image(self, image: CaseImage) -> None:
        self.state.image_loaded(image)  # dropped when the reader has moved on

    def _on_image_changed(self, image: CaseImage | None) -> None:
        if image is None:
            self.view.set_frame(None)
            return
        self.view.set_calibration(image.spacing_mm)
        self.view.set_frame(image.frame)
        self.view.fit()
        self.image_shown.emit(image.pseudonym)

    def _request_ai(self) -> None:
        step, session = self.state.step, self.session
        if session is None or step is None:
            return
        self.state.ai_asked()
        pseudonym = step.case.pseudonym
        self.store_lane.run(
            session.get_ai,
            pseudonym,
            context="Showing the AI",
            on_returned=lambda out: self._on_ai(pseudonym, out),
            on_errored=lambda _exc: self.state.ai_failed(),
        )

    def _on_ai(self, pseudonym: str, out: AIOutput) -> None:
        if self.state.ai_arrived(pseudonym, out):
            self.ai_revealed.emit(out)

    def _on_ai_view(self, view: AIView) -> None:
        if view.status in (AIStatus.PENDING, AIStatus.FAILED):
            self.status.setText(view.message)
        elif view.status is AIStatus.SHOWN:
            self.status.setText("")

    def _on_ready(self, ready: bool) -> None:
        if ready and not self.clock.running:
            self.clock.start()

    def _clear_hint(self, *_args: object) -> None:
        if self._hint is not None and self.status.text() == self._hint:
            self.status.setText("")
        self._hint = None

    def choose_label(self, index: int) -> None:
        self.state.choose(index)

    def chosen_label(self) -> str | None:
        return self.state.decision.label

    def submit(self) -> None:
        """Store the decision on screen through the core; move on only once it is stored."""
        session, step = self.session, self.state.step
        if not self.ready or session is None or step is None:
            return
        sub = self.state.submission(self.state.overlay.settings.visible)
        if isinstance(sub, str):
            self._hint = sub  # what is missing; gone once the decision changes
            self.status.setText(sub)
            return
        self.state.set_saving(True)
        self.status.setText("Saving…")
        self.store_lane.run(
            submit_job,
            session,
            sub.label,
            sub.confidence,
            sub.anomaly,
            free_text=self.comment.text().strip() or None,
            active_ms=self.clock.elapsed_ms(),
            heatmap_visible=sub.heatmap_visible,
            context="Saving your answer",
            on_returned=self._on_saved,
            on_errored=self._on_save_failed,
        )

    def _on_saved(self, result: tuple[Read, Step | None]) -> None:
        read, step = result
        self.state.set_saving(False)
        self.acknowledged.append(read)
        self.status.setText(f"Saved ({read.condition} read of {self._case_name(read)}).")
        self.read_saved.emit(read)
        self._show_step(step)

    def _case_name(self, read: Read) -> str:
        step = self.state.step
        return step.case.pseudonym if step is not None else str(read.case_id)

    def _on_save_failed(self, exc: BaseException) -> None:
        self.status.setText(
            "<b>Your answer was NOT saved</b> (see the message). It is still on screen: "
            "press Enter to try again."
        )
        self.state.set_saving(False)
        session = self.session
        if isinstance(exc, ProtocolError) and "already stored" in exc.what and session:
            # another window or process stored this step: follow the core's position
            self.store_lane.run(
                session.begin, context="Reloading the session", on_returned=self._show_step
            )

    def set_paused(self, paused: bool) -> None:
        if paused:
            self.clock.pause()
        else:
            self.clock.resume()
        self.image_panel.set_paused(paused)
        self.pause_button.setText("Resume (P)" if paused else "Pause (P)")
        self.state.set_paused(paused)

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
            self._unbind_view()
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
