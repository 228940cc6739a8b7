"""The workers of one PACS widget, and how their errors read."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from PySide6.QtCore import QObject
from superqt.utils import FunctionWorker, create_worker

from fetal_viewer.errors import FetalViewerError
from fetal_viewer.gui.workers import release_worker

if TYPE_CHECKING:
    from fetal_viewer.gui.workers import AnyWorker

R = TypeVar("R")


def error_text(exc: BaseException) -> str:
    """One line for the user: a typed error's message, else the exception's type and text."""
    return exc.message if isinstance(exc, FetalViewerError) else f"{type(exc).__name__}: {exc}"


class Jobs(QObject):
    """The workers of one widget: started, released when done, awaited on shutdown."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.workers: set[AnyWorker] = set()

    def run(
        self,
        fn: Callable[..., R],
        *args: object,
        on_returned: Callable[[R], object] | None = None,
        on_errored: Callable[[BaseException], object] | None = None,
        on_finished: Callable[[], object] | None = None,
    ) -> FunctionWorker[R]:
        # errors go to on_errored; superqt would otherwise re-raise them in the event loop
        worker: FunctionWorker[R] = create_worker(
            fn, *args, _start_thread=False, _ignore_errors=on_errored is not None
        )
        if on_returned is not None:
            worker.returned.connect(on_returned)
        if on_errored is not None:
            worker.errored.connect(on_errored)
        if on_finished is not None:
            worker.finished.connect(lambda *_: on_finished())
        self.workers.add(worker)
        worker.finished.connect(lambda *_: self._release(worker))
        worker.start()
        return worker

    def _release(self, worker: AnyWorker) -> None:
        self.workers.discard(worker)
        release_worker(worker)
