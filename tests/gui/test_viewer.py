"""The viewer end to end, offscreen: open, browse, cine, AI overlay, measure, export,
shortcuts, drag and drop, errors, shutdown."""

from __future__ import annotations

import dataclasses
import re
import sys
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox
from superqt.utils import create_worker

from fetal_viewer.core.cam.overlay import echo_mask
from fetal_viewer.core.redact import path_token
from fetal_viewer.core.viewer.results import series_key
from fetal_viewer.core.warncatch import collect_warnings
from fetal_viewer.errors import StudyLoadError
from fetal_viewer.gui.error_sink import (
    LOG_NAME,
    ErrorSink,
    install_excepthooks,
    log_dir,
    setup_logging,
    uninstall_excepthooks,
)
from fetal_viewer.gui.imaging import qimage_to_rgb
from fetal_viewer.gui.shortcuts import SHORTCUTS, ShortcutsDialog, markdown_table

from .conftest import us_frames, wait_until, write_us_dicom


def open_and_wait(qtbot, window, paths, n_frames: int | None = 6) -> None:
    """Open ``paths``, then show the series with ``n_frames`` frames (the cine)."""
    with qtbot.waitSignal(window.study_opened, timeout=30_000):
        window.open_paths([str(p) for p in paths])
    wait_until(lambda: window.view.has_image)
    if n_frames is not None:
        show_series_with(window, n_frames)


def show_series_with(window, n_frames: int) -> None:
    if len(window.series) != n_frames:
        target = next(
            item.data(0, Qt.ItemDataRole.UserRole)[3]
            for item in window.browser.series_items()
            if len(item.data(0, Qt.ItemDataRole.UserRole)[3]) == n_frames
        )
        window.browser.select_series(target)
        wait_until(lambda: window.series is target and window.state.pending is None)


