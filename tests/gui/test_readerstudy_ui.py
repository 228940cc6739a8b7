"""Reader-study UI: coordinator (create, readers, progress, export, analysis) and reading
mode (keys 1-5 + Enter, blinded AI reveal, aided read, resume, DB failure keeps the answer)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QSettings, Qt, QThreadPool
from PySide6.QtWidgets import QApplication, QPushButton, QWidget

from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
from fetal_viewer.core.store import open_store
from fetal_viewer.errors import ProtocolError, StoreError
from fetal_viewer.gui.error_sink import ErrorSink, close_logging
from fetal_viewer.gui.readerstudy import coordinator as coord_mod
from fetal_viewer.gui.readerstudy.clock import ActiveClock
from fetal_viewer.gui.readerstudy.coordinator import CoordinatorWindow
from fetal_viewer.gui.readerstudy.jobs import file_sha256
from fetal_viewer.gui.readerstudy.reader import ReaderWindow
from tests.gui.conftest import us_frames, write_us_dicom

LABELS = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")
PHI = ("Doe^Jane", "PID-SECRET", "19900101")


def write_cases(folder: Path, n: int) -> Path:
    """n single-frame DICOMs with fake PHI, and a reference CSV (path,label)."""
    folder.mkdir(parents=True, exist_ok=True)
    ref = folder / "reference.csv"
    with open(ref, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        for i in range(n):
            name = f"Doe_Jane_{i}.dcm"
            write_us_dicom(
                folder / name,
                us_frames(1, rows=72, cols=96, seed=i),
                patient_id=f"PID-SECRET-{i}",
                patient_name="Doe^Jane",
            )
            w.writerow([name, LABELS[0] if i % 2 else LABELS[1 + i % 4], "postnatal follow-up"])
    return ref


@pytest.fixture
def windows(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable]:
    """Factory of reader-study windows; at teardown all are closed, their lanes idle, and
    no top-level widget is left behind."""
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    initial = set(QApplication.topLevelWidgets())
    made: list[QWidget] = []

    def make(kind: type, db: Path, **kw: Any) -> Any:
        settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        w = kind(db, settings=settings, error_sink=ErrorSink(), **kw)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
        w.sink.close_all()
        lanes = [w.lane] if isinstance(w, CoordinatorWindow) else [w.store_lane, w.image_lane]
        assert all(lane.busy == 0 for lane in lanes)
        w.deleteLater()
    assert QThreadPool.globalInstance().waitForDone(10_000)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()
    leaked = [w for w in QApplication.topLevelWidgets() if w not in initial and w.isVisible()]
    close_logging()
    assert not leaked, f"leaked widgets: {leaked}"


def make_study(tmp_path: Path, card: Path, n: int = 3, readers: tuple[str, ...] = ("R1",)) -> Path:
    folder = tmp_path / "cases"
    ref = write_cases(folder, n)
    from fetal_viewer.core.readerstudy.cases import cases_from_reference

    db = tmp_path / "study.db"
    store = open_store(db)
    store.create_study(
        "s",
        design="sequential",
        labels=LABELS,
        cases=cases_from_reference(folder, ref),
        seed=3,
        model_sha256=file_sha256(card),
    )
    for r in readers:
        store.add_reader(r)
        store.enrol("s", r)
    store.close()
    return db


def test_active_clock_excludes_pause_and_idle() -> None:
    t = [0.0]
    clock = ActiveClock(idle_s=10, now=lambda: t[0])
    clock.start()
    t[0] = 5
    clock.touch()
    clock.pause()
    t[0] = 100  # paused: not counted
    clock.resume()
    t[0] = 102
    assert clock.elapsed_ms() == 7000
    t[0] = 500  # idle gap: counts at most idle_s
    clock.touch()
    assert clock.elapsed_ms() == 15000  # 5 s before the pause + 10 s of the idle gap
    clock.stop()
    t[0] = 900
    assert clock.elapsed_ms() == 15000


def test_coordinator_creates_study_tracks_progress_exports_and_analyses(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path, monkeypatch: Any
) -> None:
    folder = tmp_path / "cases"
    ref = write_cases(folder, 6)
    db = tmp_path / "coord.db"
    w = windows(CoordinatorWindow, db, model_card=tiny_model)
    qtbot.waitUntil(lambda: w.store is not None, timeout=20_000)
    dlg = w.new_study_dialog()
    dlg.name.setText("pilot")
    dlg.folder.setText(str(folder))
    dlg.reference.setText(str(ref))
    dlg.design.setCurrentText("crossover")
    assert dlg.washout.isEnabled()
    dlg.design.setCurrentText("sequential")
    with qtbot.waitSignal(w.study_created, timeout=20_000) as created:
        dlg.accept()
    study = created.args[0]
    assert (study.name, study.n_cases, study.design) == ("pilot", 6, "sequential")
    assert study.model_sha256 == file_sha256(tiny_model)
    for r in ("R1", "R2"):
        with qtbot.waitSignal(w.reader_added, timeout=10_000):
            w.add_reader(r, "radiologist", 5)
    qtbot.waitUntil(lambda: w.table.rowCount() == 2, timeout=10_000)
    assert w.table.item(0, 2).text() == "0 / 12"

    # readers read (through the core, as the reading mode does); the window refreshes
    store = open_store(db)
    for k, r in enumerate(("R1", "R2")):
        rs = ReadingSession(
            store, "pilot", r, ai_provider=lambda c: AIOutput("m", {"normal": 0.3, "x": 0.7})
        )
        while (step := rs.begin()) is not None:
            if step.condition == "aided":
                rs.get_ai()
            label = LABELS[(step.position + k) % 5]
            rs.submit(label, 60, 20 + 10 * (step.position % 5) + 5 * (step.condition == "aided"))
    store.close()
    w.refresh()
    qtbot.waitUntil(lambda: w.table.item(0, 2).text() == "12 / 12", timeout=10_000)
    assert w.total.value() == 24

    with qtbot.waitSignal(w.exported, timeout=20_000) as exported:
        w.export_to(tmp_path / "export")
    files = exported.args[0]
    assert set(files) == {"long_csv", "json", "imrmc", "imrmc_ids", "mrmcaov"}
    for p in files.values():
        text = Path(p).read_text()
        assert text.strip()
        for secret in (*PHI, "Doe_Jane", str(folder)):
            assert secret not in text, (secret, p)

    opened: list[str] = []
    monkeypatch.setattr(coord_mod, "open_url", lambda url: opened.append(url.toLocalFile()))
    with qtbot.waitSignal(w.analysed, timeout=60_000) as analysed:
        w.analyse_to(tmp_path / "report")
    html = analysed.args[0]["html"]
    assert Path(html).is_file() and "Reader study: pilot" in Path(html).read_text()
    assert opened == [str(html)]
    assert not w.sink.history


def _wait_step(qtbot: Any, w: ReaderWindow, condition: str) -> None:
    qtbot.waitUntil(
        lambda: w.step is not None and w.step.condition == condition and w.ready, timeout=30_000
    )


def _start_reading(qtbot: Any, w: ReaderWindow) -> None:
    """R1 starts reading study s, and the first (unaided) step is ready."""
    qtbot.waitUntil(lambda: w.start_button.isEnabled(), timeout=20_000)
    w.start_reading("s", "R1")
    _wait_step(qtbot, w, "unaided")


def test_reader_reads_with_keys_ai_revealed_only_after_unaided_and_resumes(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path
) -> None:
    db = make_study(tmp_path, tiny_model, n=3)
    w = windows(ReaderWindow, db, model_card=tiny_model)
    qtbot.waitUntil(
        lambda: w.study_combo.count() == 1 and w.start_button.isEnabled(), timeout=20_000
    )
    w.start_reading("s", "R1")
    _wait_step(qtbot, w, "unaided")
    first = w.step.case.pseudonym
    # blinded: nothing of the AI on screen, and the core refuses it
    assert w.ai is None and not w.ai_group.isVisible() and not w.view.has_overlay
    with pytest.raises(ProtocolError, match="blinded"):
        w.session.get_ai()
    qtbot.keyClick(w.view, Qt.Key.Key_Return)  # no label chosen yet: nothing stored
    assert not w.acknowledged and "Choose a label" in w.status.text()
    qtbot.keyClick(w.view, Qt.Key.Key_3)
    assert w.chosen_label() == "encephalocele"
    assert w.status.text() == ""  # the hint goes with what it asked for
    w.anomaly.setValue(80)
    with qtbot.waitSignal(w.ai_revealed, timeout=60_000):
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert w.acknowledged[-1].condition == "unaided" and w.acknowledged[-1].label == "encephalocele"
    _wait_step(qtbot, w, "aided")
    assert w.step.case.pseudonym == first
    assert w.ai_group.isVisible() and w.view.has_overlay
    # the reader is told how coarse the heatmap is (tiny model: 64 px input, 2x2 cells)
    assert w.heat_note.isVisible() and "2×2 grid over the 64 px" in w.heat_note.text()
    assert "map is empty" not in w.heat_note.text()
    shown = w.ai
    w._on_ai(first, replace(shown, heatmap=np.zeros_like(shown.heatmap)))
    assert "2×2 grid" in w.heat_note.text() and "map is empty" in w.heat_note.text()
    w._on_ai(first, shown)
    assert "map is empty" not in w.heat_note.text()
    assert "encephalocele" in w.locked_label.text()
    assert sum(w.ai_bars.values) == pytest.approx(1.0, abs=1e-4)
    # on a 900 px screen the AI output and the whole decision fit without scrolling
    w.resize(1400, 860)
    qtbot.waitUntil(lambda: w.height() == 860)
    for part in (w.ai_group, w.heat_note, w.submit_button):
        assert part.visibleRegion().boundingRect() == part.rect(), part.objectName()
    qtbot.keyClick(w.view, Qt.Key.Key_1)
    with qtbot.waitSignal(w.read_saved, timeout=20_000):
        qtbot.keyClick(w.view, Qt.Key.Key_Enter)
    _wait_step(qtbot, w, "unaided")
    assert w.step.case.pseudonym != first and not w.ai_group.isVisible()
    qtbot.keyClick(w.view, Qt.Key.Key_2)
    with qtbot.waitSignal(w.ai_revealed, timeout=60_000):
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    second = w.step.case.pseudonym
    w.close()

    store = open_store(db)
    reads = store.reads(store.get_study("s").id)
    aided = next(r for r in reads if r.condition == "aided")
    assert [r.condition for r in reads] == ["unaided", "aided", "unaided"]
    assert aided.label == "normal" and aided.changed_from_unaided is True
    assert aided.ai_model_sha == file_sha256(tiny_model) and aided.ai_heatmap_visible is True
    assert set(aided.ai_probs) == set(LABELS) and reads[0].anomaly_prob == 80
    assert all(r.active_ms >= 0 for r in reads)
    store.close()

    # reopen: resumes at the aided read of the second case, AI shown again
    w2 = windows(ReaderWindow, db, model_card=tiny_model)
    qtbot.waitUntil(lambda: w2.start_button.isEnabled(), timeout=20_000)
    w2.start_reading("s", "R1")
    _wait_step(qtbot, w2, "aided")
    assert w2.step.case.pseudonym == second and w2.ai_group.isVisible()
    assert w2.step.index == 3 and w2.progress.value() == 3


def test_read_only_database_mid_session_keeps_the_answer(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path
) -> None:
    from sqlalchemy import event

    db = make_study(tmp_path, tiny_model, n=2)
    w = windows(ReaderWindow, db, model_card=tiny_model)
    _start_reading(qtbot, w)
    qtbot.keyClick(w.view, Qt.Key.Key_1)
    with qtbot.waitSignal(w.ai_revealed, timeout=60_000):
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    _wait_step(qtbot, w, "aided")
    acknowledged = [r.uid for r in w.acknowledged]

    read_only = {"on": True}

    def query_only(dbapi_conn: Any, _rec: Any, _proxy: Any) -> None:
        dbapi_conn.execute(f"PRAGMA query_only={'ON' if read_only['on'] else 'OFF'}")

    event.listen(w.store.engine, "checkout", query_only)  # the database becomes read-only
    qtbot.keyClick(w.view, Qt.Key.Key_4)
    w.confidence.setValue(77)
    step = w.step
    with qtbot.waitSignal(w.sink.reported, timeout=20_000) as reported:
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert isinstance(reported.args[0], StoreError) and "read-only" in reported.args[0].what
    qtbot.waitUntil(lambda: w.sink.dialog is not None and w.ready, timeout=5_000)
    assert w.step is step and w.chosen_label() == "holoprosencephaly"
    assert w.confidence.value() == 77 and "NOT saved" in w.status.text()

    read_only["on"] = False  # writable again: the same answer is submitted
    w.sink.dialog.done(0)  # the reader closes the message
    qtbot.waitUntil(lambda: w.sink.dialog is None, timeout=5_000)
    with qtbot.waitSignal(w.read_saved, timeout=20_000) as saved:
        qtbot.mouseClick(w.submit_button, Qt.MouseButton.LeftButton)
    assert saved.args[0].label == "holoprosencephaly" and saved.args[0].confidence == 77
    w.close()
    store = open_store(db)
    uids = [r.uid for r in store.reads(store.get_study("s").id, include_superseded=True)]
    store.close()
    assert uids == [*acknowledged, saved.args[0].uid]


def _themed(w: QWidget) -> None:
    """The app's dark theme on this window only (other tests keep the default style)."""
    from fetal_viewer.gui.app import THEME

    w.setStyleSheet(THEME.read_text(encoding="utf-8"))


