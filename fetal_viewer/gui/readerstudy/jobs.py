"""Work the reader-study windows run off the GUI thread, and the serial lane that runs it.

Functions here never touch widgets. :class:`Lane` runs callables one at a time in its own
thread (a one-thread pool of superqt workers), so a :class:`ReadingSession` (which keeps a
little state) is only ever used by one thread, and a submit can never overtake another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThreadPool
from superqt.utils import FunctionWorker, create_worker

from fetal_viewer.core.io.loader import open_series
from fetal_viewer.core.model.checkpoint import sha256_file
from fetal_viewer.errors import DataError, ModelLoadError
from fetal_viewer.gui.workers import release_worker


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
        self._workers: set[FunctionWorker[Any]] = set()
        self._closed = False

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        context: str,
        on_returned: Callable[[Any], None] | None = None,
        on_errored: Callable[[BaseException], None] | None = None,
        **kwargs: Any,
    ) -> FunctionWorker[Any] | None:
        if self._closed:
            return None
        worker: FunctionWorker[Any] = create_worker(
            fn, *args, _start_thread=False, _ignore_errors=True, **kwargs
        )
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

    def _release(self, worker: FunctionWorker[Any]) -> None:
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
@dataclass(frozen=True)
class CaseImage:
    pseudonym: str
    frame: np.ndarray  # (H, W, 3) uint8 RGB
    spacing_mm: tuple[float, float] | None
    calibration_note: str


def read_case_frame(path: str | Path, index: int = 0) -> tuple[np.ndarray, Any]:
    """(frame as uint8 RGB, calibration) of one frame of one file, through the study loader."""
    series = open_series(path)
    return series.frame(index), series.calibration


def load_case_image(pseudonym: str, path: str, index: int) -> CaseImage:
    frame, calibration = read_case_frame(path, index)
    spacing = getattr(calibration, "spacing_mm", None)
    note = "" if spacing else (getattr(calibration, "reason", "") or "not calibrated")
    return CaseImage(pseudonym, frame, spacing, note)


# ---------------------------------------------------------------------------------------
# the study's model, as the protocol's AI provider
# ---------------------------------------------------------------------------------------
file_sha256 = sha256_file  # the name the reading window imports


class StudyModel:
    """The protocol's ``AIProvider``: the study's model run on a case's frame, with the
    Grad-CAM heatmap of the top class. Loading and inference hold one lock, so all model
    work is serial. The reading mode only ever calls it through the core's blinded
    ``ReadingSession.get_ai``."""

    def __init__(self, card_path: str | Path, expected_sha: str | None = None) -> None:
        self.card_path = Path(card_path)
        self.sha = file_sha256(self.card_path)
        if expected_sha and expected_sha != self.sha:
            raise ModelLoadError(
                "This model card is not the study's model.",
                why=f"The study was created with model sha256 {expected_sha[:12]}…, this card "
                f"has {self.sha[:12]}….",
                fix="Choose the model card the coordinator used for this study.",
                path=self.card_path,
            )
        self._lock = threading.Lock()
        self._predictor: Any = None
        self.classes: tuple[str, ...] = ()

    def ensure_loaded(self) -> StudyModel:
        with self._lock:
            if self._predictor is None:
                from fetal_viewer.core.model.checkpoint import load_checkpoint
                from fetal_viewer.core.model.predictor import Predictor

                loaded = load_checkpoint(self.card_path)
                self.classes = tuple(loaded.card.classes)
                self._predictor = Predictor(loaded)
        return self

    def __call__(self, case: Any) -> Any:
        from fetal_viewer.core.readerstudy.protocol import AIOutput

        self.ensure_loaded()
        frame, _ = read_case_frame(case.source_path, case.frame)
        with self._lock:
            preds = self._predictor.predict([frame], batch_size=1, with_cam=True)
            probs = np.asarray(preds.probs[0], dtype=np.float64)
            top = int(np.argmax(probs))
            heatmap = preds.heatmap(0, top) if preds.cams is not None else None
        return AIOutput(
            model_sha=self.sha,
            probabilities={c: float(p) for c, p in zip(preds.classes, probs)},
            heatmap=None if heatmap is None else np.asarray(heatmap, dtype=np.float32),
            input_size=self._predictor.spec.input_size,
        )


# ---------------------------------------------------------------------------------------
# store jobs
# ---------------------------------------------------------------------------------------
def open_store_job(db: str | Path | None) -> Any:
    from fetal_viewer.core.store import open_store

    return open_store(db)


@dataclass(frozen=True)
class StudyChoice:
    """What the reading mode's start page shows about one study."""

    name: str
    design: str
    n_cases: int
    model_sha256: str | None
    readers: tuple[Any, ...]  # ReaderProgress of every enrolled reader