def test_open_study_browse_and_step_frames(qtbot, make_main_window, study_dir):
    window = make_main_window()
    open_and_wait(qtbot, window, [study_dir])
    assert len(window.browser.patients) == 1
    assert len(window.browser.series_items()) == 2
    # pseudonym by default, never the name
    patient_text = window.browser.topLevelItem(0).text(0)
    assert "Doe" not in patient_text
    assert window.series is not None and len(window.series) == 6
    assert window.cine.counter.text() == "1 / 6"
    assert window.cine.fps == pytest.approx(25.0)
    expected = us_frames(6)
    assert np.array_equal(window.view.frame, expected[0])
    with qtbot.waitSignal(window.frame_shown, timeout=10_000) as blocker:
        qtbot.keyClick(window.view, Qt.Key.Key_Right)
    assert blocker.args == [1]
    assert np.array_equal(window.view.frame, expected[1])
    assert window.cine.counter.text() == "2 / 6"
    # thumbnails are made in a worker
    wait_until(lambda: window.browser.has_thumbnail(window.series), 10)
    # identities only on request
    qtbot.keyClick(window.view, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    assert "Doe" in window.browser.topLevelItem(0).text(0)


def test_cine_plays_at_stored_rate_and_pauses(qtbot, make_main_window, study_dir):
    window = make_main_window()
    open_and_wait(qtbot, window, [study_dir])
    assert window.cine.timer.interval() == 40
    seen: list[int] = []
    window.frame_shown.connect(seen.append)
    qtbot.keyClick(window.view, Qt.Key.Key_Space)
    assert window.cine.playing
    qtbot.waitUntil(lambda: len(set(seen)) >= 5, timeout=10_000)
    qtbot.keyClick(window.view, Qt.Key.Key_Space)
    assert not window.cine.playing
    assert seen[:3] == [1, 2, 3]  # in order, from the first frame


def test_inference_overlay_opacity_and_toggle(qtbot, make_main_window, study_dir, model_service):
    window = make_main_window(model_service)
    window._on_model_loaded(model_service.info)
    with qtbot.waitSignal(window.ai_shown, timeout=60_000):
        open_and_wait(qtbot, window, [study_dir])
    panel = window.ai_panel
    probs = panel.frame_bars.values
    assert probs is not None and probs.shape == (5,) and probs.sum() == pytest.approx(1, abs=1e-4)
    assert panel.class_combo.currentIndex() == 0  # "Top class"
    assert "tiny-random" in panel.model_label.text()
    # the tiny model's 64 px input gives a 2 x 2 Grad-CAM grid, and the panel says so
    assert (
        panel.heat_note.isVisibleTo(panel) and "2×2 grid over the 64 px" in panel.heat_note.text()
    )
    assert "Research use only" in panel.banner.text()

    bare = qimage_to_rgb(window.view.render_frame(with_overlay=False)).astype(int)
    shown = qimage_to_rgb(window.view.render_frame(with_overlay=True)).astype(int)
    heat = window.result.heatmap(int(np.argmax(probs)))
    heat_cams = window.result.cams
    echo = echo_mask(window.view.frame)  # the layer covers echo content only
    where = (heat > 0.3) & echo
    outside = (heat == 0) | ~echo  # outside the field of view or on the black background
    assert where.any() and outside.any()
    diff = np.abs(shown - bare).sum(axis=2)
    assert (diff[where] > 0).mean() > 0.9
    assert (diff[outside] == 0).mean() > 0.99

    panel.opacity_slider.setValue(90)
    stronger = qimage_to_rgb(window.view.render_frame(with_overlay=True)).astype(int)
    assert np.abs(stronger - bare).sum(axis=2)[where].mean() > diff[where].mean() * 1.3

    qtbot.keyClick(window.view, Qt.Key.Key_O)  # overlay off
    assert not panel.overlay_check.isChecked()
    assert not window.view.overlay_item.isVisible()
    qtbot.keyClick(window.view, Qt.Key.Key_O)
    assert window.view.overlay_item.isVisible()

    # choosing another class changes the heatmap layer
    before = window.view.overlay_item.pixmap().toImage()
    other = 1 + (int(np.argmax(probs)) + 1) % 5
    panel.class_combo.setCurrentIndex(other)
    after = window.view.overlay_item.pixmap().toImage()
    assert after != before

    # a class whose map is empty (no cell raises its score) is named, not shown as nothing
    assert not panel.empty_note.isVisibleTo(panel)
    shown_result = window.result
    window._apply_result(window.index, replace(shown_result, cams=np.zeros_like(heat_cams)))
    assert panel.empty_note.isVisibleTo(panel)
    assert panel.class_combo.itemText(other) in panel.empty_note.text()
    window._apply_result(window.index, shown_result)
    assert not panel.empty_note.isVisibleTo(panel)

    # another CAM method runs through the same serial worker and replaces the maps
    assert panel.method_combo.findText("gradcam++") >= 0
    with qtbot.waitSignal(window.ai_shown, timeout=60_000):
        panel.method_combo.setCurrentText("gradcam++")
    assert model_service.cached(window.series, window.index, "gradcam++") is window.result
    assert window.view.overlay_item.pixmap().toImage() != after

    # the stitched Grad-CAM: same probabilities, a grid twice as fine, and the note says so
    with qtbot.waitSignal(window.ai_shown, timeout=60_000):
        panel.method_combo.setCurrentText("gradcam-stitch")
    fine = model_service.cached(window.series, window.index, "gradcam-stitch")
    assert fine is window.result and fine.cams is not None and fine.cams.shape[-2:] == (4, 4)
    np.testing.assert_allclose(fine.probs, probs, atol=1e-5)
    assert "4×4 grid over the 64 px" in panel.heat_note.text()


def test_analyse_study_matches_predictor_and_export(
    qtbot, make_main_window, study_dir, model_service, tmp_path
):
    from fetal_viewer.core.model.aggregation import aggregate
    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.model.predictor import Predictor

    window = make_main_window(model_service)
    window._on_model_loaded(model_service.info)
    open_and_wait(qtbot, window, [study_dir])
    with qtbot.waitSignal(window.model.analysis_finished, timeout=60_000) as done:
        qtbot.keyClick(window.view, Qt.Key.Key_A)
    assert done.args[1] is False  # not cancelled
    wait_until(lambda: window.state.job is None)
    # patient bars = aggregate of an independent run of the predictor on every frame
    reference = Predictor(
        load_checkpoint(model_service.info.card_path), backend=model_service._predictor.runtime.name
    )
    all_frames = [s.frame(i) for s in window.study.series for i in range(len(s))]
    expected = aggregate(reference.predict(all_frames).probs, "mean")
    np.testing.assert_allclose(window.ai_panel.patient_bars.values, expected, atol=1e-4)
    assert "7 of 7 frames" in window.ai_panel.patient_bars.note.text()
    # every frame is cached for this model: stepping shows results without new requests
    last_request = model_service.latest_frame_request
    with qtbot.waitSignal(window.ai_shown, timeout=10_000) as shown:
        qtbot.keyClick(window.view, Qt.Key.Key_Right)
    assert shown.args == [window.index] and model_service.latest_frame_request == last_request

    with_overlay = window.export_view(tmp_path / "with.png", True)
    without = window.export_view(tmp_path / "without.png", False)
    from PySide6.QtGui import QImage

    a, b = qimage_to_rgb(QImage(str(with_overlay))), qimage_to_rgb(QImage(str(without)))
    assert a.shape == b.shape and not np.array_equal(a, b)
    # exports are cropped to the field of view (burned-in header text stays out), at native
    # resolution: the bare export is the frame's own pixels there
    from fetal_viewer.core.fov import find_fov

    x0, y0, x1, y1 = find_fov(window.view.frame)
    assert (x1 - x0, y1 - y0) < (window.view.frame.shape[1], window.view.frame.shape[0])
    np.testing.assert_array_equal(b, window.view.frame[y0:y1, x0:x1])

    window.browser.set_show_identities(True)
    assert window.export_summary(tmp_path / "summary.html") is not None
    # the worker is already running (it can finish before a signal could be caught): wait
    # for what its result does on the GUI thread
    wait_until(lambda: "summary.html" in window.status_label.text())
    html = (tmp_path / "summary.html").read_text()
    assert "tiny-random" in html and "Research use only" in html
    assert html.count("data:image/png;base64,") >= 4  # key frames and their heatmaps
    # de-identified: the pseudonym, never the name, ID or dates, even with identities shown
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert window.patient.pseudonym in text
    for phi in ("Doe", "PID-001", "1990", "2024"):
        assert phi not in text


def test_analysis_cancel_and_stale_frame_requests(qtbot, tmp_path, model_service):
    frames = us_frames(40, seed=7)
    path = write_us_dicom(tmp_path / "long.dcm", frames)
    from fetal_viewer.core.io import open_path

    series = open_path(path).patients[0].studies[0].series[0]
    job = model_service.analyse([series])
    with qtbot.waitSignal(model_service.analysis_finished, timeout=60_000) as done:
        model_service.cancel(job)
    assert done.args == [job, True]
    found = model_service.series_probs(series)
    assert found is None or len(found[1]) < 40

    results: list[int] = []

    def collect(req: int, key: object, idx: int, res: object) -> None:
        results.append(req)

    model_service.frame_result.connect(collect)
    skipped = model_service.skipped_stale
    reqs = [model_service.request_frame(series, i) for i in range(30, 36)]
    try:
        qtbot.waitUntil(lambda: reqs[-1] in results, timeout=30_000)
    finally:
        model_service.frame_result.disconnect(collect)
    assert model_service.skipped_stale - skipped >= 3
    assert set(results) <= {reqs[0], reqs[-1]}


def test_drag_and_drop_opens_files(qtbot, make_main_window, tmp_path):
    window = make_main_window()
    path = write_us_dicom(tmp_path / "dropped.dcm", us_frames(2))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.study_opened, timeout=30_000):
        window.dropEvent(event)
    assert event.isAccepted()
    assert len(window.browser.series_items()) == 1
    assert str(path.resolve()) in window.recent()