def test_chosen_label_is_visible_and_the_aided_step_starts_unchosen(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path
) -> None:
    from fetal_viewer.gui.imaging import qimage_to_rgb

    db = make_study(tmp_path, tiny_model, n=2)
    w = windows(ReaderWindow, db, model_card=tiny_model)
    _themed(w)
    _start_reading(qtbot, w)
    button = w.label_buttons[3]
    before = qimage_to_rgb(button.grab().toImage()).astype(int)
    others_before = qimage_to_rgb(w.label_buttons[0].grab().toImage())
    qtbot.keyClick(w.view, Qt.Key.Key_4)
    qtbot.wait(50)
    after = qimage_to_rgb(button.grab().toImage()).astype(int)
    assert w.chosen_label() == "holoprosencephaly"
    # colour: most of the button's face changes; text: a check mark says which is chosen
    assert (np.abs(after - before).sum(axis=2) > 30).mean() > 0.3
    assert "✓" in button.text() and not any("✓" in b.text() for b in w.label_buttons[:3])
    assert np.array_equal(qimage_to_rgb(w.label_buttons[0].grab().toImage()), others_before)

    with qtbot.waitSignal(w.ai_revealed, timeout=60_000):
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    _wait_step(qtbot, w, "aided")
    # nothing preselected: Enter stores nothing until the reader chooses again
    assert w.chosen_label() is None and not any(b.isChecked() for b in w.label_buttons)
    assert "holoprosencephaly" in w.locked_label.text()
    assert "unaided" in w.label_buttons[3].text()  # the earlier answer, marked as reference
    qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert len(w.acknowledged) == 1 and "Choose a label" in w.status.text()
    qtbot.keyClick(w.view, Qt.Key.Key_4)
    with qtbot.waitSignal(w.read_saved, timeout=20_000) as saved:
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert saved.args[0].label == "holoprosencephaly" and saved.args[0].condition == "aided"


