"""Reading protocol: seeded per-reader case order, the unaided-then-aided rule, blinding
of AI output, washout, exact resume and progress.

All state that matters lives in the store: the position in a session is derived from the
reads already stored, so closing or killing the app at any moment and opening the session
again resumes at the first step without a stored read. A :class:`ReadingSession` keeps
the reader's effective reads in memory so that a submit does not reload them all: the
cache is filled from the store when the session is opened (so a resume always starts
from what is stored), a read enters it only after the store has committed it, and any
failed submit (or :meth:`ReadingSession.reload`) drops it so that the next step is derived
from the store again. The store refuses a second read of the same step, so a stale cache
(the same reader in two windows) cannot duplicate a read. Nothing here imports the model
core: the AI comes from an :data:`AIProvider` callable the caller passes in.

Designs
-------
``sequential``: one session; each case is read unaided, the answer is locked, then the AI
is revealed and the aided read of the same case is taken.

``crossover``: two sessions (arms 1 and 2) separated by at least ``washout_days``. A
seeded half of the cases is read unaided in arm 1 and aided in arm 2, the other half the
other way round, so every case is read once in each condition.

Blinding
--------
:func:`get_ai_for_case` returns AI output for (reader, case) only when the reader's
unaided read of that case is stored, or (crossover only) when the reader's current step
is the aided read of that case. Anything else raises :class:`ProtocolError`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fetal_viewer.core.store import (
    Case,
    NewRead,
    Read,
    Reader,
    ReadingSessionInfo,
    Store,
    Study,
    utcnow,
)
from fetal_viewer.errors import ProtocolError


@dataclass(frozen=True)
class CaseView:
    """A case as a reader may see it: no reference label, no reference source."""

    case_id: int
    pseudonym: str
    source_path: str
    frame: int
    ga_weeks: float | None = None  # only when the study shows readers the gestational age


@dataclass(frozen=True)
class AIOutput:
    """What the AI shows for a case: model sha256, class probabilities, optional heatmap
    and the model's input size (which sets how coarse the heatmap is)."""

    model_sha: str
    probabilities: dict[str, float]
    heatmap: Any = None  # (H, W) float array or None
    input_size: int | None = None
    #: the model's domain guard on the case's frame (None: the model has no guard)
    domain_score: float | None = None
    domain_threshold: float | None = None
    #: what the reader is told when there is no guard ("" when there is one)
    guard_note: str = ""
    #: ``(frames flagged, frames)`` when the case's cine is withheld as a whole
    cine_flagged: tuple[int, int] | None = None
    #: the case's modality in words when its header says it is not ultrasound
    foreign_modality: str | None = None

    @property
    def in_domain(self) -> bool | None:
        """False when the case is not ultrasound, or the guard flagged its frame or cine:
        the reveal withholds the output."""
        if self.foreign_modality is not None:
            return False
        if self.domain_score is None or self.domain_threshold is None:
            return None
        return self.domain_score <= self.domain_threshold and self.cine_flagged is None

    @property
    def top_label(self) -> str:
        return max(self.probabilities, key=lambda k: self.probabilities[k])


#: callable the caller supplies: case -> AI output (e.g. wrapping the model core's Predictor)
AIProvider = Callable[[CaseView], AIOutput]


@dataclass(frozen=True)
class Step:
    """The next thing the reader must do."""

    case: CaseView
    condition: str  # "unaided" or "aided"
    position: int  # 0-based position of the case in this session's order
    arm: int
    index: int  # 0-based number of this step among the session's steps
    total: int  # steps in this session
    unaided: Read | None  # the locked unaided answer (sequential design, aided step)


@dataclass(frozen=True)
class ReaderProgress:
    reader: str
    arm: int  # current (or last) arm
    done: int  # effective reads stored
    total: int  # reads the design asks of this reader
    finished: bool
    next_session_at: datetime | None  # crossover: when the washout allows arm 2

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class StudyProgress:
    study: str
    readers: tuple[ReaderProgress, ...]

    @property
    def done(self) -> int:
        return sum(r.done for r in self.readers)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.readers)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def case_view(case: Case, show_ga: bool = False) -> CaseView:
    ga = case.ga_weeks if show_ga else None
    return CaseView(case.id, case.pseudonym, case.source_path, case.frame, ga)