def test_opening_shows_what_the_user_opened_not_what_arrives(qtbot, make_main_window, tmp_path):
    """A study the user opens (File > Open, a drop, the recent list) is shown; one that
    arrives (from PACS, the demo) is only added while something is on screen. Opening one
    already open shows it, with no error."""
    window = make_main_window()
    first = write_us_dicom(tmp_path / "first.dcm", us_frames(2), patient_id="P-A")
    second = write_us_dicom(tmp_path / "second.dcm", us_frames(3), patient_id="P-B")
    third = write_us_dicom(tmp_path / "third.dcm", us_frames(4), patient_id="P-C")
    reported: list[object] = []
    window.sink.reported.connect(lambda exc, _context: reported.append(exc))

    def open_and_settle(path: Path, show: bool) -> None:
        with qtbot.waitSignal(window.study_opened, timeout=30_000):
            window.open_paths([str(path)], show=show)
        wait_until(lambda: window.series is not None and window.state.pending is None)

    open_and_settle(first, show=False)  # nothing on screen: shown all the same
    assert len(window.series) == 2
    open_and_settle(second, show=False)  # arrived: the reader keeps the image
    assert len(window.series) == 2
    open_and_settle(third, show=True)
    wait_until(lambda: len(window.series) == 4)
    open_and_settle(second, show=True)  # already open: shown, nothing added, no error
    wait_until(lambda: len(window.series) == 3)
    assert len(window.browser.series_items()) == 3
    assert "Already open" in window.status_label.text()
    assert reported == []


