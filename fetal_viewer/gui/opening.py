"""Opening studies in the main window: the File > Open dialogs, drops, the scan worker,
grouping plain images into studies (asking when there are several), the load problems and
the recent files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMenu

from fetal_viewer.core.io.grouping import (
    ImageGrouping,
    image_series,
    infer_grouping,
    read_mapping,
    regroup,
)
from fetal_viewer.core.io.study import LoadResult
from fetal_viewer.errors import StudyLoadError
from fetal_viewer.gui.grouping import ImageGroupingDialog
from fetal_viewer.gui.window_base import WindowBase
from fetal_viewer.gui.workers import open_paths_job

log = logging.getLogger("fetal_viewer.gui")

MAX_RECENT = 10
REMEMBER_RECENT = "privacy/remember_recent"


class OpeningMixin(WindowBase):
    # made by MainWindow
    recent_menu: QMenu
    commands_remember_recent: QAction
    grouping_dialog: ImageGroupingDialog | None

    def open_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open ultrasound files", self._last_dir(), "All files (*)"
        )
        if paths:
            self.open_paths(paths, show=True)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self._last_dir())
        if folder:
            self.open_paths([folder], show=True)

    def open_paths(
        self,
        paths: Sequence[str | Path],
        grouping: ImageGrouping | None = None,
        show: bool = False,
    ) -> None:
        """Scan ``paths`` in a worker; patients are added when the scan returns. Plain
        images are grouped by ``grouping``; None asks (when there are several). With
        ``show`` (the user asked to open them) the first series opened is shown; otherwise
        (studies arriving from PACS, the demo) only when none is on screen, so that nothing
        arriving takes the image a reader is looking at away."""
        names = [str(p) for p in paths]
        if not names:
            return
        self._set_loading(+1, f"Opening {', '.join(Path(p).name for p in names)}…")
        from superqt.utils import create_worker

        worker = create_worker(open_paths_job, names, _start_thread=False)
        worker.returned.connect(lambda result: self._on_scanned(names, result, grouping, show))
        worker.errored.connect(lambda exc: self.sink.report(exc, "Opening files"))
        worker.finished.connect(lambda *_: self._set_loading(-1))
        self._start(worker)

    def _on_scanned(
        self, paths: list[str], result: LoadResult, grouping: ImageGrouping | None, show: bool
    ) -> None:
        """Group plain images as asked (or ask), then show what was opened."""
        if self._closed:
            return
        images = image_series(result)
        if not images:
            self._on_opened(paths, result, show=show)
            return
        if grouping is not None:
            self._on_opened(paths, regroup(result, grouping), grouping, show)
            return
        if len(images) == 1:
            self._on_opened(paths, regroup(result, ImageGrouping.ONE_STUDY), show=show)
            return
        folders = {s.source.resolve().parent for s in images}
        dialog = ImageGroupingDialog(len(images), len(folders), infer_grouping(result), self)
        self.grouping_dialog = dialog

        def chosen() -> None:
            choice = dialog.choice()
            try:
                mapping = (
                    read_mapping(dialog.csv.text()) if choice is ImageGrouping.MAPPING else None
                )
                grouped = regroup(result, choice, mapping)
            except Exception as exc:
                self.sink.report(exc, "Grouping the images")
                return
            self._on_opened(paths, grouped, choice, show)

        dialog.accepted.connect(chosen)
        dialog.finished.connect(self._grouping_done)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    def _grouping_done(self, _result: int) -> None:
        self.grouping_dialog = None

    def _on_opened(
        self,
        paths: list[str],
        result: LoadResult,
        grouping: ImageGrouping | None = None,
        show: bool = False,
    ) -> None:
        if self._closed:
            return
        added = self.browser.add_patients(list(result.patients))
        for p in paths:
            self.add_recent(p)
        problems = list(result.problems)
        if problems:
            self._report_problems(problems)
        if added:
            self.loader.request_thumbnails(added)
            how = f" (images: {grouping.value})" if grouping is not None else ""
            self.status_label.setText(
                f"Opened {len(added)} series of {len(result.patients)} patient(s){how}."
            )
            if show or self.state.series is None:
                self.browser.select_series(added[0])
        elif opened := [s for pt in result.patients for st in pt.studies for s in st.series]:
            self.status_label.setText(f"Already open: {len(opened)} series.")
            if show:
                self.browser.select_series(opened[0])
        elif not problems:
            self.sink.report(
                StudyLoadError(
                    "No ultrasound images were found.",
                    why="The files are not DICOM or image files the viewer can read.",
                    fix="Open a DICOM file, a DICOMDIR, a folder of them, or PNG/JPEG frames.",
                    path=paths[0],
                ),
                "Opening files",
            )
        self.study_opened.emit(added)

    def _report_problems(self, problems: list[StudyLoadError]) -> None:
        if len(problems) == 1:
            self.sink.report(problems[0], "Some files could not be opened")
            return
        first = problems[0]
        summary = StudyLoadError(
            f"{len(problems)} files could not be opened; the others were loaded.",
            why="\n".join(str(p.path or p.what) for p in problems[:10])
            + ("\n…" if len(problems) > 10 else "")
            + f"\nFirst problem: {first.what} {first.why}",
            fix=first.fix or "See the log file for each file's reason.",
        )
        for p in problems:
            log.warning("load problem: %s", p.message)
        self.sink.report(summary, "Some files could not be opened")

    # ----- recent ------------------------------------------------------------------------
    # Folders are often named after the patient, so their paths are kept for this session
    # only unless the user opts in ("Remember recent files"); then they are written to the
    # settings file. The log names them by token (core.redact) either way.
    @property
    def remember_recent(self) -> bool:
        return str(self.settings.value(REMEMBER_RECENT, "false")).lower() == "true"

    def set_remember_recent(self, on: bool) -> None:
        self.settings.setValue(REMEMBER_RECENT, on)
        if on:
            self.settings.setValue("recent", self._recent)
        else:
            self.settings.remove("recent")
        self._rebuild_recent_menu()

    def recent(self) -> list[str]:
        return list(self._recent)

    def _stored_recent(self) -> list[str]:
        if not self.remember_recent:
            self.settings.remove("recent")  # written by an older version
            return []
        value = self.settings.value("recent", [])
        if isinstance(value, str):  # QSettings stores a one-item list as a plain string
            return [value]
        return [str(v) for v in value] if isinstance(value, list) else []

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        self._recent = [path, *(p for p in self._recent if p != path)][:MAX_RECENT]
        if self.remember_recent:
            self.settings.setValue("recent", self._recent)
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self._recent:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p], show=True))
        if self._recent:
            self.recent_menu.addSeparator()
        self.recent_menu.addAction(self.commands_remember_recent)

    # ----- drag and drop ---------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls: list[QUrl] = event.mimeData().urls()
        paths = [u.toLocalFile() for u in urls if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths, show=True)
