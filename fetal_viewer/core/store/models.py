"""Typed ORM models of the reader-study store (SQLAlchemy 2.0 declarative, ``Mapped[...]``).

These rows never leave :mod:`fetal_viewer.core.store`: the repository turns them into
frozen dataclasses. The schema is owned by the Alembic migrations in ``migrations/``; a test
checks that these models and the migrations agree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ReaderRow(Base):
    __tablename__ = "readers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(64))
    years_experience: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    design: Mapped[str] = mapped_column(String(16))
    labels: Mapped[list[str]] = mapped_column(JSON)
    confidence_scale: Mapped[dict[str, int]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    washout_days: Mapped[float] = mapped_column(Float)
    model_card: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    model_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # require_ratings, show_ga (the third migration)
    options: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)


class CaseRow(Base):
    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("study_id", "pseudonym", name="uq_cases_study_pseudonym"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    pseudonym: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str] = mapped_column(Text)
    frame: Mapped[int] = mapped_column(Integer, default=0)
    reference_label: Mapped[str] = mapped_column(String(64))
    reference_source: Mapped[str] = mapped_column(String(128))
    ga_weeks: Mapped[float | None] = mapped_column(Float, nullable=True)
    center: Mapped[str | None] = mapped_column(String(64), nullable=True)


class EnrolmentRow(Base):
    """A reader taking part in a study, with the seed of their case order."""

    __tablename__ = "enrolments"
    __table_args__ = (UniqueConstraint("study_id", "reader_id", name="uq_enrolments_study_reader"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"))
    order_seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SessionRow(Base):
    __tablename__ = "reading_sessions"
    __table_args__ = (
        UniqueConstraint("study_id", "reader_id", "arm", name="uq_sessions_study_reader_arm"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"))
    arm: Mapped[int] = mapped_column(Integer)
    condition: Mapped[str] = mapped_column(String(16))
    order_seed: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ReadRow(Base):
    """One submitted decision. Never updated: a correction is a new row that supersedes it."""

    __tablename__ = "reads"
    __table_args__ = (Index("ix_reads_reader_case_condition", "reader_id", "case_id", "condition"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("reading_sessions.id", ondelete="CASCADE"), index=True
    )
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    condition: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: not set
    anomaly_prob: Mapped[int | None] = mapped_column(Integer, nullable=True)
    free_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    active_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: untimed
    position: Mapped[int] = mapped_column(Integer)
    ai_model_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ai_probs: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    ai_heatmap_visible: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    changed_from_unaided: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    ai_out_of_domain: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    supersedes_id: Mapped[int | None] = mapped_column(
        ForeignKey("reads.id", ondelete="SET NULL"), nullable=True
    )
    correction_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditRow(Base):
    """Append-only log of what happened (added by the second migration)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, object]] = mapped_column(JSON)