def test_shortcuts_act(qtbot, make_main_window, study_dir):
    window = make_main_window()
    open_and_wait(qtbot, window, [study_dir])
    view = window.view
    qtbot.keyClick(view, Qt.Key.Key_1)
    assert view.zoom == pytest.approx(1.0)
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    assert view.zoom == pytest.approx(1.25)
    qtbot.keyClick(view, Qt.Key.Key_F)
    assert view.zoom != pytest.approx(1.25)
    qtbot.keyClick(view, Qt.Key.Key_R)
    assert view.rotation == 90
    qtbot.keyClick(view, Qt.Key.Key_H)
    assert view.flip_h
    qtbot.keyClick(view, Qt.Key.Key_B)
    assert view.brightness == 10
    assert not np.array_equal(qimage_to_rgb(view.image_item.pixmap().toImage()), view.frame)
    qtbot.keyClick(view, Qt.Key.Key_Backspace)  # reset
    assert (view.rotation, view.flip_h, view.brightness) == (0, False, 0)
    qtbot.keyClick(view, Qt.Key.Key_End)
    wait_until(lambda: window.index == 5 and view.frame is not None)
    first = window.series
    qtbot.keyClick(view, Qt.Key.Key_Down)  # next series (wraps around)
    assert window.series is not first and len(window.series) == 1
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert window.series is first
    qtbot.keyClick(view, Qt.Key.Key_D)
    assert window.commands["tool_distance"].isChecked()
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert window.commands["tool_navigate"].isChecked()
    dialog = ShortcutsDialog(window)
    assert dialog.table.rowCount() == len(SHORTCUTS)
    dialog.deleteLater()


def test_docs_list_the_shortcuts_the_app_has() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "keyboard.md"
    assert markdown_table() in doc.read_text(encoding="utf-8"), (
        "docs/keyboard.md is stale: paste markdown_table()"
    )


def test_measurements_mm_when_calibrated_pixels_and_warning_otherwise(
    qtbot, make_main_window, study_dir
):
    window = make_main_window()
    open_and_wait(qtbot, window, [study_dir])
    assert window.view.spacing_mm == pytest.approx((0.2, 0.2))
    assert not window.pane.calibration_banner.isVisibleTo(window)
    m = window.view.add_distance(QPointF(10, 20), QPointF(110, 20))
    assert (m.unit, m.value) == ("mm", pytest.approx(20.0))
    e = window.view.add_ellipse(window.view.sceneRect().adjusted(10, 10, -10, -10))
    assert e.unit == "mm" and e.kind == "ellipse" and e.value > 0
    # the same drag with the mouse
    window.set_tool(window.view.tool.DISTANCE)
    vp = window.view.viewport()
    p0 = window.view.mapFromScene(QPointF(20, 40))
    p1 = window.view.mapFromScene(QPointF(70, 40))
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=p0)
    qtbot.mouseMove(vp, p1)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=p1)
    assert window.view.measurements[-1][0].value == pytest.approx(10.0, abs=0.5)

    window.browser.step_series(1)  # the uncalibrated series
    wait_until(lambda: window.view.spacing_mm is None)
    assert window.pane.calibration_banner.isVisibleTo(window)
    assert "pixels" in window.pane.calibration_banner.text()
    m = window.view.add_distance(QPointF(0, 0), QPointF(30, 40))
    assert (m.unit, m.value) == ("px", pytest.approx(50.0))


def test_corrupt_file_shows_error_and_app_continues(qtbot, make_main_window, study_dir):
    window = make_main_window()
    (study_dir / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
    with qtbot.waitSignal(window.sink.reported, timeout=30_000) as reported:
        window.open_paths([study_dir])
    exc, _context = reported.args
    assert isinstance(exc, StudyLoadError)
    dialog = window.sink.dialog
    assert isinstance(dialog, QMessageBox) and dialog.isVisible()  # shown, not blocking
    assert dialog.text()
    assert dialog.detailedText() == ""  # a typed error says it all; its traceback is logged
    logged = (log_dir() / LOG_NAME).read_text()
    assert path_token(exc.path) in logged and "broken.dcm" not in logged  # logged, no name
    wait_until(lambda: window.view.has_image)  # the good files still opened
    assert len(window.browser.series_items()) == 2
    dialog.accept()
    wait_until(lambda: window.sink.dialog is None)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    show_series_with(window, 6)
    qtbot.keyClick(window.view, Qt.Key.Key_Right)  # and the app still works
    wait_until(lambda: window.index == 1)
    more = write_us_dicom(study_dir.parent / "more" / "next.dcm", us_frames(2), patient_id="P2")
    with qtbot.waitSignal(window.study_opened, timeout=30_000):
        window.open_paths([more])
    assert len(window.browser.patients) == 2


@pytest.mark.filterwarnings("always::UserWarning")  # shown (to the log), not raised
def test_global_hooks_log_and_show(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path))
    path = setup_logging()
    sink = ErrorSink()
    before = (sys.excepthook, threading.excepthook)
    install_excepthooks(sink)
    try:
        try:
            raise ZeroDivisionError("boom in a slot")
        except ZeroDivisionError as exc:
            with qtbot.waitSignal(sink.reported, timeout=5_000):
                sys.excepthook(type(exc), exc, exc.__traceback__)

        def worker() -> None:
            warnings.warn("stray warning outside any collecting block", UserWarning, stacklevel=1)
            raise ValueError("boom in a thread")

        with qtbot.waitSignal(sink.reported, timeout=5_000) as second:
            t = threading.Thread(target=worker, name="bad-thread")
            t.start()
            t.join()
        assert isinstance(second.args[0], ValueError) and "bad-thread" in second.args[1]
        assert sink.dialog is not None and "ZeroDivisionError" in sink.dialog.text()
        assert "Traceback" in sink.dialog.detailedText()  # a bug's traceback, for its report
        text = path.read_text()
        assert "boom in a slot" in text and "boom in a thread" in text
        assert "UserWarning: stray warning outside any collecting block" in text
    finally:
        uninstall_excepthooks()
        sink.close_all()
        from fetal_viewer.gui.error_sink import close_logging

        close_logging()
    assert (sys.excepthook, threading.excepthook) == before


