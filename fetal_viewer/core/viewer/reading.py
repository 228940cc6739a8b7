"""The reading window's state, headless: the step the core's protocol says is next, the
case image, the AI of the aided step (asked of the blinded ``ReadingSession.get_ai``), the
reader's decision, and whether it can be submitted now. The reading window only displays
it and forwards the reader's input; tests drive it without Qt.

Stale answers are dropped: an image or an AI output for another case than the current
step's never reaches the screen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from fetal_viewer.core.cam.gradcam import resolution_note
from fetal_viewer.core.readerstudy.coordination import CaseImage
from fetal_viewer.core.readerstudy.protocol import AIOutput, Step
from fetal_viewer.core.store import Study
from fetal_viewer.core.viewer.ai import SHOW_ANYWAY, AIStatus, AIView, domain_words, withheld_why
from fetal_viewer.core.viewer.events import Event
from fetal_viewer.core.viewer.overlay import HeatmapOverlay, OverlaySettings


@dataclass(frozen=True)
class Decision:
    """What the reader has chosen so far on this step."""

    label: str | None = None
    confidence: int | None = None
    anomaly: int | None = None


@dataclass(frozen=True)
class Submission:
    """A decision ready for ``ReadingSession.submit`` (a rating not set is None)."""

    label: str
    confidence: int | None
    anomaly: int | None
    heatmap_visible: bool | None


log = logging.getLogger(__name__)

#: how the reader sets the ratings from the keyboard (also in F1)
RATING_KEYS = "Ctrl+1–9 for confidence, Alt+1–9 for any anomaly, or Tab to a slider and ←/→"


class ReadingState:
    """One reader's reading page.

    Events: ``step_changed(Step | None)`` (None: the session is finished),
    ``image_changed(CaseImage | None)``, ``ai_changed(AIView)``,
    ``decision_changed(Decision)``, ``ready_changed(bool)``; ``overlay`` has its own.
    """

    def __init__(self, overlay: OverlaySettings | None = None) -> None:
        self.study: Study | None = None
        self.step: Step | None = None
        self.image: CaseImage | None = None
        self.ai: AIOutput | None = None
        self.ai_status = AIStatus.NONE
        #: the reader asked to see an output the domain guard withheld (this step only)
        self.revealed = False
        self.decision = Decision()
        self.saving = False
        self.paused = False
        self.overlay = HeatmapOverlay(overlay)
        self.step_changed: Event[Step | None] = Event()
        self.image_changed: Event[CaseImage | None] = Event()
        self.ai_changed: Event[AIView] = Event()
        self.decision_changed: Event[Decision] = Event()
        self.ready_changed: Event[bool] = Event()

    # ----- steps -------------------------------------------------------------------------
    def start(self, study: Study) -> None:
        self.study = study

    @property
    def labels(self) -> tuple[str, ...]:
        return self.study.labels if self.study is not None else ()

    @property
    def reference_label(self) -> str | None:
        """The reader's locked unaided label, shown beside the aided step's choices."""
        step = self.step
        if step is None or step.condition != "aided" or step.unaided is None:
            return None
        return step.unaided.label

    @property
    def aided(self) -> bool:
        return self.step is not None and self.step.condition == "aided"

    def show_step(self, step: Step | None) -> bool:
        """Move to ``step``; True when its case image must be loaded (a new case)."""
        same_case = (
            step is not None
            and self.step is not None
            and self.step.case.case_id == step.case.case_id
            and self.image is not None
        )
        self.step = step
        self.ai, self.saving, self.revealed = None, False, False
        self.ai_status = AIStatus.PENDING if self.aided else AIStatus.NONE
        self.overlay.clear()
        if not same_case:
            self.image = None
            self.overlay.show(None, None)
            self.image_changed.emit(None)
        self.decision = self._initial_decision()
        self.step_changed.emit(step)
        self.decision_changed.emit(self.decision)
        self.ai_changed.emit(self.ai_view())
        self._update_ready()
        return step is not None and not same_case

    def _initial_decision(self) -> Decision:
        # nothing is preselected, not even on the aided step: Enter must never store an
        # answer or a rating the reader has not given on this step (the unaided answer is
        # shown beside, as reference); a rating never given is stored as not set
        return Decision()

    def image_loaded(self, image: CaseImage) -> bool:
        """The case image arrived; kept only when it is the current step's case."""
        if self.step is None or image.pseudonym != self.step.case.pseudonym:
            return False
        self.image = image
        self.image_changed.emit(image)
        self._show_heat()
        self._update_ready()
        return True

    # ----- AI ----------------------------------------------------------------------------
    def ai_asked(self) -> None:
        self.ai_status = AIStatus.PENDING
        self.ai_changed.emit(self.ai_view())

    def ai_arrived(self, pseudonym: str, out: AIOutput) -> bool:
        """The blinded session answered for case ``pseudonym``; dropped when stale."""
        if self.step is None or self.step.case.pseudonym != pseudonym:
            return False
        self.ai, self.ai_status = out, AIStatus.SHOWN
        self._show_heat()
        self.ai_changed.emit(self.ai_view())
        self._update_ready()
        return True

    def ai_failed(self) -> None:
        self.ai_status = AIStatus.FAILED
        self.ai_changed.emit(self.ai_view())

    def reveal(self) -> None:
        """Show the AI output the domain guard withheld: the reader's deliberate choice,
        logged (the case by pseudonym only)."""
        out = self.ai
        if out is None or out.in_domain is not False or self.revealed:
            return
        self.revealed = True
        log.info(
            "aided read: AI output shown on request although outside the model's domain "
            "(case %s, %s)",
            self.step.case.pseudonym if self.step is not None else "?",
            withheld_why(
                out.domain_score, out.domain_threshold, out.cine_flagged, out.foreign_modality
            ),
        )
        self._show_heat()
        self.ai_changed.emit(self.ai_view())

    def _show_heat(self) -> None:
        out, image = self.ai, self.image
        shown = self.ai_view().shown and out is not None
        heat = None
        if shown and out is not None and out.heatmap is not None and image is not None:
            heat = image.crop(np.asarray(out.heatmap, dtype=np.float32))
        self.overlay.show(None if image is None else image.frame, heat)

    def ai_view(self) -> AIView:
        # paused, the AI is hidden with the image: no reading with the clock stopped
        if self.ai_status is AIStatus.NONE or self.paused:
            return AIView(AIStatus.NONE)
        if self.ai_status is AIStatus.PENDING:
            return AIView(AIStatus.PENDING, message="Asking the AI…")
        if self.ai_status is AIStatus.FAILED or self.ai is None:
            return AIView(
                AIStatus.FAILED,
                message="The AI could not be shown; the aided read needs it.",
                action="Show the AI again",
            )
        out = self.ai
        classes = tuple(out.probabilities)
        caption = f"model card sha256 {out.model_sha[:12]}…"
        # the domain guard's verdict, worded and withheld exactly as the viewer does
        domain = domain_words(
            out.domain_score,
            out.domain_threshold,
            out.guard_note,
            out.cine_flagged,
            modality=out.foreign_modality,
        )
        if out.in_domain is False and not self.revealed:
            return AIView(
                AIStatus.WITHHELD,
                classes,
                message=domain,
                action=SHOW_ANYWAY,
                caption=caption,
                domain=domain,
                in_domain=False,
            )
        probs = np.array([out.probabilities[c] for c in classes], dtype=np.float32)
        has_heat = out.heatmap is not None
        notes = (resolution_note(out.input_size),) if has_heat and out.input_size else ()
        top = int(np.argmax(probs))
        return AIView(
            AIStatus.SHOWN,
            classes,
            probs=probs,
            heat_class=top if has_heat else None,
            heat_empty=has_heat and not float(np.max(out.heatmap)) > 0,
            notes=notes,
            caption=caption,
            domain=domain,
            in_domain=out.in_domain,
        )

    # ----- the decision ------------------------------------------------------------------
    def choose(self, index: int) -> bool:
        """Choose label ``index`` (keys 1-9); False when not possible now."""
        labels = self.labels
        if not self.ready or not 0 <= index < len(labels):
            return False
        self._decide(replace(self.decision, label=labels[index]))
        return True

    def set_confidence(self, value: int | None) -> None:
        self._decide(replace(self.decision, confidence=value))

    def set_anomaly(self, value: int | None) -> None:
        self._decide(replace(self.decision, anomaly=value))

    def _decide(self, new: Decision) -> None:
        if new != self.decision:
            self.decision = new
            self.decision_changed.emit(new)

    def submission(self, heatmap_visible: bool) -> Submission | str:
        """The decision as a submission, or what is missing (one sentence)."""
        d = self.decision
        if d.label is None:
            return f"Choose a label first (keys 1–{len(self.labels)})."
        required = self.study is not None and self.study.require_ratings
        if required and (d.confidence is None or d.anomaly is None):
            return f"This study needs both ratings: set them first ({RATING_KEYS})."
        return Submission(d.label, d.confidence, d.anomaly, heatmap_visible if self.aided else None)

    def rate(self, which: str, tenths: int) -> None:
        """Set a rating to ``tenths`` tenths of its scale (keys Ctrl/Alt+1-9)."""
        if not self.ready:
            return
        if which == "confidence":
            lo, hi = self.study.confidence_scale if self.study is not None else (0, 100)
            self.set_confidence(round(lo + (hi - lo) * tenths / 10))
        else:
            self.set_anomaly(10 * tenths)

    # ----- readiness ---------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True when the reader can decide and submit: image shown, AI shown when aided,
        not saving, not paused."""
        return (
            self.step is not None
            and self.image is not None
            and not self.saving
            and not self.paused
            and (not self.aided or self.ai is not None)
        )

    def set_saving(self, saving: bool) -> None:
        self.saving = saving
        self._update_ready()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._show_heat()
        self.ai_changed.emit(self.ai_view())
        self._update_ready()

    def _update_ready(self) -> None:
        self.ready_changed.emit(self.ready)
