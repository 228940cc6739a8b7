"""The reading mode's start page: choose the study and the reader, find the study's model
card on this workstation, and open the reader's session (the core picks the session/arm the
design allows and refuses a crossover arm 2 before the washout)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QMainWindow, QStackedWidget

from fetal_viewer.core.readerstudy.protocol import ReaderProgress, ReadingSession
from fetal_viewer.errors import ModelLoadError
from fetal_viewer.gui.error_sink import ErrorSink
from fetal_viewer.gui.readerstudy.jobs import (
    Lane,
    StudyChoice,
    StudyModel,
    file_sha256,
    open_session_job,
    study_choices,
)
from fetal_viewer.gui.readerstudy.panels import StartPage

if TYPE_CHECKING:
    from fetal_viewer.core.store import Store

MODEL_SETTINGS = "readerstudy/models"  # QSettings group: model sha256 -> card path


def refill_studies(combo: QComboBox, names: list[str]) -> None:
    """Put ``names`` in a study box, keeping the chosen study when it is still there,
    without signalling a change of choice."""
    keep = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if keep in names:
        combo.setCurrentText(keep)
    combo.blockSignals(False)


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


class StartPageMixin(QMainWindow):
    choices_loaded = Signal()

    # made or defined by ReaderWindow
    settings: QSettings
    sink: ErrorSink
    model_card: str | None
    store: Store | None
    store_lane: Lane
    model_lane: Lane
    choices: list[StudyChoice]
    provider: StudyModel | None
    pages: QStackedWidget
    _set_labels: Callable[[Sequence[str]], None]
    _on_session: Callable[[ReadingSession], None]

    def _build_start_page(self) -> None:
        page = StartPage(self.model_card, self)
        self.start_page = page
        self.study_combo = page.study_combo
        self.reader_combo = page.reader_combo
        self.start_info = page.start_info
        self.model_edit = page.model_edit
        self.start_button = page.start_button
        self.start_status = page.start_status
        page.choose_model.connect(self._choose_model)
        self.study_combo.currentIndexChanged.connect(self._on_study_chosen)
        self.reader_combo.currentIndexChanged.connect(self._update_start_info)
        self.start_button.clicked.connect(lambda: self.start_reading())
        self.pages.addWidget(page)

    def _on_store(self, store: Store) -> None:
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
        refill_studies(self.study_combo, [c.name for c in choices])
        self.start_status.setText("" if choices else "This database has no studies yet.")
        self._on_study_chosen()
        self.choices_loaded.emit()

    def _choice(self) -> StudyChoice | None:
        name = self.study_combo.currentText()
        return next((c for c in self.choices if c.name == name), None)

    def _reader_progress(self) -> ReaderProgress | None:
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
        if choice is None or not self.reader_combo.currentText() or self.store is None:
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