def study_choices(store: Any) -> list[StudyChoice]:
    from fetal_viewer.core.readerstudy.protocol import study_progress

    out = []
    for st in store.list_studies():
        prog = study_progress(store, st.name)
        out.append(StudyChoice(st.name, st.design, st.n_cases, st.model_sha256, prog.readers))
    return out


def open_session_job(store: Any, study: str, reader: str, provider: Any) -> Any:
    from fetal_viewer.core.readerstudy.protocol import ReadingSession

    return ReadingSession(store, study, reader, ai_provider=provider)


def submit_job(session: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Store the answer durably, then return (stored read, the next step started)."""
    read = session.submit(*args, **kwargs)
    return read, session.begin()


@dataclass(frozen=True)
class NewStudy:
    """The coordinator's new-study form."""

    name: str
    design: str
    seed: int
    washout_days: float
    labels: tuple[str, ...]
    folder: str | None = None
    manifest: str | None = None
    reference_csv: str | None = None
    model_card: str | None = None


def create_study_job(store: Any, req: NewStudy) -> Any:

    from fetal_viewer.core.readerstudy import cases as case_lists

    if req.folder:
        if not req.reference_csv:
            raise DataError(
                "A folder needs a reference-standard CSV (path,label).",
                fix="Choose the reference CSV, or create the study from a manifest.",
            )
        specs = case_lists.cases_from_reference(Path(req.folder), Path(req.reference_csv))
    elif req.manifest:
        ref = Path(req.reference_csv) if req.reference_csv else None
        specs = case_lists.cases_from_manifest(Path(req.manifest), ref)
    else:
        raise DataError("Choose a folder (with a reference CSV) or a manifest.")
    card, sha, labels = case_lists.study_model(req.model_card, list(req.labels))
    return store.create_study(
        req.name,
        design=req.design,
        labels=labels,
        cases=specs,
        seed=req.seed,
        washout_days=req.washout_days,
        model_card=card,
        model_sha256=sha,
    )


def add_reader_job(store: Any, study: str, pseudonym: str, role: str, years: float) -> Any:
    if pseudonym not in {r.pseudonym for r in store.list_readers()}:
        store.add_reader(pseudonym, role, years)
    return store.enrol(study, pseudonym)


def export_job(store: Any, study: str, out_dir: str) -> dict[str, Path]:
    from fetal_viewer.core.readerstudy.export import export_all

    return export_all(store, study, Path(out_dir))


def analyse_job(store: Any, study: str, out_dir: str) -> dict[str, Path]:
    from fetal_viewer.core.readerstudy.analysis import analyze
    from fetal_viewer.core.readerstudy.export import long_rows
    from fetal_viewer.core.readerstudy.report import write_report

    rows = long_rows(store, study)
    if not rows:
        raise DataError(
            f"Study {study!r} has no reads yet; there is nothing to analyse.",
            fix="Wait until readers have submitted reads.",
        )
    result = analyze(rows, store.get_study(study).labels)
    return write_report(result, rows, Path(out_dir))


def merge_job(store: Any, study: str, source: str) -> Any:
    from fetal_viewer.core.store import open_store

    other = open_store(source)
    try:
        return store.merge_from(other, study)
    finally:
        other.close()
