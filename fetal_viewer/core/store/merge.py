"""Merging a reader workstation's database into the coordinator's (``study merge``).

Idempotent: rows already present (same uid) are skipped. A read that disagrees with an
effective read already here for the same reader, case and condition is not imported and is
listed as a conflict. Ids are local to each database, so readers, sessions, cases and
superseded reads are matched by pseudonym or uid and their ids mapped, in that order, in one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from fetal_viewer.core.store.models import EnrolmentRow, ReaderRow, ReadRow, SessionRow
from fetal_viewer.core.store.records import (
    Case,
    MergeReport,
    Reader,
    Study,
    row_values,
    utcnow,
)
from fetal_viewer.errors import StoreError

if TYPE_CHECKING:
    from fetal_viewer.core.store.repository import Store

#: a read's fields that are ids in the database it was read from
_LOCAL_IDS = ("id", "session_id", "study_id", "reader_id", "case_id", "supersedes_id")


def merge(store: Store, other: Store, study: str) -> MergeReport:
    """Import ``study``'s readers, enrolments, sessions and reads from ``other``."""
    src_study = other.get_study(study)
    dst_study = store.get_study(study)
    src_cases = {c.id: c for c in other.list_cases(study)}
    dst_cases = {c.pseudonym: c for c in store.list_cases(study)}
    if src_study.seed != dst_study.seed or {c.pseudonym for c in src_cases.values()} != set(
        dst_cases
    ):
        raise StoreError(
            f"The study {study!r} in the other database is not the same study.",
            why="Its seed or case list differs.",
            fix="Give each reader a copy of the coordinator's database to read into.",
        )
    conflicts = [
        f"case {c.pseudonym}: reference label differs; kept ours"
        for c in src_cases.values()
        if dst_cases[c.pseudonym].reference_label != c.reference_label
    ]
    src_readers = other.readers_by_id()
    with store.unit_of_work("merging a reader database") as s:
        run = _Merge(s, other, src_study, dst_study, src_readers, conflicts)
        run.readers()
        run.enrolments(study)
        run.sessions()
        run.reads({k: dst_cases[c.pseudonym] for k, c in src_cases.items()})
        store._audit(
            s,
            "coordinator",
            "merge",
            dst_study.id,
            source=other.url,
            reads_added=run.reads_added,
            conflicts=len(conflicts),
        )
    return MergeReport(
        run.readers_added, run.sessions_added, run.reads_added, run.present, tuple(conflicts)
    )


@dataclass
class _Merge:
    """One merge's transaction, the id maps it builds and what it counts."""

    s: Session
    other: Store
    src_study: Study
    dst_study: Study
    src_readers: dict[int, Reader]
    conflicts: list[str]
    reader_map: dict[int, int] = field(default_factory=dict)
    session_map: dict[int, int] = field(default_factory=dict)
    readers_added: int = 0
    sessions_added: int = 0
    reads_added: int = 0
    present: int = 0

    def readers(self) -> None:
        """Readers by pseudonym; a reader new here is added."""
        s = self.s
        dst_readers = {r.pseudonym: r for r in s.scalars(select(ReaderRow))}
        for rid, rdr in self.src_readers.items():
            rrow = dst_readers.get(rdr.pseudonym)
            if rrow is None:
                rrow = ReaderRow(
                    pseudonym=rdr.pseudonym,
                    role=rdr.role,
                    years_experience=rdr.years_experience,
                    created_at=utcnow(),
                )
                s.add(rrow)
                s.flush()
                self.readers_added += 1
            self.reader_map[rid] = rrow.id

    def enrolments(self, study: str) -> None:
        s, dst_id = self.s, self.dst_study.id
        for e in self.other.enrolments(study):
            rid = self.reader_map[other_reader_id(self.src_readers, e.reader)]
            here = s.scalar(
                select(EnrolmentRow).where(
                    EnrolmentRow.study_id == dst_id, EnrolmentRow.reader_id == rid
                )
            )
            if here is None:
                s.add(
                    EnrolmentRow(
                        study_id=dst_id, reader_id=rid, order_seed=e.order_seed, created_at=utcnow()
                    )
                )

    def sessions(self) -> None:
        """Sessions by uid, else by reader and arm (a conflict: the reads go into ours)."""
        s = self.s
        for src_rid in self.src_readers:
            for sess in self.other.sessions(self.src_study.id, src_rid):
                row_s = s.scalar(select(SessionRow).where(SessionRow.uid == sess.uid))
                if row_s is None:
                    row_s = s.scalar(
                        select(SessionRow).where(
                            SessionRow.study_id == self.dst_study.id,
                            SessionRow.reader_id == self.reader_map[src_rid],
                            SessionRow.arm == sess.arm,
                        )
                    )
                    if row_s is not None:
                        self.conflicts.append(
                            f"reader {self.src_readers[src_rid].pseudonym} arm {sess.arm}: "
                            "session exists here with another id; reads merged into it"
                        )
                if row_s is None:
                    row_s = SessionRow(
                        **row_values(sess, exclude=("id", "study_id", "reader_id")),
                        study_id=self.dst_study.id,
                        reader_id=self.reader_map[src_rid],
                    )
                    s.add(row_s)
                    s.flush()
                    self.sessions_added += 1
                elif row_s.ended_at is None and sess.ended_at is not None:
                    row_s.ended_at = sess.ended_at
                self.session_map[sess.id] = row_s.id

    def reads(self, case_of: dict[int, Case]) -> None:
        """Reads by uid; ``case_of`` maps the other database's case ids to our cases."""
        s = self.s
        src_reads = self.other.reads(self.src_study.id, include_superseded=True)
        id_map: dict[int, int] = {}
        existing = {
            r.uid: r
            for r in s.scalars(select(ReadRow).where(ReadRow.study_id == self.dst_study.id))
        }
        superseded_here = {r.supersedes_id for r in existing.values() if r.supersedes_id}
        effective_here = {
            (r.reader_id, r.case_id, r.condition): r
            for r in existing.values()
            if r.id not in superseded_here
        }
        for r in src_reads:
            if r.uid in existing:
                self.present += 1
                id_map[r.id] = existing[r.uid].id
                continue
            case = case_of[r.case_id]
            key = (self.reader_map[r.reader_id], case.id, r.condition)
            if r.supersedes_id is None and key in effective_here:
                here = effective_here[key]
                if (here.label, here.confidence, here.anomaly_prob) != (
                    r.label,
                    r.confidence,
                    r.anomaly_prob,
                ):
                    self.conflicts.append(
                        f"reader {self.src_readers[r.reader_id].pseudonym} case "
                        f"{case.pseudonym} {r.condition}: read {r.uid} differs from "
                        f"{here.uid} already here; not imported"
                    )
                else:
                    self.present += 1
                continue
            row = ReadRow(
                **row_values(r, exclude=_LOCAL_IDS),
                session_id=self.session_map[r.session_id],
                study_id=self.dst_study.id,
                reader_id=self.reader_map[r.reader_id],
                case_id=case.id,
                supersedes_id=id_map.get(r.supersedes_id) if r.supersedes_id else None,
            )
            s.add(row)
            s.flush()
            id_map[r.id] = row.id
            effective_here[key] = row
            self.reads_added += 1


def other_reader_id(readers: dict[int, Reader], pseudonym: str) -> int:
    return next(rid for rid, r in readers.items() if r.pseudonym == pseudonym)