@pytest.mark.parametrize("size", [(1366, 700), (1920, 1040)])
def test_aided_step_fits_without_scrolling(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path, size: tuple[int, int]
) -> None:
    """The window's client area on a 1366x768 screen (taskbar and title bar taken off) and
    on a 1920x1080 one: the whole aided step, AI panel included, shows without scrolling."""
    db = make_study(tmp_path, tiny_model, n=1)
    w = windows(ReaderWindow, db, model_card=tiny_model)
    _themed(w)
    w.resize(*size)
    _start_reading(qtbot, w)
    w.label_buttons[1].click()  # buttons, not keys: also runs under a bare X server
    with qtbot.waitSignal(w.ai_revealed, timeout=60_000):
        w.submit_button.click()
    _wait_step(qtbot, w, "aided")
    qtbot.waitUntil(lambda: (w.width(), w.height()) == size)
    qtbot.wait(300)  # pending layout requests
    shot = w.grab()
    shot.save(str(tmp_path / f"aided-{size[0]}x{size[1]}.png"))
    assert shot.width() == size[0] and shot.height() == size[1]
    assert not w.right_scroll.verticalScrollBar().isVisible()
    parts = (w.ai_group, w.ai_bars, w.heat_note, w.overlay_check, *w.label_buttons)
    for part in (*parts, w.confidence, w.anomaly, w.submit_button, w.pause_button):
        assert part.isVisible() and part.visibleRegion().boundingRect() == part.rect(), (
            part.objectName() or part.text()
        )
    # the image keeps most of the width
    assert w.view.width() > 0.6 * size[0]


