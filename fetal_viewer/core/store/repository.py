"""The store's public face: a :class:`Store` whose methods run one unit of work each and
return frozen dataclasses (never ORM rows).

Every write commits before the method returns; on SQLite with ``synchronous=FULL`` in WAL
mode that means the data is on disk. Reads are never updated: :meth:`Store.correct_read`
adds a new row that supersedes the old one.

Each public method writes in at most one transaction, so on PostgreSQL (SERIALIZABLE) a
method whose transaction meets a serialization failure or deadlock is run again, a bounded
number of times with a randomised back-off (:attr:`Store.max_retries`); a rolled-back
attempt has stored nothing, so a retry cannot duplicate a read.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fetal_viewer.core.store import engine as eng
from fetal_viewer.core.store.models import (
    AuditRow,
    CaseRow,
    EnrolmentRow,
    ReaderRow,
    ReadRow,
    SessionRow,
    StudyRow,
)
from fetal_viewer.core.store.records import (
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
    new_uid,
    record,
    row_values,
    utcnow,
)
from fetal_viewer.errors import ProtocolError, StoreError

log = logging.getLogger(__name__)


def _case_pseudonym(seed: int, index: int) -> str:
    return f"C{seed % 1000:03d}-{index + 1:04d}"


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _retrying(method: Callable[Concatenate[Store, _P], _T]) -> Callable[Concatenate[Store, _P], _T]:
    """Run a store method again when its transaction met a serialization failure or deadlock
    (PostgreSQL); other errors, and the last failure, propagate as they are."""

    def wrapper(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        attempt = 0
        while True:
            try:
                return method(self, *args, **kwargs)
            except StoreError as exc:
                if attempt >= self.max_retries or not eng.is_retryable(exc):
                    raise
                attempt += 1
                self.retries += 1
                delay = min(self.retry_max_delay_s, self.retry_base_delay_s * 2 ** (attempt - 1))
                log.info(
                    "%s: transaction conflicted (%s); retry %d of %d in up to %.0f ms",
                    method.__name__,
                    exc.why,
                    attempt,
                    self.max_retries,
                    delay * 1000,
                )
                time.sleep(delay * random.uniform(0.5, 1.0))

    functools.update_wrapper(wrapper, method)
    return wrapper


class Store:
    """Reader-study database. Make one with :func:`open_store`."""

    #: how often a method is run again after a serialization failure or deadlock
    max_retries: int = 8
    retry_base_delay_s: float = 0.005
    retry_max_delay_s: float = 0.5

    def __init__(self, engine: Engine, backup: Path | None = None) -> None:
        self.engine = engine
        self.backup_path = backup
        self._factory = sessionmaker(engine, expire_on_commit=False)
        #: retries made so far (serialization failures and deadlocks met)
        self.retries = 0

    # -- plumbing -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def unit_of_work(self, where: str) -> Iterator[Session]:
        """One session, one transaction, committed (durably) on success."""
        with eng.translated(where), self._factory() as session, session.begin():
            yield session

    def _audit(
        self, s: Session, actor: str, action: str, study_id: int | None, **detail: Any
    ) -> None:
        s.add(AuditRow(at=utcnow(), actor=actor, action=action, study_id=study_id, detail=detail))

    # -- readers --------------------------------------------------------------------------
    @_retrying
    def add_reader(
        self, pseudonym: str, role: str = "radiologist", years_experience: float = 0.0
    ) -> Reader:
        if not pseudonym or not pseudonym.strip():
            raise StoreError("A reader needs a pseudonym.", fix="Give a non-empty pseudonym.")
        try:
            with self.unit_of_work("adding a reader") as s:
                row = ReaderRow(
                    pseudonym=pseudonym.strip(),
                    role=role,
                    years_experience=float(years_experience),
                    created_at=utcnow(),
                )
                s.add(row)
                s.flush()
                self._audit(s, "coordinator", "add_reader", None, reader=row.pseudonym)
                return record(Reader, row)
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            raise StoreError(
                f"A reader named {pseudonym!r} already exists.",
                fix="Choose another pseudonym, or enrol the existing reader.",
            ) from exc

    @_retrying
    def get_reader(self, pseudonym: str) -> Reader:
        with self.unit_of_work("looking up a reader") as s:
            row = s.scalar(select(ReaderRow).where(ReaderRow.pseudonym == pseudonym))
            if row is None:
                raise StoreError(
                    f"No reader named {pseudonym!r}.",
                    fix="Add the reader first (fetal-viewer study add-reader).",
                )
            return record(Reader, row)

    @_retrying
    def list_readers(self) -> list[Reader]:
        with self.unit_of_work("listing readers") as s:
            return [record(Reader, r) for r in s.scalars(select(ReaderRow).order_by(ReaderRow.id))]

    # -- studies and cases ----------------------------------------------------------------
    @_retrying
    def create_study(
        self,
        name: str,
        *,
        design: str,
        labels: Sequence[str],
        cases: Sequence[CaseSpec],
        seed: int,
        washout_days: float = 0.0,
        confidence_scale: tuple[int, int] = (0, 100),
        model_card: dict[str, Any] | None = None,
        model_sha256: str | None = None,
        require_ratings: bool = False,
        show_ga: bool = False,
    ) -> Study:
        if design not in DESIGNS:
            raise StoreError(f"Unknown design {design!r}.", fix=f"Use one of {DESIGNS}.")
        if not cases:
            raise StoreError("A study needs at least one case.", fix="Give a folder or manifest.")
        bad = sorted({c.reference_label for c in cases} - set(labels))
        if bad:
            raise StoreError(
                f"Reference labels {bad} are not in the study's label set {list(labels)}.",
                fix="Correct the reference-standard CSV or the label set.",
            )
        try:
            with self.unit_of_work("creating a study") as s:
                row = StudyRow(
                    name=name,
                    design=design,
                    labels=list(labels),
                    confidence_scale={"min": confidence_scale[0], "max": confidence_scale[1]},
                    seed=int(seed),
                    washout_days=float(washout_days),
                    model_card=model_card,
                    model_sha256=model_sha256,
                    created_at=utcnow(),
                    options={"require_ratings": bool(require_ratings), "show_ga": bool(show_ga)},
                )
                s.add(row)
                s.flush()
                # pseudonyms are assigned in a seeded random order, so that they say nothing
                # about file names or the order of the input list
                import random

                numbers = list(range(len(cases)))
                random.Random(int(seed)).shuffle(numbers)
                for i, c in zip(numbers, cases):
                    s.add(
                        CaseRow(
                            study_id=row.id,
                            pseudonym=_case_pseudonym(row.seed, i),
                            source_path=c.source_path,
                            frame=c.frame,
                            reference_label=c.reference_label,
                            reference_source=c.reference_source,
                            ga_weeks=c.ga_weeks,
                            center=c.center,
                        )
                    )
                self._audit(s, "coordinator", "create_study", row.id, name=name, n=len(cases))
                return self._study(row, len(cases))
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            raise StoreError(
                f"A study named {name!r} already exists.", fix="Choose another study name."
            ) from exc

    @staticmethod
    def _study(row: StudyRow, n_cases: int) -> Study:
        scale = row.confidence_scale
        return record(
            Study,
            row,
            labels=tuple(row.labels),
            confidence_scale=(int(scale["min"]), int(scale["max"])),
            model_card=row.model_card,
            n_cases=n_cases,
            require_ratings=bool((row.options or {}).get("require_ratings", False)),
            show_ga=bool((row.options or {}).get("show_ga", False)),
        )

    def _study_row(self, s: Session, name: str) -> StudyRow:
        row = s.scalar(select(StudyRow).where(StudyRow.name == name))
        if row is None:
            known = list(s.scalars(select(StudyRow.name)))
            raise StoreError(
                f"No study named {name!r}.",
                why=f"Studies in this database: {known or 'none'}.",
                fix="Check the study's name and which database is open (--db).",
            )
        return row

    @_retrying
    def get_study(self, name: str) -> Study:
        with self.unit_of_work("looking up a study") as s:
            row = self._study_row(s, name)
            n = len(list(s.scalars(select(CaseRow.id).where(CaseRow.study_id == row.id))))
            return self._study(row, n)

    @_retrying
    def list_studies(self) -> list[Study]:
        with self.unit_of_work("listing studies") as s:
            out = []
            for row in s.scalars(select(StudyRow).order_by(StudyRow.id)):
                n = len(list(s.scalars(select(CaseRow.id).where(CaseRow.study_id == row.id))))
                out.append(self._study(row, n))
            return out

    @_retrying
    def list_cases(self, study: str) -> list[Case]:
        """Cases in pseudonym order, with reference labels (coordinator only)."""
        with self.unit_of_work("listing cases") as s:
            row = self._study_row(s, study)
            q = select(CaseRow).where(CaseRow.study_id == row.id).order_by(CaseRow.pseudonym)
            return [record(Case, c) for c in s.scalars(q)]

    # -- enrolment and sessions -----------------------------------------------------------
    @_retrying
    def enrol(self, study: str, reader: str, order_seed: int | None = None) -> Enrolment:
        """Enrol a reader; their case-order seed derives from the study seed (stored)."""
        import zlib

        with self.unit_of_work("enrolling a reader") as s:
            st = self._study_row(s, study)
            rd = s.scalar(select(ReaderRow).where(ReaderRow.pseudonym == reader))
            if rd is None:
                raise StoreError(f"No reader named {reader!r}.", fix="Add the reader first.")
            existing = s.scalar(
                select(EnrolmentRow).where(
                    EnrolmentRow.study_id == st.id, EnrolmentRow.reader_id == rd.id
                )
            )
            if existing is not None:
                return Enrolment(st.name, rd.pseudonym, existing.order_seed)
            if order_seed is None:
                order_seed = zlib.crc32(f"{st.seed}:{rd.pseudonym}".encode()) & 0x7FFFFFFF
            s.add(
                EnrolmentRow(
                    study_id=st.id, reader_id=rd.id, order_seed=order_seed, created_at=utcnow()
                )
            )
            self._audit(s, "coordinator", "enrol", st.id, reader=rd.pseudonym, seed=order_seed)
            return Enrolment(st.name, rd.pseudonym, order_seed)

    @_retrying
    def enrolments(self, study: str) -> list[Enrolment]:
        with self.unit_of_work("listing enrolments") as s:
            st = self._study_row(s, study)
            q = (
                select(EnrolmentRow, ReaderRow)
                .join(ReaderRow, ReaderRow.id == EnrolmentRow.reader_id)
                .where(EnrolmentRow.study_id == st.id)
                .order_by(ReaderRow.pseudonym)
            )
            return [Enrolment(st.name, r.pseudonym, e.order_seed) for e, r in s.execute(q)]

    @_retrying
    def sessions(self, study_id: int, reader_id: int) -> list[ReadingSessionInfo]:
        with self.unit_of_work("listing sessions") as s:
            q = (
                select(SessionRow)
                .where(SessionRow.study_id == study_id, SessionRow.reader_id == reader_id)
                .order_by(SessionRow.arm)
            )
            return [record(ReadingSessionInfo, r) for r in s.scalars(q)]

    @_retrying
    def start_session(
        self, study_id: int, reader_id: int, arm: int, condition: str, order_seed: int
    ) -> ReadingSessionInfo:
        """Start (or return the already started) session of a reader in an arm."""
        with self.unit_of_work("starting a session") as s:
            row = s.scalar(
                select(SessionRow).where(
                    SessionRow.study_id == study_id,
                    SessionRow.reader_id == reader_id,
                    SessionRow.arm == arm,
                )
            )
            if row is None:
                row = SessionRow(
                    uid=new_uid(),
                    study_id=study_id,
                    reader_id=reader_id,
                    arm=arm,
                    condition=condition,
                    order_seed=order_seed,
                    started_at=utcnow(),
                )
                s.add(row)
                s.flush()
                self._audit(s, f"reader:{reader_id}", "start_session", study_id, arm=arm)
            return record(ReadingSessionInfo, row)

    @_retrying
    def end_session(self, session_id: int, at: datetime | None = None) -> ReadingSessionInfo:
        with self.unit_of_work("ending a session") as s:
            row = s.get(SessionRow, session_id)
            if row is None:
                raise StoreError(f"No reading session {session_id}.")
            if row.ended_at is None:
                row.ended_at = at or utcnow()
                self._audit(s, f"reader:{row.reader_id}", "end_session", row.study_id, arm=row.arm)
            return record(ReadingSessionInfo, row)

    # -- reads ----------------------------------------------------------------------------
    @_retrying
    def add_read(
        self, new: NewRead, *, supersedes: int | None = None, reason: str | None = None
    ) -> Read:
        """Store one read durably; returns it as a :class:`Read`."""
        with self.unit_of_work("saving a read") as s:
            return record(Read, self._insert_read(s, new, supersedes, reason))

    def _insert_read(
        self, s: Session, new: NewRead, supersedes: int | None, reason: str | None
    ) -> ReadRow:
        sess = s.get(SessionRow, new.session_id)
        if sess is None:
            raise StoreError(f"No reading session {new.session_id}.")
        if supersedes is None:
            dup = s.scalar(
                select(ReadRow.uid).where(
                    ReadRow.study_id == sess.study_id,
                    ReadRow.reader_id == sess.reader_id,
                    ReadRow.case_id == new.case_id,
                    ReadRow.condition == new.condition,
                )
            )
            if dup is not None:
                raise ProtocolError(
                    f"This {new.condition} read of the case is already stored.",
                    why=f"Read {dup} was submitted before (another window or process?).",
                    fix="Reload the session; a stored read can only be corrected.",
                )
        values = row_values(new, exclude=("session_id",))
        for name in ("confidence", "anomaly_prob", "active_ms", "position"):
            values[name] = None if values[name] is None else int(values[name])  # None: not set
        row = ReadRow(
            **values,
            session_id=sess.id,
            study_id=sess.study_id,
            reader_id=sess.reader_id,
            supersedes_id=supersedes,
            correction_reason=reason,
        )
        s.add(row)
        s.flush()
        return row

    @_retrying
    def reads(
        self,
        study_id: int,
        reader_id: int | None = None,
        *,
        include_superseded: bool = False,
    ) -> list[Read]:
        """Reads of a study (by default only the effective ones), in submission order."""
        with self.unit_of_work("loading reads") as s:
            q = select(ReadRow).where(ReadRow.study_id == study_id)
            if reader_id is not None:
                q = q.where(ReadRow.reader_id == reader_id)
            rows = [record(Read, r) for r in s.scalars(q.order_by(ReadRow.id))]
        if include_superseded:
            return rows
        superseded = {r.supersedes_id for r in rows if r.supersedes_id is not None}
        return [r for r in rows if r.id not in superseded]

    @_retrying
    def correct_read(
        self,
        read_id: int,
        *,
        reason: str,
        label: str | None = None,
        confidence: int | None = None,
        anomaly_prob: int | None = None,
        free_text: str | None = None,
        actor: str = "coordinator",
    ) -> Read:
        """A correction: a new row superseding ``read_id`` (the old row stays)."""
        if not reason.strip():
            raise StoreError("A correction needs a reason.", fix="Say why the read is corrected.")
        with self.unit_of_work("correcting a read") as s:
            old_row = s.get(ReadRow, read_id)
            if old_row is None:
                raise StoreError(f"No read {read_id}.")
            old = record(Read, old_row)
            later = s.scalar(select(ReadRow.id).where(ReadRow.supersedes_id == read_id))
            if later is not None:
                raise StoreError(
                    f"Read {read_id} was already corrected by read {later}.",
                    fix="Correct the newest read instead.",
                )
            changes = {
                "label": label,
                "confidence": confidence,
                "anomaly_prob": anomaly_prob,
                "free_text": free_text,
            }
            new = record(
                NewRead,
                old,
                uid=new_uid(),
                submitted_at=utcnow(),
                **{k: v for k, v in changes.items() if v is not None},
            )
            out = record(Read, self._insert_read(s, new, read_id, reason))
            self._audit(s, actor, "correct_read", old.study_id, read=read_id, new=out.id)
            return out

    @_retrying
    def audit_log(self, study_id: int | None = None) -> list[AuditEntry]:
        with self.unit_of_work("reading the audit log") as s:
            q = select(AuditRow).order_by(AuditRow.id)
            if study_id is not None:
                q = q.where(AuditRow.study_id == study_id)
            return [record(AuditEntry, r) for r in s.scalars(q)]

    def readers_by_id(self) -> dict[int, Reader]:
        return {r.id: r for r in self.list_readers()}

    # -- merge ----------------------------------------------------------------------------
    @_retrying
    def merge_from(self, other: Store, study: str) -> MergeReport:
        """Import a reader workstation's database (a copy of this study) into this one.

        Idempotent: rows already present (same uid) are skipped. A read that disagrees with
        an effective read already here for the same reader, case and condition is not
        imported and is listed as a conflict (:func:`fetal_viewer.core.store.merge.merge`).
        """
        from fetal_viewer.core.store.merge import merge

        return merge(self, other, study)


def open_store(
    url_or_path: str | Path | None = None,
    *,
    busy_timeout_s: float = eng.DEFAULT_BUSY_TIMEOUT_S,
    upgrade: bool = True,
    create: bool = True,
) -> Store:
    """Open (creating if needed, unless ``create`` is False) a store and upgrade it to the
    newest schema.

    ``url_or_path``: a file path, ``sqlite:///...`` or ``postgresql://...`` URL, or None for
    the default file in the user data folder. An old database is upgraded in place after a
    backup copy beside it (:attr:`Store.backup_path`). Without ``create`` a SQLite file that
    does not exist is refused: a mistyped path would otherwise make an empty database.
    """
    url = eng.to_url(url_or_path)
    path = eng.sqlite_path(url)
    if not create and path is not None and not path.is_file():
        raise StoreError(
            "There is no study database at this path.",
            why="The file does not exist; nothing was created.",
            fix="Check the path (a new database is made by creating a study in it).",
            path=path,
        )
    engine = eng.make_engine(url, busy_timeout_s=busy_timeout_s)
    try:
        with eng.translated("opening the database"):
            backup = eng.upgrade_to_head(engine) if upgrade else None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, backup)