def test_settings_persist_and_close_stops_threads(qtbot, make_main_window, study_dir, tiny_model):
    settings = study_dir.parent / "persist.ini"
    window = make_main_window(settings_file=settings)  # owns its model thread
    # the window's own slot runs before qtbot's (connected earlier, same queue)
    with qtbot.waitSignal(window.model.model_loaded, timeout=60_000):
        window.load_model(tiny_model)
    open_and_wait(qtbot, window, [study_dir])
    window.ai_panel.opacity_slider.setValue(70)
    window.ai_panel.colormap_combo.setCurrentText("inferno")
    window.analyse_study()
    window.close()  # mid-analysis: must stop every thread
    assert not window.model.isRunning()
    again = make_main_window(settings_file=settings)
    assert again.ai_panel.opacity_slider.value() == 70
    assert again.ai_panel.colormap == "inferno"
    assert again.settings.value("model/card") == str(tiny_model)
    # the recent files' paths (patient folders, often named after the patient) are not
    # written to disk unless the user opts in
    assert str(study_dir) not in settings.read_text() and again.recent() == []
    again.commands_remember_recent.setChecked(True)
    again.add_recent(str(study_dir))
    third = make_main_window(settings_file=settings)
    assert str(study_dir.resolve()) in third.recent()


def test_settings_live_in_the_fetal_viewer_config_folder(tmp_path, monkeypatch):
    from fetal_viewer.gui.settings import app_settings

    monkeypatch.delenv("FETAL_VIEWER_SETTINGS", raising=False)
    monkeypatch.setenv("FETAL_VIEWER_CONFIG_DIR", str(tmp_path / "config"))
    s = app_settings()
    s.setValue("probe", 1)
    s.sync()
    assert Path(s.fileName()) == tmp_path / "config" / "settings.ini"
    assert (tmp_path / "config" / "settings.ini").is_file()