def test_reading_view_shows_the_field_of_view_only(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path, demo_folder: Path
) -> None:
    """Scanners burn the patient's name, ID and dates into the header outside the fan: the
    reader sees the same field-of-view crop as the exports."""
    from fetal_viewer.core.fov import find_fov
    from fetal_viewer.core.io.loader import open_series
    from fetal_viewer.core.store import CaseSpec

    source = next((demo_folder / "dicom").rglob("*.dcm"))
    db = tmp_path / "fov.db"
    store = open_store(db)
    store.create_study(
        "s", design="sequential", labels=LABELS, cases=[CaseSpec(str(source), "normal")], seed=1
    )
    store.add_reader("R1")
    store.enrol("s", "R1")
    store.close()
    w = windows(ReaderWindow, db, model_card=tiny_model)
    _start_reading(qtbot, w)
    full = open_series(source).frame(0)
    x0, y0, x1, y1 = find_fov(full)
    assert (y1 - y0, x1 - x0) < full.shape[:2]
    np.testing.assert_array_equal(w.view.frame, full[y0:y1, x0:x1])


def test_coordinator_previews_cases_as_readers_see_them(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path
) -> None:
    from fetal_viewer.core.readerstudy.coordination import load_case_image

    db = make_study(tmp_path, tiny_model, n=2)
    w = windows(CoordinatorWindow, db)
    qtbot.waitUntil(lambda: w.current_name() == "s", timeout=20_000)
    dlg = w.preview_dialog()
    with qtbot.waitSignal(dlg.image_shown, timeout=20_000) as shown:
        pass
    case = dlg.cases[0]
    expected = load_case_image(case.pseudonym, case.source_path, case.frame)
    assert shown.args[0].pseudonym == case.pseudonym
    np.testing.assert_array_equal(dlg.view.frame, expected.frame)
    assert "Field of view" in dlg.note.text()
    dlg.close()


