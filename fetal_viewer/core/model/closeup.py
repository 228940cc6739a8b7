"""The second look: a close-up of the head, read beside the whole frame.

A fetal head fills a small part of many scans (a first-trimester head is a few tens of pixels
wide at the network's input size) and a large part of others (scans cropped and resized by
the publisher). A model whose card names ``"second_look": "head-closeup"`` is read twice
where :func:`~fetal_viewer.core.measure.head.find_head` finds a skull: the whole frame, and a
square of :data:`HALF_AXES` semi-major axes either side of the head's centre resized to
:data:`SIZE` pixels. The two views' probabilities are averaged. The domain guard and the
heatmaps stay those of the whole frame: a close-up decides no frame's domain, since the head
finder also finds rings in foreign images (an echocardiogram's chambers), whose close-ups
can look like a head (docs/real-anatomy.md says how the rule was chosen and measured).
Where no skull is found (anencephaly, foreign images) the whole frame is read alone.

The head finder costs several times the network's pass on the CPU (docs/benchmarks.md), and
it holds Python's lock, so threads do not share it out: :func:`start_head_searches` sends
the frames of a batch to worker processes, one per core but one, while the network reads
their whole frames; then the calling thread searches the frames no worker has taken yet. A
single frame is searched in this process (a worker would only add the trip). The workers
are spawned, since a forked Qt or torch process is unsafe, only in a program that allows
them (:mod:`fetal_viewer.core.spawning`: the app does), once (on the first batch, or by
:func:`start_workers`), run below the priority of the app's own threads, and are shared by
every predictor of the process; when one dies, the batch is searched here and a new pool is
made next time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.head import HeadFit, HeadSearch, detect_head
from fetal_viewer.core.spawning import workers_allowed

log = logging.getLogger(__name__)

#: the close-up reaches this many semi-major axes either side of the head's centre
HALF_AXES = 1.7
#: its side in pixels
SIZE = 512


def head_closeup(frame: NDArray[np.uint8], fit: HeadFit) -> NDArray[np.uint8]:
    """The close-up of the head ``fit`` that the head finder found in ``frame`` (grey or RGB
    uint8)."""
    scale = (SIZE / 2) / (HALF_AXES * fit.a)
    matrix = np.array(
        [[scale, 0.0, SIZE / 2 - scale * fit.cx], [0.0, scale, SIZE / 2 - scale * fit.cy]]
    )
    # shrinking: smooth first so that the speckle does not alias
    source = cv2.GaussianBlur(frame, (0, 0), 0.4 / scale) if scale < 0.9 else frame
    view = cv2.warpAffine(source, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    return np.asarray(view, np.uint8)


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def search_workers() -> int:
    """Worker processes for the head finder: one per core but one, which is left to the
    app's own threads (the viewer's event loop, the network); none unless the program allows
    them (:func:`~fetal_viewer.core.spawning.allow_workers`), on a single core or in a
    process that is itself a worker (a data loader's, a pool's)."""
    if not workers_allowed():
        return 0
    cores = os.cpu_count() or 1
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    # a spawned worker imports the main script again: one read from stdin cannot be
    importable = main is None or getattr(sys, "frozen", False) or os.path.isfile(main)
    alone = multiprocessing.parent_process() is None
    return cores - 1 if cores > 1 and alone and importable else 0


#: the workers' niceness: below the GUI's and the network's threads, which wait on nobody
WORKER_NICE = 10


def _worker_start() -> None:
    # Ctrl+C in a terminal reaches every process of its group: the app decides what it means,
    # and a worker follows the app (below) rather than print a KeyboardInterrupt of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # each worker is one of a core's worth: OpenCV's own threads would only contend
    cv2.setNumThreads(1)
    if hasattr(os, "nice"):  # POSIX
        os.nice(WORKER_NICE)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a worker holds both ends of its queue, so it would outlive a
        # parent that is killed: it follows it instead
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])
    os._exit(0)


#: passed to the processes multiprocessing starts (its resource tracker among them): when the
#: app is killed, the tracker removes the pool's semaphores without a warning on the terminal
#: (not in a frozen bundle, whose launcher reads the tracker's command line as it is)
_QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


def _shared_pool() -> ProcessPoolExecutor | None:
    global _pool
    with _pool_lock:
        if _pool is None and search_workers() > 0:
            if _QUIET_TRACKER not in sys.warnoptions and not getattr(sys, "frozen", False):
                sys.warnoptions.append(_QUIET_TRACKER)
            _pool = ProcessPoolExecutor(
                search_workers(),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
            )
        return _pool


def _drop_pool(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False)


def start_workers() -> None:
    """Start the head finder's worker processes now (they start on the first batch
    otherwise): each imports its modules at the system's usual priority, which a viewer
    does before its first *Analyse study* rather than during it."""
    pool = _shared_pool()
    if pool is not None:
        for _ in range(search_workers()):
            pool.submit(int)  # each submit starts one more worker while none is idle


def start_head_searches(
    frames: Sequence[NDArray], workers: bool = True
) -> Callable[[], list[HeadSearch]]:
    """Start the head finder on ``frames`` (in worker processes unless ``workers`` is
    False); the returned function waits for and returns their :class:`HeadSearch` results,
    in order (the same as ``detect_head`` on each)."""
    arrays = [np.asarray(frame) for frame in frames]
    pool = _shared_pool() if workers and len(arrays) > 1 else None
    if pool is None:
        return lambda: [detect_head(a) for a in arrays]
    # the workers take frames from the front, half the batch or two each ahead, and the
    # calling thread takes them from the back once the network is done: no frame is sent
    # that is searched here, so none is ever cancelled (a pool that breaks with cancelled
    # work fails in its own thread)
    todo = deque(range(len(arrays)))
    sent: dict[int, Future[HeadSearch]] = {}
    ahead = max(2 * search_workers(), len(arrays) // 2)
    broken = False

    def send() -> None:
        nonlocal broken
        try:
            while not broken and todo and sum(not f.done() for f in sent.values()) < ahead:
                i = todo.popleft()
                sent[i] = pool.submit(detect_head, arrays[i])
        except RuntimeError as exc:  # a broken or shut-down pool: this frame is searched here
            todo.appendleft(i)
            broken = True
            _lost(pool, exc)

    def wait() -> list[HeadSearch]:
        nonlocal broken
        found: dict[int, HeadSearch] = {}
        while todo:
            i = todo.pop()
            found[i] = detect_head(arrays[i])
            send()
        for i, future in sent.items():
            try:
                found[i] = future.result()
            except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                if not broken:
                    broken = True
                    _lost(pool, exc)
                found[i] = detect_head(arrays[i])
        return [found[i] for i in range(len(arrays))]

    send()
    return wait


def _lost(pool: ProcessPoolExecutor, exc: BaseException) -> None:
    log.warning("head finder workers failed (%s); searching in this process", exc)
    _drop_pool(pool)
