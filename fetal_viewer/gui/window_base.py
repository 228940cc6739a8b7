"""What the parts of the main window share: its signals, the widgets and services the parts
use (made by :class:`~fetal_viewer.gui.main_window.MainWindow`), and the worker plumbing.

The main window is put together from this base and the parts that build on it:
:mod:`.opening` (files, grouping, recent), :mod:`.viewer_ai` (model, frame AI, study
analysis) and :mod:`.export` (PNG and HTML exports).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QLabel, QMainWindow, QProgressBar

from fetal_viewer.gui.workers import release_worker

if TYPE_CHECKING:
    from superqt.utils import FunctionWorker

    from fetal_viewer.core.viewer.state import ViewerState
    from fetal_viewer.gui.ai_panel import AIPanel
    from fetal_viewer.gui.browser import StudyBrowser
    from fetal_viewer.gui.error_sink import ErrorSink
    from fetal_viewer.gui.image_view import ImageView
    from fetal_viewer.gui.workers import AnyWorker, FrameLoader, ModelService

R = TypeVar("R")


class WindowBase(QMainWindow):
    study_opened = Signal(object)  # list of patients added
    frame_shown = Signal(int)  # index now on screen
    ai_shown = Signal(int)  # index whose AI result is on screen
    painted = Signal()  # the window's first paint (start-up timing)

    # made by MainWindow.__init__
    settings: QSettings
    sink: ErrorSink
    loader: FrameLoader
    model: ModelService
    state: ViewerState
    view: ImageView
    browser: StudyBrowser
    ai_panel: AIPanel
    status_label: QLabel
    status_progress: QProgressBar
    _workers: set[AnyWorker]
    _loading: int
    _closed: bool
    _recent: list[str]

    def _last_dir(self) -> str:
        recent = self._recent
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def run_job(
        self,
        fn: Callable[..., R],
        *args: object,
        context: str,
        on_returned: Callable[[R], object] | None = None,
    ) -> FunctionWorker[R]:
        """Run ``fn(*args)`` in a worker with status-bar progress and the error sink."""
        self._set_loading(+1, f"{context}…")
        from superqt.utils import create_worker

        worker: FunctionWorker[R] = create_worker(fn, *args, _start_thread=False)
        if on_returned is not None:
            worker.returned.connect(on_returned)
        worker.errored.connect(lambda exc: self.sink.report(exc, context))
        worker.finished.connect(lambda *_: self._set_loading(-1))
        self._start(worker)
        return worker

    def _start(self, worker: AnyWorker) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda *_: self._release_worker(worker))
        worker.start()

    def _release_worker(self, worker: AnyWorker) -> None:
        self._workers.discard(worker)
        release_worker(worker)

    def _set_loading(self, delta: int, message: str = "") -> None:
        self._loading = max(0, self._loading + delta)
        if message:
            self.status_label.setText(message)
        self._update_busy()

    def _update_busy(self, *_args: object) -> None:
        busy = self._loading > 0 or self.model.is_busy()
        self.status_progress.setVisible(busy)
        if busy and self.state.job is None:
            self.status_progress.setRange(0, 0)  # indeterminate