def test_untouched_ratings_are_stored_as_not_set_and_keys_set_them(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path
) -> None:
    db = make_study(tmp_path, tiny_model, n=2)
    w = windows(ReaderWindow, db, model_card=tiny_model)
    _start_reading(qtbot, w)
    assert "not set" in w.decision.confidence_value.text()
    # typing in the comment is typing; Esc gives the keys back to the image
    w.activateWindow()
    comment = w.decision.comment
    comment.setFocus()
    qtbot.keyClicks(comment, "1")
    assert comment.text() == "1" and w.chosen_label() is None
    qtbot.keyClick(comment, Qt.Key.Key_Escape)
    assert not comment.hasFocus()
    qtbot.keyClick(w.view, Qt.Key.Key_2)
    with qtbot.waitSignal(w.read_saved, timeout=20_000) as saved:
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert (saved.args[0].confidence, saved.args[0].anomaly_prob) == (None, None)
    _wait_step(qtbot, w, "aided")
    assert w.state.decision.confidence is None  # nothing carried over either
    assert "anomaly not set" in w.locked_label.text() and "None" not in w.locked_label.text()
    qtbot.keyClick(w.view, Qt.Key.Key_1)
    qtbot.keyClick(w.view, Qt.Key.Key_7, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(w.view, Qt.Key.Key_3, Qt.KeyboardModifier.AltModifier)
    assert w.decision.confidence_value.text() == "70" and w.anomaly.value() == 30
    with qtbot.waitSignal(w.read_saved, timeout=20_000) as saved:
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert (saved.args[0].confidence, saved.args[0].anomaly_prob) == (70, 30)
    # the keys are listed in F1
    from fetal_viewer.gui.shortcuts import READER_SHORTCUTS

    assert any("Ctrl+1" in " ".join(s.keys) for s in READER_SHORTCUTS)
    dialog = w.show_shortcuts()
    texts = [dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())]
    assert any("Alt+1" in t for t in texts)
    dialog.close()