def test_a_finishing_worker_does_not_take_a_block_s_warnings(qtbot):
    """A superqt worker that ends while the GUI thread collects warnings used to put back
    the process-wide filters and hook it saw when it started (pytest's "error" here)."""
    inside, release = threading.Event(), threading.Event()

    def work() -> None:
        inside.set()
        release.wait(5)

    worker = create_worker(work, _start_thread=False)
    worker.start()
    assert inside.wait(5)
    with collect_warnings() as caught:
        with qtbot.waitSignal(worker.finished, timeout=5000):
            release.set()
        warnings.warn("after the worker finished", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["after the worker finished"]


def test_series_key_is_stable(study_dir):
    from fetal_viewer.core.io import open_path

    a = open_path(study_dir).patients[0].studies[0].series
    b = open_path(study_dir).patients[0].studies[0].series
    assert {series_key(s) for s in a} == {series_key(s) for s in b}


def test_demo_phantom_studies_open_with_ai(
    qtbot, make_main_window, demo_folder, model_service, monkeypatch
):
    """The --demo flow: demo studies found (or made) in a worker, opened, and analysed."""
    from fetal_viewer.gui.workers import demo_studies_job

    monkeypatch.setenv("FETAL_VIEWER_DEMO_DIR", str(demo_folder))
    window = make_main_window(model_service)
    window._on_model_loaded(model_service.info)
    with qtbot.waitSignal(window.study_opened, timeout=60_000):
        window.run_job(
            demo_studies_job,
            context="Preparing the demo studies",
            on_returned=lambda folder: window.open_paths([folder]),
        )
    assert len(window.browser.patients) >= 10
    labels = [window.browser.topLevelItem(i).text(0) for i in range(len(window.browser.patients))]
    assert not any("PHANTOM^" in label for label in labels)  # pseudonyms, not names
    qtbot.waitUntil(lambda: window.result is not None, timeout=60_000)
    calibrated = window.series.calibration.spacing_mm is not None
    assert window.view.spacing_mm == window.series.calibration.spacing_mm
    assert window.pane.calibration_banner.isVisibleTo(window) is not calibrated
    assert window.view.has_overlay
    frame = window.view.frame
    assert frame.shape[:2] == window.view.overlay_item.pixmap().size().toTuple()[::-1]
    qtbot.keyClick(window.view, Qt.Key.Key_K)  # the next heatmap class, for this study
    assert window.ai_panel.class_combo.currentIndex() == 1
    window.browser.step_patient(1)  # next case
    qtbot.waitUntil(lambda: window.patient is not window.browser.patients[0], timeout=5_000)
    assert window.ai_panel.class_combo.currentIndex() == 0  # the top class again


def test_study_menu_opens_coordinator_and_reading_mode(make_main_window, tmp_path: Path) -> None:
    from fetal_viewer.gui.readerstudy.coordinator import CoordinatorWindow
    from fetal_viewer.gui.readerstudy.reader import ReaderWindow

    window = make_main_window()
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    titles = [a.text() for a in menus["Study"].actions()]
    assert titles == ["Coordinator…", "Read…"]
    db = str(tmp_path / "studies.sqlite")
    coordinator = window.open_study_window("coordinator", db)
    reader = window.open_study_window("read", db)
    assert isinstance(coordinator, CoordinatorWindow) and coordinator.isVisible()
    assert isinstance(reader, ReaderWindow) and reader.isVisible()
    coordinator.close()
    reader.close()


def test_about_shows_version_intended_use_model_and_licences(make_main_window, model_service):
    from fetal_viewer import INTENDED_USE, __version__

    window = make_main_window(model_service=model_service)
    box = window.show_about()
    text = box.text()
    assert __version__ in text and INTENDED_USE in text
    assert model_service.info.name in text
    assert "pylibjpeg-libjpeg" in text and "GPL" in text
    # the inference runtime, as the model thread chose it (forced to ONNX Runtime in tests)
    assert "Runtime: ONNX Runtime" in text and "chosen by hand" in text
    assert "openvino" in text
    box.close()
    window._on_model_loaded(model_service.info)
    label = window.ai_panel.model_label.text()
    assert f"Runtime: {model_service.info.runtime}" in label


def test_a_folder_of_plain_images_asks_how_to_group_them(qtbot, make_main_window, tmp_path):
    """20 HC18 images of 20 pregnancies became one patient with one verdict: the viewer
    asks (offering one patient per image), and the grouping shows in the browser."""
    import cv2

    from fetal_viewer.core.io.grouping import ImageGrouping

    folder = tmp_path / "hc18"
    folder.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(folder / f"{i:03d}_HC.png"), us_frames(1, seed=i)[0])
    window = make_main_window()
    window.open_paths([folder])
    qtbot.waitUntil(lambda: window.grouping_dialog is not None, timeout=30_000)
    dialog = window.grouping_dialog
    assert dialog.choice() is ImageGrouping.PER_IMAGE
    with qtbot.waitSignal(window.study_opened, timeout=10_000):
        dialog.accept()
    assert len(window.browser.patients) == 3
    study_item = window.browser.topLevelItem(0).child(0)
    assert "one patient per image" in study_item.text(0)
    assert "one patient per image" in window.status_label.text()
    # the same folder again, as frames of one examination: one patient
    other = make_main_window()
    with qtbot.waitSignal(other.study_opened, timeout=30_000):
        other.open_paths([folder], grouping=ImageGrouping.ONE_STUDY)
    assert len(other.browser.patients) == 1 and other.grouping_dialog is None


