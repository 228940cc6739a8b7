"""Progress reporting and cooperative cancellation shared by every long core job.

Core jobs are plain functions that accept ``progress`` (a callable taking ``(done, total,
message)``) and ``cancel`` (a :class:`CancelToken`). The CLI passes a tqdm-backed callback;
the GUI passes one that emits a Qt signal from its worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, as_completed
from typing import Protocol, TypeVar

from fetal_viewer.errors import CancelledError


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


def no_progress(done: int, total: int, message: str = "") -> None:
    """A progress callback that does nothing."""


T = TypeVar("T")
R = TypeVar("R")


class CancelToken:
    """Thread-safe flag a job polls between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError()


def completed(
    pool: Executor, fn: Callable[[T], R], items: Iterable[T], cancel: CancelToken | None = None
) -> Iterator[tuple[T, R]]:
    """Run ``fn`` on every item in ``pool`` and yield ``(item, result)`` as each finishes.

    The first error, or a cancel seen between results, drops the work not yet started and
    waits for the running work before it propagates, so nothing is left writing behind it.
    """
    futures = {pool.submit(fn, item): item for item in items}
    try:
        for done in as_completed(futures):
            if cancel is not None:
                cancel.raise_if_cancelled()
            yield futures[done], done.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise


def tqdm_progress(desc: str, disable: bool = False) -> tuple[ProgressFn, Callable[[], None]]:
    """A progress callback drawing a tqdm bar on stderr, and a function closing it."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, disable=disable, leave=False, dynamic_ncols=True)

    def update(done: int, total: int, message: str = "") -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    return update, bar.close