def test_a_study_that_requires_ratings_asks_for_them(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path
) -> None:
    folder = tmp_path / "cases"
    ref = write_cases(folder, 1)
    from fetal_viewer.core.readerstudy.cases import cases_from_reference

    db = tmp_path / "strict.db"
    store = open_store(db)
    cases = cases_from_reference(folder, ref)
    store.create_study(
        "s", design="sequential", labels=LABELS, cases=cases, seed=1, require_ratings=True
    )
    store.add_reader("R1")
    store.enrol("s", "R1")
    store.close()
    w = windows(ReaderWindow, db, model_card=tiny_model)
    _start_reading(qtbot, w)
    qtbot.keyClick(w.view, Qt.Key.Key_2)
    qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert not w.acknowledged and "rating" in w.status.text()
    qtbot.keyClick(w.view, Qt.Key.Key_9, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(w.view, Qt.Key.Key_5, Qt.KeyboardModifier.AltModifier)
    with qtbot.waitSignal(w.read_saved, timeout=20_000) as saved:
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    assert (saved.args[0].confidence, saved.args[0].anomaly_prob) == (90, 50)


@pytest.mark.parametrize("show_ga", [True, False])
def test_gestational_age_is_shown_only_when_the_coordinator_chooses(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path, show_ga: bool
) -> None:
    from fetal_viewer.core.readerstudy.cases import CaseSpec

    path = write_us_dicom(tmp_path / "c.dcm", us_frames(1, rows=72, cols=96))
    db = tmp_path / "ga.db"
    store = open_store(db)
    spec = CaseSpec(str(path), "normal", ga_weeks=20.5)
    store.create_study(
        "s", design="sequential", labels=LABELS, cases=[spec], seed=1, show_ga=show_ga
    )
    store.add_reader("R1")
    store.enrol("s", "R1")
    store.close()
    w = windows(ReaderWindow, db, model_card=tiny_model)
    _start_reading(qtbot, w)
    shown = w.case_header.header.text() + w.case_header.condition_label.text()
    assert ("GA 20w4d" in shown) is show_ga


def test_a_case_file_gone_mid_study_is_named_by_pseudonym_and_can_be_retried(
    qtbot: Any, tmp_path: Path, windows: Callable, tiny_model: Path
) -> None:
    """A reader meets a case whose file was moved: the window says which case (by
    pseudonym, never the file's path, which names the patient) and what to do, and reads on
    with Try again once it is back."""
    db = make_study(tmp_path, tiny_model, n=1)
    source = next((tmp_path / "cases").glob("*.dcm"))
    moved = source.with_name("elsewhere")
    source.rename(moved)
    reported: list[BaseException] = []
    w = windows(ReaderWindow, db, model_card=tiny_model)
    w.sink.reported.connect(lambda exc, _context: reported.append(exc))
    qtbot.waitUntil(lambda: w.start_button.isEnabled(), timeout=20_000)
    w.start_reading("s", "R1")
    panel = w.image_panel
    qtbot.waitUntil(lambda: panel.stack.currentWidget() is panel.unavailable, timeout=30_000)
    said = panel.unavailable_label.text() + " ".join(str(e) for e in reported)
    assert f"Case {w.step.case.pseudonym} cannot be shown" in said and "coordinator" in said
    assert "Doe" not in said and "PID" not in said and str(tmp_path) not in said
    moved.rename(source)
    qtbot.mouseClick(panel.unavailable.findChild(QPushButton), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.view.has_image, timeout=30_000)
    assert panel.stack.currentWidget() is w.view
