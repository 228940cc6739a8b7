"""The main window: study browser (left), viewer pane (centre), AI panel (right).

The window displays a headless :class:`~fetal_viewer.core.viewer.state.ViewerState` (what
is selected, the frame wanted and shown, the AI request and result, the heatmap layer) and
runs the workers that feed it. The :class:`ViewerPane` holds the calibration banner, the
:class:`ImageView` (which the reader-study window also uses) and the :class:`CineControls`.

This module builds the window (docks, actions, menus, connections) and shows frames; its
parts live beside it: :mod:`.window_base` (signals, worker plumbing), :mod:`.opening`
(files, grouping, recent), :mod:`.viewer_ai` (model, frame AI, study analysis),
:mod:`.export` (PNG and HTML exports) and :mod:`.about` (Help > About).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QPaintEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from fetal_viewer import INTENDED_USE, __version__
from fetal_viewer.core.io.study import Calibration, Patient, Series, Study
from fetal_viewer.core.viewer.overlay import OverlaySettings
from fetal_viewer.core.viewer.results import FrameResult, SeriesKey
from fetal_viewer.core.viewer.state import Selection, ViewerState
from fetal_viewer.gui.about import show_about
from fetal_viewer.gui.ai_panel import AIPanel
from fetal_viewer.gui.browser import StudyBrowser
from fetal_viewer.gui.cine import CineControls
from fetal_viewer.gui.error_sink import ErrorSink
from fetal_viewer.gui.export import ExportMixin
from fetal_viewer.gui.grouping import ImageGroupingDialog
from fetal_viewer.gui.image_view import ImageView, Measurement, Tool
from fetal_viewer.gui.opening import OpeningMixin
from fetal_viewer.gui.pacs import attach_pacs
from fetal_viewer.gui.settings import app_settings
from fetal_viewer.gui.shortcuts import SHORTCUTS, ShortcutsDialog
from fetal_viewer.gui.view_tools import bind_view, view_commands
from fetal_viewer.gui.viewer_ai import ViewerAIMixin
from fetal_viewer.gui.workers import FrameLoader, ModelService
from fetal_viewer.resources import RESOURCES

PREFETCH = 6


class ViewerPane(QWidget):
    """Calibration banner + image view + cine controls. Knows a series, not a study."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("viewerPane")
        self.calibration_banner = QLabel("", self)
        self.calibration_banner.setObjectName("calibrationWarning")
        self.calibration_banner.setWordWrap(True)
        self.calibration_banner.setVisible(False)
        self.view = ImageView(self)
        self.cine = CineControls(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.calibration_banner)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.cine)

    def set_calibration(self, calibration: Calibration) -> None:
        from fetal_viewer.core.io.calibration import calibration_note

        self.view.set_calibration(calibration.spacing_mm)
        note = calibration_note(calibration)
        self.calibration_banner.setText(f"⚠ {note}" if note else "")
        self.calibration_banner.setVisible(note is not None)


