"""Take the README screenshots of the running app under a virtual X server.

    Xvfb :99 -screen 0 1500x900x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python tools/screenshots.py [viewer|reader]

viewer: opens the demo studies with the demo model (what `fetal-viewer --demo` does), shows
the encephalocele patient's cine and analyses the study. reader: makes a reader study of the
demo studies in a temporary database, reads the first case without and then with the AI, and
shows the coordinator. Each shot saves the whole screen with ImageMagick's
`import -window root` (what a person would see) to docs/images/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from fetal_viewer.core.phantoms.demo import ensure_demo_studies
from fetal_viewer.gui.app import apply_theme
from fetal_viewer.gui.browser import ROLE
from fetal_viewer.gui.error_sink import ErrorSink
from fetal_viewer.gui.main_window import MainWindow
from fetal_viewer.resources import DEMO_MODEL_CARD

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
WANTED = "encephalocele"


def shot(name: str) -> None:
    from PySide6.QtTest import QTest

    QTest.qWait(800)  # let the window repaint before the X server is read
    subprocess.run(["import", "-window", "root", str(OUT / name)], check=True)
    print("saved", OUT / name)


def wait(app: QApplication, predicate: object, timeout_s: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def reader_shots() -> int:
    import tempfile

    from PySide6.QtTest import QTest

    from fetal_viewer.core.readerstudy.cases import cases_from_manifest, study_model
    from fetal_viewer.core.store import open_store
    from fetal_viewer.gui.readerstudy.coordinator import CoordinatorWindow
    from fetal_viewer.gui.readerstudy.reader import ReaderWindow

    app = QApplication(sys.argv[:1])
    apply_theme(app)
    demo = ensure_demo_studies()
    db = Path(tempfile.mkdtemp()) / "study.sqlite"
    card, sha, labels = study_model(DEMO_MODEL_CARD)
    store = open_store(db)
    cases = [c for c in cases_from_manifest(demo / "manifest.csv") if "dicom" in str(c)]
    store.create_study(
        "CNS pilot", design="sequential", labels=labels, cases=cases, seed=7,
        model_card=card, model_sha256=sha,
    )  # fmt: skip
    for name, years in (("R01", 6.0), ("R02", 12.0)):
        store.add_reader(name, years_experience=years)
        store.enrol("CNS pilot", name)
    store.close()
    settings = QSettings("/tmp/fv-screenshots.ini", QSettings.Format.IniFormat)
    reader = ReaderWindow(db, settings=settings, error_sink=ErrorSink(), model_card=DEMO_MODEL_CARD)
    reader.setGeometry(0, 0, 1500, 900)
    reader.show()
    wait(app, lambda: reader.start_button.isEnabled())
    reader.start_reading("CNS pilot", "R01")
    wait(app, lambda: reader.step is not None and reader.ready and reader.view.has_image)
    # (no window manager under Xvfb, so the window never becomes active and its key
    # shortcuts stay off: press the buttons the keys stand for)
    reader.label_buttons[2].click()
    reader.confidence.setValue(70)
    reader.anomaly.setValue(85)
    app.processEvents()
    shot("screenshot-reader-unaided.png")
    reader.submit_button.click()
    wait(app, lambda: reader.ai is not None and reader.view.has_overlay and reader.ready)
    shot("screenshot-reader-ai.png")
    reader.label_buttons[2].click()
    reader.submit_button.click()
    wait(app, lambda: reader.step is not None and reader.step.index >= 2 and reader.ready)
    reader.close()
    coordinator = CoordinatorWindow(db, settings=settings, error_sink=ErrorSink())
    coordinator.setGeometry(0, 0, 1500, 900)
    coordinator.show()
    wait(app, lambda: coordinator.store is not None and coordinator.current_name() is not None)
    for _ in range(200):  # let the progress table fill
        app.processEvents()
        QTest.qWait(10)
    shot("screenshot-coordinator.png")
    coordinator.close()
    return 0


def main() -> int:
    if sys.argv[1:] == ["reader"]:
        return reader_shots()
    app = QApplication(sys.argv[:1])
    apply_theme(app)
    settings = QSettings("/tmp/fv-screenshots.ini", QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, error_sink=ErrorSink())
    window.setGeometry(0, 0, 1500, 900)
    window.show()
    demo = ensure_demo_studies()
    manifest = (demo / "manifest.csv").read_text().splitlines()
    wanted_file = next(line.split(",")[0] for line in manifest[1:] if f",{WANTED}," in line)
    window.load_model(DEMO_MODEL_CARD)
    window.open_paths([demo / "dicom"])
    state = {"selected": False, "analysing": False}

    def step() -> None:
        if not state["selected"]:
            series = [it.data(0, ROLE)[3] for it in window.browser.series_items()]
            target = [
                s for s in series if Path(s.source).resolve() == (demo / wanted_file).resolve()
            ]
            if not target or window.model.info is None:
                QTimer.singleShot(200, step)
                return
            window.browser.select_series(target[0])
            state["selected"] = True
            QTimer.singleShot(1500, step)
            return
        if not state["analysing"]:
            window.analyse_study()
            state["analysing"] = True
            QTimer.singleShot(500, step)
            return
        if window.state.job is not None:
            QTimer.singleShot(500, step)
            return
        window.show_frame(min(2, len(window.series) - 1))
        QTimer.singleShot(1500, lambda: (shot("screenshot-viewer.png"), finish()))

    def finish() -> None:
        panel = window.ai_dock.widget()
        panel.grab().save(str(OUT / "screenshot-ai-panel.png"))
        print("saved", OUT / "screenshot-ai-panel.png")
        window.close()
        app.quit()

    QTimer.singleShot(500, step)
    QTimer.singleShot(300_000, app.quit)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