def test_ai_panel_withholds_a_frame_outside_the_domain(
    qtbot, make_main_window, study_dir, tmp_path
):
    """The panel shows the guard's verdict with no bars and no heat, Show anyway reveals
    them (logged), and the exported picture prints the verdict under the image."""
    from PySide6.QtGui import QImage

    from fetal_viewer.core.fov import find_fov
    from fetal_viewer.core.model.preprocess import PreprocessSpec, preprocess
    from fetal_viewer.core.viewer.ai import AIStatus
    from fetal_viewer.core.viewer.results import FrameResult, ModelInfo
    from fetal_viewer.gui.imaging import qimage_to_rgb

    window = make_main_window()
    open_and_wait(qtbot, window, [study_dir])
    classes = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")
    window.state.set_model(
        ModelInfo("tiny", "1", "ab" * 32, classes, "research use only", "c.json", "mean", 64)
    )
    frame = window.view.frame
    probs = np.array([0.05, 0.05, 0.05, 0.05, 0.8], np.float32)
    cams = np.ones((5, 2, 2), np.float32)
    geometry = preprocess(frame, PreprocessSpec(input_size=64)).geometry
    window.state.set_result(0, FrameResult(probs, cams, geometry, 12.0, 5.0))
    panel = window.ai_panel
    assert window.state.ai_view().status is AIStatus.WITHHELD
    assert panel.reveal_button.isVisible() and panel.domain_label.isVisible()
    assert "Outside what this model was trained on" in panel.domain_label.text()
    assert panel.frame_bars.values is None and not window.view.has_overlay
    plain = tmp_path / "plain.png"
    window.export_view(plain, with_overlay=True)
    captioned = QImage(str(plain))
    _, y0, _, y1 = find_fov(frame)
    assert captioned.height() > y1 - y0  # the verdict is printed under the image
    band = qimage_to_rgb(captioned)[y1 - y0 :]
    assert band.max() > 100  # text drawn in the band
    qtbot.mouseClick(panel.reveal_button, Qt.MouseButton.LeftButton)
    assert not panel.reveal_button.isVisible()
    assert panel.frame_bars.values is not None and window.view.has_overlay
    assert "shown anyway" in panel.frame_bars.note.text()
    # a cine frame in domain on its own, shown while the rest of its cine is scored, then
    # withheld with its cine (the cine rule; test_a_cine_of_a_foreign_view_... runs it live)
    pending = FrameResult(probs, cams, geometry, 0.5, 1.0, cine_pending=True)
    window.state.set_result(1, pending)
    assert window.state.ai_view().status is AIStatus.SHOWN
    assert "the rest of this cine is being checked" in panel.domain_label.text()
    window.state.set_result(1, replace(pending, cine_pending=False, cine_flagged=(4, 6)))
    assert window.state.ai_view().status is AIStatus.WITHHELD
    assert "4 of the 6 frames of this cine are" in panel.domain_label.text()
    assert panel.frame_bars.values is None


def test_study_summary_prints_the_domain_guard(study_dir, tmp_path):
    """Flagged frames are left out of the patient and series levels and named; a study none
    of whose frames is in domain gets no class."""
    from fetal_viewer.core.io import open_path
    from fetal_viewer.core.model.preprocess import PreprocessSpec, preprocess
    from fetal_viewer.core.viewer.results import FrameResult, ModelInfo
    from fetal_viewer.gui.summary import SeriesSummaryInput, build_summary

    patient = open_path(study_dir).patients[0]
    study = patient.studies[0]
    series = study.series[0]
    classes = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")
    info = ModelInfo("tiny", "1", "ab" * 32, classes, "research use only", "c.json", "mean", 64)
    geometry = preprocess(series.frame(0), PreprocessSpec(input_size=64)).geometry
    probs = np.array([0.1, 0.1, 0.1, 0.1, 0.6], np.float32)

    def result(score: float) -> FrameResult:
        return FrameResult(probs, np.ones((5, 2, 2), np.float32), geometry, score, 5.0)

    some = build_summary(
        tmp_path / "some.html", "P1", study,
        [SeriesSummaryInput(series, [0, 1], [result(1.0), result(9.0)])], info,
    ).read_text()  # fmt: skip
    assert "1 of 2 analysed frames outside what the model was trained on" in some
    assert "1 outside the model's domain" in some and "Frame 2:" not in some
    none = build_summary(
        tmp_path / "none.html", "P1", study,
        [SeriesSummaryInput(series, [0, 1], [result(8.0), result(9.0)])], info,
    ).read_text()  # fmt: skip
    assert none.count("No assessable frames") == 2 and "rachischisis 60" not in none
    mr = dataclasses.replace(result(1.0), foreign_modality="MR (magnetic resonance)")
    header = build_summary(
        tmp_path / "mr.html", "P1", study, [SeriesSummaryInput(series, [0], [mr])], info
    ).read_text()
    assert "Not ultrasound: the series is MR (magnetic resonance)" in header
    assert "rachischisis 60" not in header
    assert "Operating point" not in none
    shifted = dataclasses.replace(
        info, operating_point="operating point: logit offsets normal +1.75"
    )
    text = build_summary(
        tmp_path / "op.html", "P1", study,
        [SeriesSummaryInput(series, [0], [result(1.0)])], shifted,
    ).read_text()  # fmt: skip
    assert "Operating point: logit offsets normal +1.75" in text