def case_order(cases: list[Case], seed: int) -> list[Case]:
    """Reproducible order: cases sorted by pseudonym, then shuffled with ``seed``."""
    ordered = sorted(cases, key=lambda c: c.pseudonym)
    random.Random(seed).shuffle(ordered)
    return ordered


def crossover_groups(cases: list[Case], seed: int) -> set[int]:
    """Ids of the cases read unaided in arm 1 (a seeded half)."""
    ordered = case_order(cases, seed ^ 0x5A5A5A5A)
    return {c.id for c in ordered[: (len(ordered) + 1) // 2]}


def plan(study: Study, cases: list[Case], order_seed: int, arm: int) -> list[tuple[Case, str]]:
    """The steps of one session: (case, condition) in order."""
    if study.design == "sequential":
        if arm != 1:
            return []
        return [(c, cond) for c in case_order(cases, order_seed) for cond in ("unaided", "aided")]
    first = crossover_groups(cases, order_seed)
    order = case_order(cases, order_seed + arm)
    steps = []
    for c in order:
        unaided_now = (c.id in first) == (arm == 1)
        steps.append((c, "unaided" if unaided_now else "aided"))
    return steps


def _effective(reads: list[Read]) -> dict[tuple[int, str], Read]:
    return {(r.case_id, r.condition): r for r in reads}


class ReadingSession:
    """One reader working through a study. Reopen it at any time to resume.

    ``clock`` returns the current UTC time (tests move it forward to pass a washout).
    """

    def __init__(
        self,
        store: Store,
        study: str,
        reader: str,
        *,
        ai_provider: AIProvider | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.study: Study = store.get_study(study)
        self.reader: Reader = store.get_reader(reader)
        enrolled = {e.reader: e for e in store.enrolments(study)}
        if reader not in enrolled:
            raise ProtocolError(
                f"Reader {reader!r} is not enrolled in study {study!r}.",
                fix="The coordinator enrols readers (fetal-viewer study add-reader).",
            )
        self.order_seed = enrolled[reader].order_seed
        self.ai_provider = ai_provider
        self.clock = clock
        self._cases = store.list_cases(study)
        self._by_id = {c.id: c for c in self._cases}
        self._shown: dict[int, AIOutput] = {}
        self._timer_case: tuple[int, str] | None = None
        self._started_at: datetime | None = None
        self._t0 = 0.0
        self._paused_s = 0.0
        self._pause_t: float | None = None
        self._done: dict[tuple[int, str], Read] | None = None
        self.session: ReadingSessionInfo = self._open_arm()

    # -- session and arm ------------------------------------------------------------------
    def _reads(self) -> list[Read]:
        return self.store.reads(self.study.id, self.reader.id)

    def _effective_reads(self) -> dict[tuple[int, str], Read]:
        """The reader's effective reads by (case id, condition), loaded from the store when
        the cache is empty (see the module docstring)."""
        if self._done is None:
            self._done = _effective(self._reads())
        return self._done

    def reload(self) -> Step | None:
        """Forget the cached reads and derive the current step from the store again."""
        self._done = None
        return self.current()

    def _open_arm(self) -> ReadingSessionInfo:
        sessions = {s.arm: s for s in self.store.sessions(self.study.id, self.reader.id)}
        arms = (1,) if self.study.design == "sequential" else (1, 2)
        self._done = None
        done = self._effective_reads()
        for arm in arms:
            steps = plan(self.study, self._cases, self.order_seed, arm)
            remaining = [s for s in steps if (s[0].id, s[1]) not in done]
            if remaining or arm == arms[-1]:
                if arm == 2:
                    self._check_washout(sessions)
                cond = "mixed" if self.study.design == "crossover" else "sequential"
                info = sessions.get(arm) or self.store.start_session(
                    self.study.id, self.reader.id, arm, cond, self.order_seed
                )
                if not remaining and info.ended_at is None:
                    info = self.store.end_session(info.id, self.clock())
                return info
            if sessions.get(arm) and sessions[arm].ended_at is None:
                self.store.end_session(sessions[arm].id, self.clock())
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_washout(self, sessions: dict[int, ReadingSessionInfo]) -> None:
        if 2 in sessions:
            return
        first = sessions.get(1)
        ended = first.ended_at if first is not None else None
        if ended is None:
            ended = self.clock()
            if first is not None:
                self.store.end_session(first.id, ended)
        allowed = ended + timedelta(days=self.study.washout_days)
        if self.clock() < allowed:
            raise ProtocolError(
                "The second reading session cannot start before the washout has passed.",
                why=f"Session 1 ended {ended:%Y-%m-%d %H:%M} UTC; the washout is "
                f"{self.study.washout_days:g} days.",
                fix=f"Come back after {allowed:%Y-%m-%d %H:%M} UTC.",
            )

    @property
    def arm(self) -> int:
        return self.session.arm

    # -- steps ----------------------------------------------------------------------------
    def _steps(self) -> list[tuple[Case, str]]:
        return plan(self.study, self._cases, self.order_seed, self.arm)

    def current(self) -> Step | None:
        """The next step of this session, or None when the session is finished."""
        reads = self._effective_reads()
        steps = self._steps()
        positions: dict[int, int] = {}
        for c, _ in steps:
            positions.setdefault(c.id, len(positions))
        for i, (case, cond) in enumerate(steps):
            if (case.id, cond) in reads:
                continue
            unaided = reads.get((case.id, "unaided")) if cond == "aided" else None
            if self.study.design == "sequential" and cond == "aided":
                assert unaided is not None
            return Step(
                case=case_view(case, self.study.show_ga),
                condition=cond,
                position=positions[case.id],
                arm=self.arm,
                index=i,
                total=len(steps),
                unaided=unaided if self.study.design == "sequential" else None,
            )
        return None

    @property
    def finished(self) -> bool:
        return self.progress().finished

    def begin(self) -> Step | None:
        """The current step, with its reading timer started (idempotent per step)."""
        step = self.current()
        if step is None:
            return None
        key = (step.case.case_id, step.condition)
        if self._timer_case != key:
            self._timer_case = key
            self._started_at = self.clock()
            self._t0 = time.monotonic()
            self._paused_s = 0.0
            self._pause_t = None
        return step

    def pause(self) -> None:
        """Stop the reading clock (idle, break); :meth:`resume` starts it again."""
        if self._pause_t is None:
            self._pause_t = time.monotonic()

    def resume(self) -> None:
        if self._pause_t is not None:
            self._paused_s += time.monotonic() - self._pause_t
            self._pause_t = None

    # -- AI -------------------------------------------------------------------------------
    def get_ai(self, case_pseudonym: str | None = None) -> AIOutput:
        """Reveal the AI for a case (default: the current step's case). Blinding enforced."""
        step = self.current()
        if case_pseudonym is None:
            if step is None:
                raise ProtocolError("The session is finished; there is no case to reveal.")
            case_pseudonym = step.case.pseudonym
        out = get_ai_for_case(self, case_pseudonym)
        case_id = next(c.id for c in self._cases if c.pseudonym == case_pseudonym)
        self._shown[case_id] = out
        return out

    # -- submit ---------------------------------------------------------------------------
    def submit(
        self,
        label: str,
        confidence: int | None,
        anomaly_prob: int | None,
        *,
        free_text: str | None = None,
        active_ms: int | None = None,
        heatmap_visible: bool | None = None,
        untimed: bool = False,
    ) -> Read:
        """Store the current step's answer durably and return it; the next step follows.

        A rating the reader did not set is ``None`` and stored as not set (a study with
        ``require_ratings`` refuses it). ``active_ms``: reading time excluding idle and
        pauses when the UI measures it; by default the time since :meth:`begin` minus
        pauses; ``untimed`` (headless reading) stores no reading time at all.
        """
        step = self.begin()
        if step is None:
            raise ProtocolError("The session is finished; there is nothing to submit.")
        if label not in self.study.labels:
            raise ProtocolError(
                f"Label {label!r} is not one of the study's labels {list(self.study.labels)}."
            )
        lo, hi = self.study.confidence_scale
        missing = [
            name
            for name, value in (("confidence", confidence), ("any-anomaly rating", anomaly_prob))
            if value is None
        ]
        if missing and self.study.require_ratings:
            raise ProtocolError(
                f"This study requires both ratings; the {' and the '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set.",
                fix="Set the confidence and the any-anomaly rating, then submit.",
            )
        for name, value, a, b in (
            ("confidence", confidence, lo, hi),
            ("anomaly probability", anomaly_prob, 0, 100),
        ):
            if value is not None and not a <= int(value) <= b:
                raise ProtocolError(f"The {name} must be between {a} and {b}; got {value}.")
        shown = self._shown.get(step.case.case_id)
        if step.condition == "aided" and shown is None:
            if self.ai_provider is None:
                raise ProtocolError(
                    "An aided read needs the AI output, but no AI provider was given.",
                    fix="Open the session with ai_provider=... (the study's model).",
                )
            raise ProtocolError(
                "Reveal the AI (get_ai) before submitting the aided read.",
                why="The store records what AI the reader saw with each aided read.",
            )
        if step.condition == "unaided":
            shown = None
        now = self.clock()
        if active_ms is None and not untimed:
            self.resume()
            active_ms = round((time.monotonic() - self._t0 - self._paused_s) * 1000)
        started = self._started_at or now
        changed = None
        if step.condition == "aided":
            unaided = self._effective_reads().get((step.case.case_id, "unaided"))
            if unaided is not None:
                changed = unaided.label != label
        new = NewRead(
            session_id=self.session.id,
            case_id=step.case.case_id,
            condition=step.condition,
            label=label,
            confidence=None if confidence is None else int(confidence),
            anomaly_prob=None if anomaly_prob is None else int(anomaly_prob),
            started_at=started,
            submitted_at=now,
            active_ms=None if untimed or active_ms is None else max(0, int(active_ms)),
            position=step.position,
            free_text=free_text,
            ai_model_sha=shown.model_sha if shown else None,
            ai_probs=dict(shown.probabilities) if shown else None,
            ai_heatmap_visible=(
                (heatmap_visible if heatmap_visible is not None else shown.heatmap is not None)
                if shown
                else None
            ),
            changed_from_unaided=changed,
            ai_out_of_domain=(
                None if shown is None or shown.in_domain is None else not shown.in_domain
            ),
        )
        try:
            read = self.store.add_read(new)
        except BaseException:
            # not stored, stored by another window, or the outcome is unknown: from now on
            # the store says what the next step is
            self._done = None
            raise
        if self._done is not None:
            self._done[(read.case_id, read.condition)] = read
        self._timer_case = None
        if step.index == step.total - 1 or self.current() is None:
            self.session = self.store.end_session(self.session.id, now)
        return read

    def progress(self) -> ReaderProgress:
        return reader_progress(self.store, self.study, self.reader, self.order_seed)


def get_ai_for_case(session: ReadingSession, case_pseudonym: str) -> AIOutput:
    """AI output for a case, only if the blinding rule allows it (see module docstring)."""
    case = next((c for c in session._cases if c.pseudonym == case_pseudonym), None)
    if case is None:
        raise ProtocolError(f"No case {case_pseudonym!r} in study {session.study.name!r}.")
    reads = session._effective_reads()
    allowed = (case.id, "unaided") in reads
    if not allowed and session.study.design == "crossover":
        step = session.current()
        allowed = step is not None and step.case.case_id == case.id and step.condition == "aided"
    if not allowed:
        raise ProtocolError(
            f"AI output for case {case_pseudonym} is blinded for reader "
            f"{session.reader.pseudonym}.",
            why="The reader's unaided read of this case is not stored yet.",
            fix="Submit the unaided read first.",
        )
    if session.ai_provider is None:
        raise ProtocolError(
            "No AI provider was given to this reading session.",
            fix="Open the session with the study's model as ai_provider.",
        )
    return session.ai_provider(case_view(case, session.study.show_ga))


def reader_progress(store: Store, study: Study, reader: Reader, order_seed: int) -> ReaderProgress:
    reads = store.reads(study.id, reader.id)
    n = study.n_cases
    total = 2 * n
    done = len({(r.case_id, r.condition) for r in reads})
    sessions = {s.arm: s for s in store.sessions(study.id, reader.id)}
    arm = max(sessions) if sessions else 1
    next_at = None
    if study.design == "crossover" and 2 not in sessions and 1 in sessions:
        ended = sessions[1].ended_at
        if ended is not None:
            next_at = ended + timedelta(days=study.washout_days)
    return ReaderProgress(reader.pseudonym, arm, done, total, done >= total, next_at)


def study_progress(store: Store, study: str) -> StudyProgress:
    """Progress of every enrolled reader."""
    st = store.get_study(study)
    readers = {r.pseudonym: r for r in store.list_readers()}
    out = [
        reader_progress(store, st, readers[e.reader], e.order_seed) for e in store.enrolments(study)
    ]
    return StudyProgress(st.name, tuple(out))
