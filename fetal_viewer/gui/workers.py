"""Background work for the window. Workers never touch widgets; results arrive by signal.

- :class:`FrameLoader` decodes frames (``series.frame(i)``) and thumbnails in a small thread
  pool with superqt workers, keeps a byte-bounded LRU cache (cachetools) and prefetches
  cine neighbours.
- :class:`ModelService` is the one serial model worker: a ``QThread`` draining a priority
  queue. Interactive frame requests go before "Analyse study" chunks, every request has an
  id, requests that became stale before they started are skipped, results that arrive
  stale are dropped by the caller, and results are cached per (series, frame, model sha).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from cachetools import LRUCache
from numpy.typing import NDArray
from PySide6.QtCore import QObject, QThread, QThreadPool, Signal, Slot

from fetal_viewer.core.model.guard import cine_flagged, foreign_modality
from fetal_viewer.core.progress import CancelToken
from fetal_viewer.core.viewer.results import FrameResult, ModelInfo, SeriesKey, series_key
from fetal_viewer.core.warncatch import collect_warnings
from fetal_viewer.errors import CancelledError, InferenceError

if TYPE_CHECKING:
    from superqt.utils import WorkerBase

    from fetal_viewer.core.io.study import LoadResult, Series
    from fetal_viewer.core.model.checkpoint import LoadedModel
    from fetal_viewer.core.model.predictor import Predictor

log = logging.getLogger("fetal_viewer.gui.workers")

if TYPE_CHECKING:
    #: a superqt worker of any result type: windows keep workers of several kinds in one
    #: set and never read a result from it (results arrive by signal, typed where connected)
    AnyWorker = WorkerBase[Any]


# ---------------------------------------------------------------------------------------
# frames and thumbnails
# ---------------------------------------------------------------------------------------
class FrameLoader(QObject):
    """Decode frames off the GUI thread, with an LRU cache bounded in bytes."""

    frame_ready = Signal(object, int, object)  # series key, index, (H, W, 3) uint8
    thumbnail_ready = Signal(object, object)  # series key, small (h, w, 3) uint8
    failed = Signal(object, str)  # exception, context

    def __init__(self, cache_bytes: int = 768 * 2**20, threads: int = 2) -> None:
        super().__init__()
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(threads)
        self._cache: LRUCache[tuple[SeriesKey, int], np.ndarray] = LRUCache(
            cache_bytes, getsizeof=lambda frame: frame.nbytes
        )
        self._pending: set[tuple[SeriesKey, int]] = set()
        self._workers: set[AnyWorker] = set()
        self._failed_keys: set[tuple[SeriesKey, int]] = set()

    def cached(self, series: Series, index: int) -> np.ndarray | None:
        return self._cache.get((series_key(series), index))

    def request(self, series: Series, index: int, prefetch: Iterable[int] = ()) -> None:
        """Decode ``index`` (and then ``prefetch``) unless cached or already pending."""
        for i in (index, *prefetch):
            if 0 <= i < len(series):
                self._submit(series, i)

    def _submit(self, series: Series, index: int) -> None:
        item = (series_key(series), index)
        if item in self._cache or item in self._pending or item in self._failed_keys:
            return
        self._pending.add(item)
        from superqt.utils import create_worker  # superqt imports its widgets: not at start-up

        worker = create_worker(_decode_frame, series, index, _start_thread=False)
        worker.returned.connect(self._on_frame)
        worker.errored.connect(functools.partial(self._on_error, item))
        self._run(worker)

    def _run(self, worker: AnyWorker) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda *_: self._release(worker))
        self.pool.start(worker)

    def _release(self, worker: AnyWorker) -> None:
        self._workers.discard(worker)
        release_worker(worker)

    @Slot(object)
    def _on_frame(self, result: tuple[SeriesKey, int, np.ndarray]) -> None:
        key, index, frame = result
        self._pending.discard((key, index))
        with contextlib.suppress(ValueError):  # a frame larger than the whole cache
            self._cache[(key, index)] = frame
        self.frame_ready.emit(key, index, frame)

    def _on_error(self, item: tuple[SeriesKey, int], exc: Exception) -> None:
        self._pending.discard(item)
        self._failed_keys.add(item)
        self.failed.emit(exc, f"Reading frame {item[1] + 1}")

    def request_thumbnails(self, series_list: Sequence[Series], size: int = 64) -> None:
        from superqt.utils import create_worker

        worker = create_worker(_thumbnails, list(series_list), size, _start_thread=False)
        worker.yielded.connect(lambda kv: self.thumbnail_ready.emit(kv[0], kv[1]))
        worker.errored.connect(lambda exc: self.failed.emit(exc, "Making thumbnails"))
        self._run(worker)

    def is_busy(self) -> bool:
        return bool(self._workers)

    def shutdown(self, msecs: int = 10_000) -> None:
        for worker in list(self._workers):
            worker.quit()
        self.pool.clear()
        self.pool.waitForDone(msecs)
        self._workers.clear()

    def clear(self) -> None:
        self._cache.clear()
        self._failed_keys.clear()


def release_worker(worker: AnyWorker) -> None:
    """Drop every connection to a finished worker's signals. PySide keeps connected lambdas
    (and whatever they close over: a window, a loader) alive as long as the worker's signal
    object lives, so without this a closed window is never freed."""
    for name in ("started", "yielded", "returned", "errored", "finished", "aborted"):
        signal = getattr(worker, name, None)
        if signal is None:
            continue
        # a RuntimeWarning says there was nothing left to disconnect
        with collect_warnings(), contextlib.suppress(RuntimeError, TypeError):
            signal.disconnect()


def _decode_frame(series: Series, index: int) -> tuple[SeriesKey, int, np.ndarray]:
    frame = np.ascontiguousarray(series.frame(index), dtype=np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    return series_key(series), index, frame


def _thumbnails(series_list: list[Series], size: int) -> Iterator[tuple[SeriesKey, np.ndarray]]:
    import cv2

    for series in series_list:
        frame = np.asarray(series.frame(0), dtype=np.uint8)
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=2)
        h, w = frame.shape[:2]
        scale = size / max(h, w)
        small = cv2.resize(
            frame,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
        yield series_key(series), np.ascontiguousarray(small)


def open_paths_job(paths: list[str]) -> LoadResult:
    """Scan and index files (run in a worker)."""
    from fetal_viewer.core.io import open_paths

    return open_paths([Path(p) for p in paths])


def demo_studies_job() -> str:
    """Make (once) and locate the demo studies (run in a worker)."""
    from fetal_viewer.core.phantoms.demo import ensure_demo_studies

    folder = ensure_demo_studies()
    dicom = folder / "dicom"  # the studies; masks/ and the manifest are ground truth
    return str(dicom if dicom.is_dir() else folder)


# ---------------------------------------------------------------------------------------
# the serial model worker
# ---------------------------------------------------------------------------------------
@dataclass
class AnalysisJob:
    job_id: int
    series: list[Series]
    sha: str
    total: int
    done: int = 0
    cancel: CancelToken = field(default_factory=CancelToken)
    chunks_left: int = 0


# one task kind per dataclass; ``context`` names it in error messages
@dataclass(frozen=True)
class LoadTask:
    context: ClassVar[str] = "Loading the model"
    card_path: str


@dataclass(frozen=True)
class FrameTask:
    context: ClassVar[str] = "Running the model on a frame"
    series: Series
    index: int
    method: str


@dataclass(frozen=True)
class ChunkTask:
    context: ClassVar[str] = "Analysing the study"
    job: AnalysisJob
    series: Series
    indices: tuple[int, ...]


@dataclass(frozen=True)
class StopTask:
    context: ClassVar[str] = "Stopping the model thread"


Task = LoadTask | FrameTask | ChunkTask | StopTask


@dataclass(order=True)
class _Queued:
    priority: int
    seq: int
    req: int = field(compare=False)
    task: Task = field(compare=False)


#: the one-pass all-class method (fetal_viewer.core.cam.gradcam.FAST_METHOD)
FAST_METHOD = "gradcam"
#: the same on a finer grid (fetal_viewer.core.cam.gradcam.STITCH_METHOD)
STITCH_METHOD = "gradcam-stitch"
PRIORITY_STOP, PRIORITY_LOAD, PRIORITY_FRAME, PRIORITY_ANALYSIS = -1, 0, 1, 2
#: frames per "Analyse study" chunk: the analysis batch the runtimes are measured at
ANALYSIS_BATCH = 16
#: environment variable forcing the viewer's inference backend (default: auto)
BACKEND_ENV = "FETAL_VIEWER_BACKEND"


def model_threads() -> int:
    """Threads for inference in the viewer: every core but one, left to the GUI thread."""
    return max(1, (os.cpu_count() or 2) - 1)


class ModelService(QThread):
    """All model work (loading, inference, CAM) on one thread, in priority order."""

    model_loaded = Signal(object)  # ModelInfo
    frame_result = Signal(int, object, int, object)  # request id, series key, index, FrameResult
    analysis_progress = Signal(int, int, int)  # job id, done, total
    analysis_frames = Signal(int, object, object)  # job id, series key, list of indices
    analysis_finished = Signal(int, bool)  # job id, cancelled
    failed = Signal(int, object, str)  # request/job id (0 = load), exception, context
    busy_changed = Signal(bool)

    def __init__(
        self, batch_size: int = ANALYSIS_BATCH, cache_entries: int = 20_000, *, start: bool = True
    ) -> None:
        super().__init__()
        self.setObjectName("ModelService")
        self._queue: queue.PriorityQueue[_Queued] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._cache: LRUCache[tuple[SeriesKey, int, str, str], FrameResult] = LRUCache(
            cache_entries
        )
        self.methods: tuple[str, ...] = (FAST_METHOD,)
        self._loaded: LoadedModel | None = None
        self._predictor: Predictor | None = None
        self.info: ModelInfo | None = None
        self.batch_size = batch_size
        self.latest_frame_request = 0
        self.skipped_stale = 0
        self._jobs: dict[int, AnalysisJob] = {}
        # the guard's cine rule: each cine's per-frame verdicts so far, its verdict once
        # every frame has one, and the job scoring the rest of it
        self._cine_frames: dict[tuple[SeriesKey, str], dict[int, bool]] = {}
        self._cine: dict[tuple[SeriesKey, str], tuple[int, int] | None] = {}
        self._cine_jobs: dict[tuple[SeriesKey, str], int] = {}
        self._busy = 0
        self._done.connect(self._task_done)
        if start:  # else the owner starts it (a window: once it is painted)
            self.start()

    # ----- public API (GUI thread) -----------------------------------------------------
    def load_model(self, card_path: str | Path) -> int:
        return self._put(PRIORITY_LOAD, LoadTask(str(card_path)))

    def cached(self, series: Series, index: int, method: str = FAST_METHOD) -> FrameResult | None:
        if self.info is None:
            return None
        with self._lock:
            return self._cache.get((series_key(series), index, self.info.sha, method))

    def request_frame(self, series: Series, index: int, method: str = FAST_METHOD) -> int:
        """Ask for one frame; older frame requests not yet started become stale."""
        req = next(self._ids)
        self.latest_frame_request = req
        self._put(PRIORITY_FRAME, FrameTask(series, index, method), req_id=req)
        return req

    def analyse(self, series_list: Sequence[Series]) -> int:
        """Queue every frame of ``series_list`` in batches; returns the job id."""
        if self.info is None:
            raise InferenceError(
                "No model is loaded.", fix="Open a model card with AI > Load model first."
            )
        job_id = next(self._ids)
        total = sum(len(s) for s in series_list)
        job = AnalysisJob(job_id, list(series_list), self.info.sha, total)
        chunks = [
            (series, tuple(range(start, min(len(series), start + self.batch_size))))
            for series in series_list
            for start in range(0, len(series), self.batch_size)
        ]
        job.chunks_left = len(chunks)
        self._jobs[job_id] = job
        if not chunks:
            self.analysis_finished.emit(job_id, False)
            return job_id
        for series, indices in chunks:
            self._put(PRIORITY_ANALYSIS, ChunkTask(job, series, indices), req_id=job_id)
        return job_id

    def cancel(self, job_id: int) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancel.cancel()

    def cancel_all(self) -> None:
        for job in self._jobs.values():
            job.cancel.cancel()
        self.latest_frame_request = next(self._ids)

    def is_busy(self) -> bool:
        return self._busy > 0

    def shutdown(self, msecs: int = 30_000) -> None:
        self.cancel_all()
        self._queue.put(_Queued(PRIORITY_STOP, next(self._seq), 0, StopTask()))
        if not self.wait(msecs):
            log.error("model thread did not stop within %d ms", msecs)

    # ----- internals --------------------------------------------------------------------
    def _put(self, priority: int, task: Task, req_id: int | None = None) -> int:
        req = req_id if req_id is not None else next(self._ids)
        self._busy += 1
        if self._busy == 1:
            self.busy_changed.emit(True)
        self._queue.put(_Queued(priority, next(self._seq), req, task))
        return req

    @Slot()
    def _task_done(self) -> None:
        self._busy = max(0, self._busy - 1)
        if self._busy == 0:
            self.busy_changed.emit(False)

    _done = Signal()

    def run(self) -> None:  # the model thread
        # no torch import here: with a cached ONNX runtime the viewer never loads torch
        # (2 s); the torch backend and the library heatmaps set its threads when they run
        while True:
            queued = self._queue.get()
            req, task = queued.req, queued.task
            if isinstance(task, StopTask):
                break
            try:
                self._handle(req, task)
            except CancelledError:
                if isinstance(task, ChunkTask):
                    self._finish_chunk(task.job)
            except Exception as exc:
                if isinstance(task, ChunkTask):
                    task.job.cancel.cancel()
                    self._finish_chunk(task.job)
                self.failed.emit(req, exc, task.context)
            finally:
                self._done.emit()

    def _handle(self, req: int, task: LoadTask | FrameTask | ChunkTask) -> None:
        if isinstance(task, LoadTask):
            self._load(task.card_path)
        elif isinstance(task, FrameTask):
            series, index, method = task.series, task.index, task.method
            if req < self.latest_frame_request:
                self.skipped_stale += 1  # a newer frame was asked for before this started
                return
            if self.info is None:
                return
            key = (series_key(series), index, self.info.sha, method)
            with self._lock:
                hit = self._cache.get(key)
            result = hit or self._infer(series, [index], method)[0]
            self.frame_result.emit(req, key[0], index, result)
            self._score_cine(series)
        else:
            job, series, indices = task.job, task.series, task.indices
            if job.cancel.cancelled:
                self._finish_chunk(job)
                return
            skey = series_key(series)
            with self._lock:
                todo = [i for i in indices if (skey, i, job.sha, FAST_METHOD) not in self._cache]
            if todo:
                self._infer(series, todo, FAST_METHOD, cancel=job.cancel)
            job.done += len(indices)
            self.analysis_frames.emit(job.job_id, skey, list(indices))
            self.analysis_progress.emit(job.job_id, job.done, job.total)
            self._finish_chunk(job)

    def _score_cine(self, series: Series) -> None:
        """Queue the rest of a guarded cine whose frame was asked for, so that the guard's
        cine rule can judge it (it needs every frame's own verdict)."""
        assert self.info is not None
        ckey = (series_key(series), self.info.sha)
        if len(series) < 2 or self.info.guard_note or ckey in self._cine:
            return
        if foreign_modality(series.modality) is not None:
            return  # withheld by its header whatever the cine rule would say
        if self._cine_jobs.get(ckey) in self._jobs:
            return  # already being scored
        self._cine_jobs[ckey] = self.analyse([series])

    def _judge_cine(self, series: Series, results: dict[int, FrameResult]) -> None:
        """Record the guard's verdicts on some frames of a cine; once every frame has one,
        apply the cine rule to every cached result of it (no longer pending; withheld when
        the rule says so). Called with the lock held."""
        assert self.info is not None
        skey, sha = series_key(series), self.info.sha
        ckey = (skey, sha)
        if len(series) < 2 or ckey in self._cine:
            return
        seen = self._cine_frames.setdefault(ckey, {})
        for i, r in results.items():
            if r.domain_score is None or r.domain_threshold is None:
                return  # no guard
            seen[i] = r.domain_score <= r.domain_threshold
        if len(seen) < len(series):
            return
        flagged = cine_flagged(np.array([seen[i] for i in range(len(series))]))
        self._cine[ckey] = flagged
        del self._cine_frames[ckey]
        for key, r in list(self._cache.items()):
            if key[0] == skey and key[2] == sha:
                self._cache[key] = replace(r, cine_flagged=flagged, cine_pending=False)

    def _finish_chunk(self, job: AnalysisJob) -> None:
        job.chunks_left -= 1
        if job.chunks_left <= 0 and self._jobs.pop(job.job_id, None) is not None:
            self.analysis_finished.emit(job.job_id, job.cancel.cancelled)

    def _load(self, card_path: str) -> None:
        from fetal_viewer.core.model.artifacts import sha256_file
        from fetal_viewer.core.model.checkpoint import load_checkpoint
        from fetal_viewer.core.model.predictor import Predictor

        loaded = load_checkpoint(card_path)
        card = loaded.card
        sha = card.weights_sha256 or sha256_file(card_path)
        self._loaded = loaded
        self._predictor = Predictor(
            loaded, backend=os.environ.get(BACKEND_ENV) or "auto", num_threads=model_threads()
        )
        from fetal_viewer.core.cam.gradcam import CAM_METHODS
        from fetal_viewer.core.runtime.backends import torch_available

        # the pytorch-grad-cam methods need torch; the default (first) is the stitched map
        # where it was measured to cost no more than the plain one used to
        methods = CAM_METHODS if torch_available() else (FAST_METHOD, STITCH_METHOD)
        default = self._predictor.default_cam_method
        self.methods = (default, *(m for m in methods if m != default))
        # a first pass sets the runtime up for this shape (OpenVINO: a third of a second
        # here), while the study is still being opened rather than when its frame is asked
        size = card.spec.input_size
        warm = np.zeros((1, 3, size, size), np.float32)
        self._predictor.run_arrays(warm, with_cam=True, stitch=default == STITCH_METHOD)
        if self._predictor.second_look:
            from fetal_viewer.core.model.closeup import start_workers

            start_workers()  # their start-up, too, before "Analyse study" rather than in it
        self.info = ModelInfo.from_card(
            card,
            card_path,
            sha,
            runtime=self._predictor.runtime_description,
            guard_note=loaded.guard_note,
        )
        self.model_loaded.emit(self.info)

    def _infer(
        self,
        series: Series,
        indices: list[int],
        method: str = FAST_METHOD,
        cancel: CancelToken | None = None,
    ) -> list[FrameResult]:
        assert self.info is not None
        predictor = self._predictor
        assert predictor is not None
        frames = [np.asarray(series.frame(i), dtype=np.uint8) for i in indices]
        if cancel is not None:
            cancel.raise_if_cancelled()
        stitch = method == STITCH_METHOD
        fast = method == FAST_METHOD or stitch  # Grad-CAM comes with the prediction
        preds = predictor.predict(
            frames,
            batch_size=len(frames),
            cancel=cancel,
            with_cam=fast,
            stitch=stitch,
            modality=series.header_modality,
        )
        cams = preds.cams
        if not fast:
            cams = self._library_cams(frames, method, cancel)
        results = []
        skey = series_key(series)
        with self._lock:
            ckey = (skey, self.info.sha)
            cine = self._cine.get(ckey)
            pending = (
                len(series) > 1
                and preds.domain_scores is not None
                and preds.foreign_modality is None
                and ckey not in self._cine
            )
            for j, index in enumerate(indices):
                score = preds.domain_scores
                result = FrameResult(
                    probs=np.asarray(preds.probs[j], dtype=np.float32),
                    cams=None if cams is None else np.asarray(cams[j], dtype=np.float32),
                    geometry=preds.geometries[j],
                    domain_score=None if score is None else float(score[j]),
                    domain_threshold=preds.domain_threshold,
                    cine_flagged=cine,
                    cine_pending=pending,
                    foreign_modality=preds.foreign_modality,
                )
                self._cache[(skey, index, self.info.sha, method)] = result
                results.append(result)
            self._judge_cine(series, dict(zip(indices, results)))
            # the cine rule may have just withheld these frames too
            results = [
                self._cache.get((skey, index, self.info.sha, method), r)
                for index, r in zip(indices, results)
            ]
        return results

    def _library_cams(
        self, frames: list[np.ndarray], method: str, cancel: CancelToken | None
    ) -> np.ndarray:
        """Maps of a pytorch_grad_cam method for every class, (N, C, S, S)."""
        import torch

        from fetal_viewer.core.cam.gradcam import library_cams
        from fetal_viewer.core.model.preprocess import preprocess

        torch.set_num_threads(model_threads())
        loaded = self._loaded
        assert loaded is not None
        spec = loaded.card.spec
        x = torch.from_numpy(np.stack([preprocess(f, spec).array for f in frames]))
        return library_cams(loaded.model, x, method, cancel=cancel)

    def series_probs(
        self, series: Series
    ) -> tuple[np.ndarray, list[int], NDArray[np.bool_]] | None:
        """(N_analysed, C) probabilities of the cached frames of a series, their indices,
        and which of them the domain guard lets through (all of them without a guard)."""
        if self.info is None:
            return None
        skey = series_key(series)
        with self._lock:
            found = [
                (i, r)
                for i in range(len(series))
                if (r := self._cache.get((skey, i, self.info.sha, FAST_METHOD))) is not None
            ]
        if not found:
            return None
        return (
            np.stack([r.probs for _, r in found]),
            [i for i, _ in found],
            np.array([r.in_domain is not False for _, r in found], dtype=bool),
        )
