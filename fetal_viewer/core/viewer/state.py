"""The viewer's state, headless: what is selected, which frame is wanted and which is on
screen, the AI request in flight and the result shown, the heatmap class and layer, the
study analysis job. The main window only displays it (napari's ``ViewerModel`` and
``QtViewer`` split); tests drive it without Qt.

Results arrive tagged with the request id and the (series, frame) they are for; anything
that is not the latest request for the frame now wanted is dropped as stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.cam.gradcam import FAST_METHOD, resolution_note
from fetal_viewer.core.io.study import Patient, Series, Study
from fetal_viewer.core.viewer.ai import SHOW_ANYWAY, AIStatus, AIView, domain_words, withheld_why
from fetal_viewer.core.viewer.events import Event
from fetal_viewer.core.viewer.overlay import HeatmapOverlay, OverlaySettings
from fetal_viewer.core.viewer.results import FrameResult, ModelInfo, SeriesKey, series_key

#: what the viewer needs to summarise a series: (probabilities (N, C), frame indices, and
#: which of them the domain guard lets through (all True without a guard))
SeriesProbs = Callable[[Series], tuple[NDArray[np.float32], list[int], NDArray[np.bool_]] | None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    patient: Patient | None = None
    study: Study | None = None
    series: Series | None = None


@dataclass(frozen=True)
class AIRequest:
    """The model output the viewer wants now: one frame of one series, by one CAM method."""

    series: Series
    index: int
    method: str


@dataclass(frozen=True)
class PatientSummary:
    """The patient-level bars: aggregated probabilities (None: nothing analysed) and a note."""

    probs: NDArray[np.float32] | None
    note: str


class ViewerState:
    """Everything the viewer shows, and the rules for changing it.

    Events: ``selection_changed(Selection)``, ``frame_shown(index)`` (a frame is on
    screen), ``ai_changed(AIView)``, ``model_changed(ModelInfo | None)``,
    ``heat_pick_changed(int | None)`` (the class picked for the heatmap, None = top class),
    ``method_changed(str)``, ``job_changed(int | None)``; ``overlay`` has its own events.
    """

    def __init__(self, overlay: OverlaySettings | None = None) -> None:
        self.patient: Patient | None = None
        self.study: Study | None = None
        self.series: Series | None = None
        self.index = 0  # the frame wanted (on screen once it is decoded)
        self.frame: NDArray[np.uint8] | None = None  # the frame on screen
        self.pending: tuple[SeriesKey, int] | None = None  # wanted, still decoding
        self.model: ModelInfo | None = None
        self.method = FAST_METHOD
        self.heat_pick: int | None = None
        self.result: FrameResult | None = None
        self.result_index: int | None = None
        self.ai_request = 0
        #: frames whose withheld output the reader chose to see (Show anyway)
        self.revealed: set[tuple[SeriesKey, int]] = set()
        self.job: int | None = None
        self.overlay = HeatmapOverlay(overlay)
        self.selection_changed: Event[Selection] = Event()
        self.frame_shown: Event[int] = Event()
        self.ai_changed: Event[AIView] = Event()
        self.model_changed: Event[ModelInfo | None] = Event()
        self.heat_pick_changed: Event[int | None] = Event()
        self.method_changed: Event[str] = Event()
        self.job_changed: Event[int | None] = Event()

    # ----- selection and frames ----------------------------------------------------------
    @property
    def selection(self) -> Selection:
        return Selection(self.patient, self.study, self.series)

    def select(self, patient: Patient, study: Study, series: Series) -> None:
        """Show ``series`` from its first frame. Another study starts with the top class's
        heatmap again: a class picked for one study says nothing about the next."""
        new_study = self.study is None or self.patient is not patient or self.study.uid != study.uid
        self.patient, self.study, self.series = patient, study, series
        self.index, self.pending = 0, None
        self.result = self.result_index = None
        self.overlay.clear()
        if new_study:
            self.set_heat_pick(None)
        self.selection_changed.emit(self.selection)
        self.ai_changed.emit(self.ai_view())

    def patient_grew(self, patient: Patient) -> bool:
        """The patient on screen got more studies or series (they arrive from PACS a batch
        at a time): the patient's summary and *Analyse study* take them in from now on,
        and the frame on screen stays. Returns whether it was the patient on screen."""
        if self.patient is None or self.patient.pseudonym != patient.pseudonym:
            return False
        uid = self.study.uid if self.study is not None else None
        self.patient = patient
        self.study = next((st for st in patient.studies if st.uid == uid), self.study)
        return True

    def want_frame(self, index: int, cached: NDArray[np.uint8] | None) -> bool:
        """Frame ``index`` is wanted; ``cached`` is it when already decoded. Returns True
        when it is on screen now, False when it waits for :meth:`frame_decoded`."""
        if self.series is None:
            return False
        self.index = index
        if cached is None:
            self.pending = (series_key(self.series), index)
            return False
        self._show(index, cached)
        return True

    def frame_decoded(self, key: SeriesKey, index: int, frame: NDArray[np.uint8]) -> bool:
        """A decoded frame arrived; shown when it is the one wanted."""
        if self.pending != (key, index):
            return False
        self._show(index, frame)
        return True

    def _show(self, index: int, frame: NDArray[np.uint8]) -> None:
        self.pending = None
        self.index, self.frame = index, frame
        self.frame_shown.emit(index)

    # ----- model and AI ------------------------------------------------------------------
    def set_model(self, model: ModelInfo | None) -> None:
        self.model = model
        self.result = self.result_index = None
        self.heat_pick = None
        self.model_changed.emit(model)
        self._refresh()

    def set_method(self, method: str) -> None:
        if method and method != self.method:
            self.method = method
            self.method_changed.emit(method)
            self.ai_changed.emit(self.ai_view())  # the note on the map's coarseness

    def ai_wanted(self) -> AIRequest | None:
        """What to ask the model for now (None: no model or nothing on screen)."""
        if self.series is None or self.model is None:
            return None
        return AIRequest(self.series, self.index, self.method)

    def request_sent(self, request_id: int) -> None:
        """The model worker took the request for :meth:`ai_wanted` under this id."""
        self.ai_request = request_id

    def offer_result(
        self, request_id: int, key: SeriesKey, index: int, result: FrameResult
    ) -> bool:
        """A result from the model worker: shown when it answers the latest request for the
        frame wanted now, dropped (False) as stale otherwise."""
        if request_id != self.ai_request or self.series is None:
            return False
        if key != series_key(self.series) or index != self.index:
            return False
        self.set_result(index, result)
        return True

    def set_result(self, index: int, result: FrameResult) -> None:
        """Show ``result`` as frame ``index``'s (a cache hit, or an accepted offer)."""
        self.result, self.result_index = result, index
        self._refresh()

    def set_heat_pick(self, pick: int | None) -> None:
        """Draw class ``pick``'s map (None: the top class's)."""
        n = len(self.model.classes) if self.model is not None else 0
        if pick is not None and not 0 <= pick < n:
            pick = None
        if pick != self.heat_pick:
            self.heat_pick = pick
            self.heat_pick_changed.emit(pick)
            self._refresh()

    def cycle_heat_class(self, step: int = 1) -> None:
        """Top class -> each class in turn -> top class (key K, Shift+K backwards)."""
        if self.model is None:
            return
        choices: list[int | None] = [None, *range(len(self.model.classes))]
        at = choices.index(self.heat_pick)
        self.set_heat_pick(choices[(at + step) % len(choices)])

    def reveal(self) -> None:
        """Show the frame's output although the domain guard withheld it: a deliberate
        action, logged (without any file name)."""
        result = self.result
        if self.series is None or result is None or result.in_domain is not False:
            return
        self.revealed.add((series_key(self.series), self.result_index or 0))
        log.info(
            "AI output shown on request although outside the model's domain (frame %d, %s)",
            (self.result_index or 0) + 1,
            withheld_why(
                result.domain_score,
                result.domain_threshold,
                result.cine_flagged,
                result.foreign_modality,
            ),
        )
        self._refresh()

    def heat_class(self) -> int | None:
        """Index of the class whose map is drawn: the picked one, else the top class."""
        if self.heat_pick is not None:
            return self.heat_pick
        if self.result is None:
            return None
        return int(np.argmax(self.result.probs))

    def ai_view(self) -> AIView:
        model = self.model
        if model is None:
            return AIView(AIStatus.NONE, message="No model loaded (AI > Load model…)")
        notes = (resolution_note(model.input_size, self.method),) if model.input_size else ()
        result = self.result
        if result is None:
            return AIView(AIStatus.PENDING, model.classes, notes=notes)
        domain = domain_words(
            result.domain_score,
            result.domain_threshold,
            model.guard_note,
            result.cine_flagged,
            result.cine_pending,
            result.foreign_modality,
        )
        caption = f"Frame {(self.result_index or 0) + 1}"
        withheld = result.in_domain is False
        if withheld and (
            self.series is None
            or (series_key(self.series), self.result_index or 0) not in self.revealed
        ):
            return AIView(
                AIStatus.WITHHELD,
                model.classes,
                message=domain,
                action=SHOW_ANYWAY,
                caption=caption,
                domain=domain,
                in_domain=False,
            )
        c = self.heat_class()
        return AIView(
            AIStatus.SHOWN,
            model.classes,
            probs=np.asarray(result.probs, dtype=np.float32),
            heat_class=c,
            heat_empty=c is not None and result.is_empty(c),
            notes=notes,
            caption=f"{caption}, shown anyway" if withheld else caption,
            domain=domain,
            in_domain=result.in_domain,
        )

    def _refresh(self) -> None:
        view = self.ai_view()
        heat = None
        if view.shown and view.heat_class is not None and self.result is not None:
            heat = self.result.heatmap(view.heat_class)
        self.overlay.show(self.frame, heat)
        self.ai_changed.emit(view)

    def refresh_overlay(self) -> None:
        """Lay the shown result's map over the frame now on screen (a new frame came)."""
        self._refresh()

    # ----- the patient and the study ----------------------------------------------------
    def patient_summary(self, series_probs: SeriesProbs) -> PatientSummary:
        """The patient's aggregated probabilities over every analysed frame of every
        series that the domain guard lets through, by the model card's rule; none of them
        through: no assessable frames, no class."""
        if self.patient is None or self.model is None:
            return PatientSummary(None, "")
        from fetal_viewer.core.model.aggregation import NO_ASSESSABLE, aggregate_assessable

        probs: list[NDArray[np.float32]] = []
        masks: list[NDArray[np.bool_]] = []
        n_done = n_all = 0
        for study in self.patient.studies:
            for series in study.series:
                n_all += len(series)
                found = series_probs(series)
                if found is not None:
                    probs.append(found[0])
                    masks.append(found[2])
                    n_done += len(found[1])
        if not probs:
            return PatientSummary(None, "Not analysed yet (Analyse study: A)")
        rule = self.model.aggregation
        ok = np.concatenate(masks)
        agg = aggregate_assessable(np.concatenate(probs), ok, rule)
        if agg is None:
            return PatientSummary(
                None,
                f"{NO_ASSESSABLE[0].upper()}{NO_ASSESSABLE[1:]}: none of the {n_done} analysed "
                "frames is inside what the model was trained on",
            )
        left_out = n_done - int(ok.sum())
        note = f"{n_done} of {n_all} frames, {rule} rule"
        if left_out:
            note += f"; {left_out} outside the model's domain left out"
        return PatientSummary(np.asarray(agg, dtype=np.float32), note)

    @property
    def can_analyse(self) -> bool:
        return self.study is not None and self.model is not None and self.job is None

    def set_job(self, job: int | None) -> None:
        if job != self.job:
            self.job = job
            self.job_changed.emit(job)