def test_a_cine_of_a_foreign_view_is_withheld_whole(qtbot, make_main_window, tmp_path):
    """The shipped model on a cine whose frames are mostly foreign: the first frame passes
    the guard alone and is shown; the rest of the cine is scored behind it, and then the
    cine rule withholds that frame too, saying why."""
    from fetal_viewer.core.viewer.ai import AIStatus
    from fetal_viewer.resources import DEMO_MODEL_CARD
    from tests.factories import write_mostly_foreign_cine

    cine = write_mostly_foreign_cine(tmp_path / "mixed.dcm")
    window = make_main_window()
    window.load_model(DEMO_MODEL_CARD)
    qtbot.waitUntil(lambda: window.model.info is not None, timeout=120_000)
    open_and_wait(qtbot, window, [cine])
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=60_000)
    first = window.state.result
    assert first.domain_score <= first.domain_threshold  # in domain on its own
    qtbot.waitUntil(lambda: window.state.ai_view().status is AIStatus.WITHHELD, timeout=60_000)
    assert window.state.result.cine_flagged == (4, 6)
    assert not window.state.result.cine_pending
    assert "4 of the 6 frames of this cine are" in window.ai_panel.domain_label.text()
    window.show_frame(1)  # every other frame of the cine comes withheld from the cache
    qtbot.waitUntil(lambda: window.state.result_index == 1, timeout=10_000)
    assert window.state.ai_view().status is AIStatus.WITHHELD
    summary = window.state.patient_summary(window.model.series_probs)
    assert summary.probs is None
    # the long verdicts wrap inside the panel rather than widen it past its dock
    from PySide6.QtWidgets import QScrollArea

    scroll = window.ai_panel.findChild(QScrollArea)
    qtbot.waitUntil(lambda: "No assessable frames" in window.ai_panel.patient_bars.note.text())
    assert scroll.widget().minimumSizeHint().width() <= scroll.viewport().width()


def test_a_series_that_is_not_ultrasound_is_withheld_by_its_header(
    qtbot, make_main_window, tmp_path
):
    """The shipped model on phantom heads (inside its domain) in a file whose header says
    MR: the panel withholds them and names the modality, with no cine left pending."""
    from fetal_viewer.core.viewer.ai import AIStatus
    from fetal_viewer.resources import DEMO_MODEL_CARD
    from tests.factories import write_head_cine

    path = write_head_cine(tmp_path / "mr.dcm", "MR")
    window = make_main_window()
    window.load_model(DEMO_MODEL_CARD)
    qtbot.waitUntil(lambda: window.model.info is not None, timeout=120_000)
    open_and_wait(qtbot, window, [path], n_frames=2)
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=60_000)
    result = window.state.result
    assert result.domain_score <= result.domain_threshold and not result.cine_pending
    assert window.state.ai_view().status is AIStatus.WITHHELD
    text = window.ai_panel.domain_label.text()
    assert text.startswith("Not ultrasound: the series is MR (magnetic resonance)")
    assert window.ai_panel.frame_bars.values is None and not window.view.has_overlay


def test_a_study_arriving_in_batches_stays_one_patient_and_one_study(
    qtbot, make_main_window, tmp_path
):
    """PACS delivers a study a batch of files at a time: each batch joins the patient and
    study already shown, so "this patient" and *Analyse study* cover all of it."""
    from pydicom.uid import generate_uid

    window = make_main_window()
    study_uid = generate_uid()
    batches = [
        write_us_dicom(tmp_path / f"b{i}.dcm", us_frames(2 + i), study_uid=study_uid)
        for i in range(3)
    ]
    for path in batches:
        with qtbot.waitSignal(window.study_opened, timeout=30_000):
            window.open_paths([str(path)])
    wait_until(lambda: window.series is not None and window.state.pending is None)
    browser = window.browser
    assert browser.topLevelItemCount() == 1 and len(browser.patients) == 1
    assert browser.topLevelItem(0).childCount() == 1  # one study
    assert browser.topLevelItem(0).child(0).childCount() == 3  # its three series
    state = window.state
    assert state.patient is browser.patients[0]
    assert [len(s) for s in state.study.series] == [2, 3, 4]
    # every series item holds the patient and study as they are now
    for item in browser.series_items():
        _, patient, study, _series = item.data(0, Qt.ItemDataRole.UserRole)
        assert patient is state.patient and study is state.study
