"""Reader-study store: SQLAlchemy engine, typed ORM models, Alembic migrations and a
repository that hands out frozen dataclasses.

Open it with :func:`open_store` (path, ``sqlite:///`` or ``postgresql://`` URL, or None for
the default file in the user data folder); it upgrades the schema to the newest revision.
"""

from __future__ import annotations

from fetal_viewer.core.store.engine import default_db_path, head_revision
from fetal_viewer.core.store.records import (
    CONDITIONS,
    DESIGNS,
    AuditEntry,
    Case,
    CaseSpec,
    Enrolment,
    MergeReport,
    NewRead,
    Read,
    Reader,
    ReadingSessionInfo,
    Study,
    utcnow,
)
from fetal_viewer.core.store.repository import Store, open_store

__all__ = [
    "CONDITIONS",
    "DESIGNS",
    "AuditEntry",
    "Case",
    "CaseSpec",
    "Enrolment",
    "MergeReport",
    "NewRead",
    "Read",
    "Reader",
    "ReadingSessionInfo",
    "Store",
    "Study",
    "default_db_path",
    "head_revision",
    "open_store",
    "utcnow",
]
