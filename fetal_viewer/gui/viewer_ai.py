"""The main window's AI: loading a model, asking the model service for the frame on screen
(the state says what is wanted and drops stale results), and analysing a whole study."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from fetal_viewer.core.viewer.results import FrameResult, ModelInfo, SeriesKey, series_key
from fetal_viewer.gui.window_base import WindowBase
from fetal_viewer.resources import RESOURCES


class ViewerAIMixin(WindowBase):
    def load_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open model card", str(RESOURCES / "models"), "Model card (*.json)"
        )
        if path:
            self.load_model(path)

    def load_model(self, card_path: str | Path) -> None:
        self.status_label.setText(f"Loading model {Path(card_path).name}…")
        self.model.load_model(card_path)

    def _on_model_loaded(self, info: ModelInfo) -> None:
        self.ai_panel.set_methods(self.model.methods)
        self.state.set_model(info)
        self.settings.setValue("model/card", info.card_path)
        self.status_label.setText(f"Model {info.name} v{info.version} loaded.")
        self._request_ai()

    def _request_ai(self) -> None:
        want = self.state.ai_wanted()
        if want is None:
            return
        hit = self.model.cached(want.series, want.index, want.method)
        if hit is not None:
            self._apply_result(want.index, hit)
            return
        self.state.request_sent(self.model.request_frame(want.series, want.index, want.method))

    def _on_frame_result(self, req: int, key: SeriesKey, index: int, result: FrameResult) -> None:
        if self.state.offer_result(req, key, index, result):
            self.ai_shown.emit(index)

    def _apply_result(self, index: int, result: FrameResult) -> None:
        self.state.set_result(index, result)
        self.ai_shown.emit(index)

    def _on_method_changed(self, _method: str) -> None:
        if self.state.result is not None:
            self._request_ai()  # the cached maps of this method, or a new request

    def _update_patient_bars(self) -> None:
        summary = self.state.patient_summary(self.model.series_probs)
        self.ai_panel.patient_bars.set_values(summary.probs, summary.note)

    def analyse_study(self) -> None:
        study = self.state.study
        if study is None or self.model.info is None or self.state.job is not None:
            return
        self.state.set_job(self.model.analyse(list(study.series)))
        self.ai_panel.set_analysing(True)
        self.status_label.setText("Analysing study…")

    def cancel_analysis(self) -> None:
        if self.state.job is not None:
            self.model.cancel(self.state.job)
            self.status_label.setText("Cancelling…")

    def _on_analysis_progress(self, job: int, done: int, total: int) -> None:
        if job != self.state.job:
            return
        self.ai_panel.set_progress(done, total)
        self.status_progress.setRange(0, max(1, total))
        self.status_progress.setValue(done)

    def _on_analysis_frames(self, job: int, key: SeriesKey, indices: list[int]) -> None:
        self._update_patient_bars()
        want = self.state.ai_wanted()
        if want is None or key != series_key(want.series):
            return
        if self.state.result is None:
            if want.index in indices:
                self._request_ai()
            return
        # the frame on screen: the guard's cine rule may have withheld its cine meanwhile
        hit = self.model.cached(want.series, want.index, want.method)
        if hit is not None and hit is not self.state.result:
            self._apply_result(want.index, hit)

    def _on_analysis_finished(self, job: int, cancelled: bool) -> None:
        if job != self.state.job:
            return
        self.state.set_job(None)
        self.ai_panel.set_analysing(False)
        self._update_patient_bars()
        self._update_busy()
        self.status_label.setText("Analysis cancelled." if cancelled else "Analysis finished.")

    def _on_model_failed(self, req: int, exc: BaseException, context: str) -> None:
        if self.state.job is not None and req == self.state.job:
            self.state.set_job(None)
            self.ai_panel.set_analysing(False)
        self.sink.report(exc, context)
