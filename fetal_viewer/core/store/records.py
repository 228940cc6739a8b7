"""The store's records: frozen dataclasses, never ORM rows, and their mapping to and from
rows by field name (:func:`record`, :func:`row_values`), so a field added to a record and
its row is carried everywhere at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

DESIGNS = ("sequential", "crossover")
CONDITIONS = ("unaided", "aided")


def new_uid() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Reader:
    id: int
    pseudonym: str
    role: str
    years_experience: float


@dataclass(frozen=True)
class Study:
    id: int
    name: str
    design: str
    labels: tuple[str, ...]
    confidence_scale: tuple[int, int]
    seed: int
    washout_days: float
    model_card: dict[str, Any] | None
    model_sha256: str | None
    created_at: datetime
    n_cases: int
    require_ratings: bool = False  # Submit asks for both ratings
    show_ga: bool = False  # readers see the case's gestational age


@dataclass(frozen=True)
class CaseSpec:
    """A case to add to a new study (coordinator input)."""

    source_path: str
    reference_label: str
    reference_source: str = "reference standard"
    frame: int = 0
    ga_weeks: float | None = None
    center: str | None = None


@dataclass(frozen=True)
class Case:
    """A case as the coordinator sees it (with the reference; never shown to readers)."""

    id: int
    pseudonym: str
    source_path: str
    frame: int
    reference_label: str
    reference_source: str
    ga_weeks: float | None
    center: str | None


@dataclass(frozen=True)
class Enrolment:
    study: str
    reader: str
    order_seed: int


@dataclass(frozen=True)
class ReadingSessionInfo:
    id: int
    uid: str
    study_id: int
    reader_id: int
    arm: int
    condition: str
    order_seed: int
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class NewRead:
    """What a reader submitted, as the protocol hands it to the store."""

    session_id: int
    case_id: int
    condition: str
    label: str
    confidence: int | None  # None: the reader did not set it
    anomaly_prob: int | None
    started_at: datetime
    submitted_at: datetime
    active_ms: int | None  # None: no active time was measured (headless reads)
    position: int
    free_text: str | None = None
    ai_model_sha: str | None = None
    ai_probs: dict[str, float] | None = None
    ai_heatmap_visible: bool | None = None
    changed_from_unaided: bool | None = None
    #: True when the model's domain guard flagged the AI output shown (None: no AI shown,
    #: or a model without a guard)
    ai_out_of_domain: bool | None = None
    uid: str = field(default_factory=lambda: new_uid())


@dataclass(frozen=True)
class Read:
    id: int
    uid: str
    session_id: int
    study_id: int
    reader_id: int
    case_id: int
    condition: str
    label: str
    confidence: int | None
    anomaly_prob: int | None
    free_text: str | None
    started_at: datetime
    submitted_at: datetime
    active_ms: int | None
    position: int
    ai_model_sha: str | None
    ai_probs: dict[str, float] | None
    ai_heatmap_visible: bool | None
    changed_from_unaided: bool | None
    supersedes_id: int | None
    correction_reason: str | None
    ai_out_of_domain: bool | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    study_id: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class MergeReport:
    readers_added: int = 0
    sessions_added: int = 0
    reads_added: int = 0
    reads_already_present: int = 0
    conflicts: tuple[str, ...] = ()


_R = TypeVar("_R")


def record(cls: type[_R], row: Any, **values: Any) -> _R:
    """A ``cls`` record from an ORM row (or another record): each field of ``cls`` read by
    name from ``row`` unless given in ``values``; times in UTC, JSON objects copied."""
    out: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in values:
            out[f.name] = values[f.name]
            continue
        value = getattr(row, f.name)
        if isinstance(value, datetime):
            value = _utc(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return cls(**out)


def row_values(item: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a record by name (for an ORM row's constructor), but ``exclude``."""
    return {f.name: getattr(item, f.name) for f in fields(item) if f.name not in exclude}
