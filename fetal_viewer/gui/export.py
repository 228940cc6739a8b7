"""The main window's exports: the view as a PNG (cropped to the field of view) and the
per-study AI summary as HTML (written in a worker)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog

from fetal_viewer.errors import StudyLoadError
from fetal_viewer.gui.imaging import with_caption
from fetal_viewer.gui.window_base import WindowBase

if TYPE_CHECKING:
    from superqt.utils import FunctionWorker


class ExportMixin(WindowBase):
    def export_view(self, path: str | Path, with_overlay: bool) -> Path:
        """The frame at native resolution, with the window, heatmap and measurements as
        shown, cropped to the ultrasound field of view: the names and IDs scanners burn into
        the header outside it stay out of the file."""
        from fetal_viewer.core.fov import find_fov

        out = Path(path)
        frame = self.view.frame
        if frame is None:
            raise StudyLoadError("There is no image to export.", fix="Open a study first.")
        x0, y0, x1, y1 = find_fov(frame)
        image = self.view.render_frame(with_overlay).copy(x0, y0, x1 - x0, y1 - y0)
        view = self.state.ai_view()
        if with_overlay and view.in_domain is not None:
            image = with_caption(image, view.domain)  # the guard's verdict goes with the AI
        # the stub wants bytes for the format; PySide6 takes str at run time
        if not image.save(str(out), "PNG"):  # type: ignore[call-overload]
            raise StudyLoadError(
                "The image could not be written.",
                why="The folder is not writable or the disk is full.",
                fix="Choose another folder.",
                path=out,
            )
        return out

    def export_view_dialog(self, with_overlay: bool) -> None:
        if not self.view.has_image:
            return
        suffix = "overlay" if with_overlay else "frame"
        default = str(Path(self._last_dir()) / f"view-{self.state.index + 1}-{suffix}.png")
        path, _ = QFileDialog.getSaveFileName(self, "Export image", default, "PNG (*.png)")
        if path:
            try:
                self.status_label.setText(f"Saved {self.export_view(path, with_overlay)}")
            except Exception as exc:
                self.sink.report(exc, "Exporting the view")

    def export_summary(self, path: str | Path) -> FunctionWorker[Path] | None:
        """Write the per-study AI summary in a worker; returns it (None if nothing to do)."""
        study, patient, info = self.state.study, self.state.patient, self.model.info
        if study is None or patient is None or info is None:
            return None
        from fetal_viewer.gui.summary import SeriesSummaryInput, build_summary

        inputs = []
        for series in study.series:
            found = self.model.series_probs(series)
            indices = [] if found is None else found[1]
            results = [r for i in indices if (r := self.model.cached(series, i)) is not None]
            inputs.append(SeriesSummaryInput(series, indices, results))
        if not any(i.results for i in inputs):
            self.sink.report(
                StudyLoadError(
                    "The study has not been analysed yet.",
                    fix="Run AI > Analyse study (A) first, then export the summary.",
                ),
                "Exporting the AI summary",
            )
            return None
        from superqt.utils import create_worker

        worker = create_worker(
            build_summary,
            path,
            patient.pseudonym,
            study,
            inputs,
            info,
            self.ai_panel.colormap,
            self.ai_panel.opacity,
            _start_thread=False,
        )
        worker.returned.connect(lambda p: self.status_label.setText(f"Saved {p}"))
        worker.errored.connect(lambda exc: self.sink.report(exc, "Exporting the AI summary"))
        self._start(worker)
        return worker

    def export_summary_dialog(self) -> None:
        default = str(Path(self._last_dir()) / "ai-summary.html")
        path, _ = QFileDialog.getSaveFileName(self, "Export AI summary", default, "HTML (*.html)")
        if path:
            self.export_summary(path)