class MainWindow(OpeningMixin, ViewerAIMixin, ExportMixin):
    def __init__(
        self,
        settings: QSettings | None = None,
        error_sink: ErrorSink | None = None,
        model_service: ModelService | None = None,
    ) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle(f"fetal-viewer {__version__} — {INTENDED_USE}")
        icon = RESOURCES / "icons" / "app" / "fetal-viewer.svg"
        if icon.is_file():
            self.setWindowIcon(QIcon(str(icon)))
        self.settings = settings if settings is not None else app_settings()
        self.sink = error_sink if error_sink is not None else ErrorSink()
        self.sink.set_parent_widget(self)
        self.loader = FrameLoader()
        # the window's own model thread starts after the first paint: its torch import
        # would hold the interpreter lock while the window is being built
        self.model = model_service if model_service is not None else ModelService(start=False)
        self._owns_model = model_service is None
        self._workers = set()
        self._closed = False
        self._painted = False
        self.state = ViewerState(self._saved_overlay())

        self.pane = ViewerPane(self)
        self.view = self.pane.view
        self.cine = self.pane.cine
        self.setCentralWidget(self.pane)

        self.browser = StudyBrowser(self)
        self.browser_dock = self._dock("Studies", "browserDock", self.browser)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)
        self.ai_panel = AIPanel(self.state, self)
        self.ai_dock = self._dock("AI", "aiDock", self.ai_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.ai_dock)

        self.status_label = QLabel("Open a study (Ctrl+O) or drop files here.", self)
        self.status_progress = QProgressBar(self)
        self.status_progress.setObjectName("statusProgress")
        self.status_progress.setMaximumWidth(220)
        self.status_progress.setVisible(False)
        self.zoom_label = QLabel("", self)
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.zoom_label)
        self.statusBar().addPermanentWidget(self.status_progress)

        self._loading = 0
        self.grouping_dialog: ImageGroupingDialog | None = None

        self.commands: dict[str, QAction] = {}
        self._build_actions()
        self._build_menus()
        self._connect()
        attach_pacs(self)  # PACS dock and menu; its arrivals go through open_paths
        if self.model.info is not None:  # loaded before the window was built (start-up)
            self._on_model_loaded(self.model.info)
        self.setAcceptDrops(True)
        self._restore_settings()
        if not self.settings.contains("window/geometry"):
            self.resizeDocks(
                [self.browser_dock, self.ai_dock], [300, 340], Qt.Orientation.Horizontal
            )

    # ----- the state, as the tests and the harnesses read it -------------------------------
    @property
    def patient(self) -> Patient | None:
        return self.state.patient

    @property
    def study(self) -> Study | None:
        return self.state.study

    @property
    def series(self) -> Series | None:
        return self.state.series

    @property
    def index(self) -> int:
        return self.state.index

    @property
    def result(self) -> FrameResult | None:
        return self.state.result

    # ==================================================================================
    # construction
    # ==================================================================================
    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        return dock

    def _build_actions(self) -> None:
        c, state = self.cine, self.state
        slots: dict[str, Callable[[], object]] = {
            **view_commands(self.view),
            "open_file": self.open_file_dialog,
            "open_folder": self.open_folder_dialog,
            "export_view": lambda: self.export_view_dialog(True),
            "export_view_bare": lambda: self.export_view_dialog(False),
            "export_summary": self.export_summary_dialog,
            "quit": self.close,
            "next_frame": lambda: c.step(1),
            "prev_frame": lambda: c.step(-1),
            "first_frame": lambda: c.set_index(0),
            "last_frame": lambda: c.set_index(c.n_frames - 1),
            "play": c.toggle_play,
            "next_series": lambda: self.browser.step_series(1),
            "prev_series": lambda: self.browser.step_series(-1),
            "next_case": lambda: self.browser.step_patient(1),
            "prev_case": lambda: self.browser.step_patient(-1),
            "show_identities": lambda: self.browser.set_show_identities(
                self.commands["show_identities"].isChecked()
            ),
            "tool_navigate": lambda: self.set_tool(Tool.NAVIGATE),
            "tool_distance": lambda: self.set_tool(Tool.DISTANCE),
            "tool_ellipse": lambda: self.set_tool(Tool.ELLIPSE),
            "clear_measurements": self.view.clear_measurements,
            "toggle_overlay": state.overlay.toggle,
            "next_class": lambda: state.cycle_heat_class(1),
            "prev_class": lambda: state.cycle_heat_class(-1),
            "more_opacity": lambda: state.overlay.step_opacity(0.1),
            "less_opacity": lambda: state.overlay.step_opacity(-0.1),
            "analyse": self.analyse_study,
            "cancel": self.cancel_analysis,
            "load_model": self.load_model_dialog,
            "shortcuts": self.show_shortcuts,
        }
        for s in SHORTCUTS:
            action = QAction(s.text, self)
            action.setObjectName(f"action_{s.name}")
            action.setShortcuts([QKeySequence(k) for k in s.keys])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(slots[s.name])
            self.addAction(action)
            self.commands[s.name] = action
        for name in ("show_identities", "tool_navigate", "tool_distance", "tool_ellipse"):
            self.commands[name].setCheckable(True)
        self.commands["tool_navigate"].setChecked(True)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        menus: dict[str, QMenu] = {}
        for group, title in (
            ("File", "&File"),
            ("Navigate", "&Navigate"),
            ("View", "&View"),
            ("Measure", "&Measure"),
            ("AI", "&AI"),
            ("Study", "&Study"),
            ("Help", "&Help"),
        ):
            menus[group] = bar.addMenu(title)
        self.recent_menu = QMenu("Open &recent", self)
        remember = QAction("Remember recent files on this computer (stores their paths)", self)
        remember.setCheckable(True)
        remember.setChecked(self.remember_recent)
        remember.toggled.connect(self.set_remember_recent)
        self.commands_remember_recent = remember
        self._recent = self._stored_recent()
        for s in SHORTCUTS:
            menu = menus[s.group]
            menu.addAction(self.commands[s.name])
            if s.name == "open_folder":
                menu.addMenu(self.recent_menu)
                menu.addSeparator()
        about = QAction("About fetal-viewer", self)
        about.triggered.connect(self.show_about)
        menus["Help"].addAction(about)
        study = menus["Study"]
        study.addAction("Coordinator…").triggered.connect(
            lambda: self.open_study_window("coordinator")
        )
        study.addAction("Read…").triggered.connect(lambda: self.open_study_window("read"))
        panels = menus["View"]
        panels.addSeparator()
        panels.addAction(self.browser_dock.toggleViewAction())
        panels.addAction(self.ai_dock.toggleViewAction())

    def _connect(self) -> None:
        state = self.state
        self.browser.series_activated.connect(state.select)
        self.browser.patient_grew.connect(self._on_patient_grew)
        state.selection_changed.connect(self._on_selection)
        state.frame_shown.connect(self._on_frame_shown)
        state.method_changed.connect(self._on_method_changed)
        state.model_changed.connect(lambda _info: self._update_patient_bars())
        self._unbind_view = bind_view(self.view, state.overlay)
        self.cine.index_changed.connect(self.show_frame)
        # through a method of the window: Qt drops the connection when the window goes (the
        # state is a plain object that outlives it)
        self.loader.frame_ready.connect(self._on_frame_ready)
        self.loader.thumbnail_ready.connect(self.browser.set_thumbnail)
        self.loader.failed.connect(self.sink.report)
        self.model.model_loaded.connect(self._on_model_loaded)
        self.model.frame_result.connect(self._on_frame_result)
        self.model.analysis_progress.connect(self._on_analysis_progress)
        self.model.analysis_frames.connect(self._on_analysis_frames)
        self.model.analysis_finished.connect(self._on_analysis_finished)
        self.model.failed.connect(self._on_model_failed)
        self.model.busy_changed.connect(self._update_busy)
        self.ai_panel.analyse_requested.connect(self.analyse_study)
        self.ai_panel.cancel_requested.connect(self.cancel_analysis)
        self.view.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{100 * z:.0f} %"))
        self.view.measurement_added.connect(self._on_measurement)

    # ==================================================================================
    # showing frames
    # ==================================================================================
    def _on_selection(self, selection: Selection) -> None:
        patient, series = selection.patient, selection.series
        if patient is None or series is None:
            return
        self.pane.set_calibration(series.calibration)
        self.view.clear_measurements()
        self.cine.set_series(len(series), series.frame_time_ms)
        self.setWindowTitle(
            f"{self.browser.patient_label(patient)} — "
            f"{series.description or 'Series'} — fetal-viewer — {INTENDED_USE}"
        )
        self._update_patient_bars()
        self.show_frame(0)

    def _on_patient_grew(self, patient: Patient) -> None:
        if self.state.patient_grew(patient):
            self._update_patient_bars()

    def show_frame(self, index: int) -> None:
        series = self.state.series
        if series is None:
            return
        if self.cine.index != index and 0 <= index < self.cine.n_frames == len(series):
            self.cine.set_index(index)  # the slider is the source of truth: comes back here
            return
        frame = self.loader.cached(series, index)
        ahead = range(index + 1, index + 1 + PREFETCH)
        prefetch = [i % len(series) for i in ahead] + [index - 1]
        self.loader.request(series, index, prefetch)
        if not self.state.want_frame(index, frame):
            self.cine.frame_pending = True

    def _on_frame_ready(self, key: SeriesKey, index: int, frame: np.ndarray) -> None:
        if not self._closed:
            self.state.frame_decoded(key, index, frame)

    def _on_frame_shown(self, index: int) -> None:
        self.cine.frame_pending = False
        self.view.set_frame(self.state.frame)
        self.frame_shown.emit(index)
        self._request_ai()

    # ==================================================================================
    # measuring, help
    # ==================================================================================
    def set_tool(self, tool: Tool) -> None:
        self.view.set_tool(tool)
        for name, t in (
            ("tool_navigate", Tool.NAVIGATE),
            ("tool_distance", Tool.DISTANCE),
            ("tool_ellipse", Tool.ELLIPSE),
        ):
            self.commands[name].setChecked(t is tool)

    def _on_measurement(self, m: Measurement) -> None:
        note = "" if m.unit == "mm" else " (uncalibrated: pixels)"
        self.status_label.setText(f"{m.kind.capitalize()}: {m.label}{note}")

    def open_study_window(self, kind: str, db: str | None = None) -> QWidget:
        """Open the reader-study coordinator or the reading mode (own top-level windows,
        so the viewer's AI panel and browser stay out of a blinded read)."""
        from fetal_viewer.gui import readerstudy

        card = self.model.info.card_path if self.model.info else None
        opener = (
            readerstudy.open_coordinator if kind == "coordinator" else readerstudy.open_reader_mode
        )
        window: QWidget = opener(
            self, db, error_sink=self.sink, settings=self.settings, model_card=card
        )
        return window

    def show_shortcuts(self) -> None:
        dialog = ShortcutsDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def show_about(self) -> QMessageBox:
        """Version, intended use, the loaded model's card and the bundled licences."""
        return show_about(self, self.model.info)

    # ==================================================================================
    # settings and shutdown
    # ==================================================================================
    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:  # first run: a reading workstation wants most of the screen for the image
            from fetal_viewer.gui.app import size_to_screen

            size_to_screen(self, 0.9)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        self._rebuild_recent_menu()

    def _saved_overlay(self) -> OverlaySettings:
        from fetal_viewer.core.cam.overlay import COLORMAPS

        s = self.settings
        try:
            opacity = int(str(s.value("ai/opacity", 45))) / 100.0
        except ValueError:
            opacity = 0.45
        cmap = str(s.value("ai/colormap", "jet"))
        return OverlaySettings(
            True, min(1.0, max(0.0, opacity)), cmap if cmap in COLORMAPS else "jet"
        )

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        overlay = self.state.overlay.settings
        s.setValue("ai/opacity", round(overlay.opacity * 100))
        s.setValue("ai/colormap", overlay.colormap)
        s.sync()

    def running_workers(self) -> int:
        return len(self._workers) + int(self.loader.is_busy()) + int(self.model.isRunning())

    def shutdown(self) -> None:
        """Stop every worker and thread this window started (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.cine.set_playing(False)
        self.sink.close_all()
        for worker in list(self._workers):
            worker.quit()
        self.loader.shutdown()
        self._unbind_view()
        for event in (
            self.state.selection_changed,
            self.state.frame_shown,
            self.state.method_changed,
            self.state.model_changed,
            self.state.ai_changed,
            self.state.heat_pick_changed,
        ):
            event.disconnect()  # no callback into this window's widgets once it is closed
        if self.state.job is not None:
            self.model.cancel(self.state.job)
        if self._owns_model:
            self.model.shutdown()
        from superqt.utils import WorkerBase

        WorkerBase.await_workers(30_000)
        self._workers.clear()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            if not self.model.isRunning() and not self._closed:
                self.model.start()
            self.painted.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)
