"""Work the reader-study windows run off the GUI thread, and the serial lane that runs it.

Functions here never touch widgets. :class:`Lane` runs callables one at a time in its own
thread (a one-thread pool of superqt workers), so a :class:`ReadingSession` (which keeps a
little state) is only ever used by one thread, and a submit can never overtake another.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PySide6.QtCore import QObject, QThreadPool
from superqt.utils import FunctionWorker, create_worker

from fetal_viewer.core.model.artifacts import sha256_file
from fetal_viewer.core.readerstudy.coordination import (
    CaseImage,
    Enrolled,
    NewStudy,
    StudyModel,
    create_study,
    enrol_reader,
    load_case_image,
    read_case_frame,
)
from fetal_viewer.errors import FetalViewerError, StudyLoadError
from fetal_viewer.gui.workers import release_worker

if TYPE_CHECKING:
    from fetal_viewer.core.readerstudy.protocol import (
        AIOutput,
        CaseView,
        ReaderProgress,
        ReadingSession,
        Step,
    )
    from fetal_viewer.core.store import MergeReport, Read, Store, Study
    from fetal_viewer.gui.workers import AnyWorker

log = logging.getLogger(__name__)
R = TypeVar("R")

__all__ = ["NewStudy", "StudyModel", "read_case_frame"]  # the windows import them from here


class Lane(QObject):
    """Run jobs in order on one background thread; results and errors come back by signal.

    ``on_error(exc, context)`` receives every failure (normally the error sink's ``report``).
    """

    def __init__(self, on_error: Callable[[BaseException, str], None], name: str) -> None:
        super().__init__()
        self.setObjectName(name)
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(1)
        self._on_error = on_error
        self._workers: set[AnyWorker] = set()
        self._closed = False

    def run(
        self,
        fn: Callable[..., R],
        *args: object,
        context: str,
        on_returned: Callable[[R], object] | None = None,
        on_errored: Callable[[BaseException], object] | None = None,
        **kwargs: object,
    ) -> FunctionWorker[R] | None:
        if self._closed:
            return None
        job = functools.partial(fn, *args, **kwargs)
        worker: FunctionWorker[R] = create_worker(job, _start_thread=False, _ignore_errors=True)
        if on_returned is not None:
            worker.returned.connect(lambda value: None if self._closed else on_returned(value))

        def errored(exc: BaseException) -> None:
            self._on_error(exc, context)
            if on_errored is not None and not self._closed:
                on_errored(exc)

        worker.errored.connect(errored)
        self._workers.add(worker)
        worker.finished.connect(lambda *_: self._release(worker))
        self.pool.start(worker)
        return worker

    def _release(self, worker: AnyWorker) -> None:
        self._workers.discard(worker)
        release_worker(worker)

    @property
    def busy(self) -> int:
        return len(self._workers)

    def shutdown(self, msecs: int = 30_000) -> bool:
        """Drop queued jobs, wait for the running one. Results arriving later are ignored."""
        self._closed = True
        self.pool.clear()
        done = self.pool.waitForDone(msecs)
        self._workers.clear()
        return bool(done)


# ---------------------------------------------------------------------------------------
# case images
# ---------------------------------------------------------------------------------------
def reader_case_image(pseudonym: str, path: str | Path, index: int) -> CaseImage:
    """:func:`load_case_image` for the reading window: a case that cannot be read is named
    by its pseudonym only, since its file's path can name the patient; the log keeps the
    reason (paths written as tokens)."""
    try:
        return load_case_image(pseudonym, path, index)
    except (FetalViewerError, OSError) as exc:
        log.warning("case %s cannot be read: %s", pseudonym, exc)
        raise StudyLoadError(
            f"Case {pseudonym} cannot be shown: its image is missing or cannot be read.",
            why="The file the study names for it is gone, moved or damaged.",
            fix="Tell the study coordinator. Your reads so far are saved; once the case is "
            "back, press Try again and go on reading.",
        ) from None


# ---------------------------------------------------------------------------------------
# the study's model, as the protocol's AI provider: StudyModel (core.readerstudy.coordination)
# ---------------------------------------------------------------------------------------
file_sha256 = sha256_file  # the name the reading window imports


# ---------------------------------------------------------------------------------------
# store jobs
# ---------------------------------------------------------------------------------------
def open_store_job(db: str | Path | None, create: bool = True) -> Store:
    from fetal_viewer.core.store import open_store

    return open_store(db, create=create)


@dataclass(frozen=True)
class StudyChoice:
    """What the reading mode's start page shows about one study."""

    name: str
    design: str
    n_cases: int
    model_sha256: str | None
    readers: tuple[ReaderProgress, ...]  # every enrolled reader's


def study_choices(store: Store) -> list[StudyChoice]:
    from fetal_viewer.core.readerstudy.protocol import study_progress

    out = []
    for st in store.list_studies():
        prog = study_progress(store, st.name)
        out.append(StudyChoice(st.name, st.design, st.n_cases, st.model_sha256, prog.readers))
    return out


def open_session_job(
    store: Store, study: str, reader: str, provider: Callable[[CaseView], AIOutput] | None
) -> ReadingSession:
    from fetal_viewer.core.readerstudy.protocol import ReadingSession

    return ReadingSession(store, study, reader, ai_provider=provider)


def submit_job(
    session: ReadingSession,
    label: str,
    confidence: int | None,
    anomaly_prob: int | None,
    *,
    free_text: str | None = None,
    active_ms: int | None = None,
    heatmap_visible: bool | None = None,
) -> tuple[Read, Step | None]:
    """Store the answer durably, then return (stored read, the next step started)."""
    read = session.submit(
        label,
        confidence,
        anomaly_prob,
        free_text=free_text,
        active_ms=active_ms,
        heatmap_visible=heatmap_visible,
    )
    return read, session.begin()


def create_study_job(store: Store, req: NewStudy) -> Study:
    return create_study(store, req)


def add_reader_job(store: Store, study: str, pseudonym: str, role: str, years: float) -> Enrolled:
    return enrol_reader(store, study, pseudonym, role, years)


def export_job(store: Store, study: str, out_dir: str) -> dict[str, Path]:
    from fetal_viewer.core.readerstudy.export import export_all

    return export_all(store, study, Path(out_dir))


def analyse_job(store: Store, study: str, out_dir: str) -> dict[str, Path]:
    from fetal_viewer.core.readerstudy.report import report_study

    return report_study(store, study, Path(out_dir))[1]


def merge_job(store: Store, study: str, source: str) -> MergeReport:
    from fetal_viewer.core.store import open_store

    other = open_store(source, create=False)
    try:
        return store.merge_from(other, study)
    finally:
        other.close()
