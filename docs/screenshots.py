"""Take the README screenshots of the running viewer under a virtual X server.

    Xvfb :99 -screen 0 1500x900x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python docs/screenshots.py

Opens the demo studies with the demo model (exactly what `fetal-viewer --demo` does), shows
the encephalocele patient's cine, analyses the study, and saves the whole screen with
ImageMagick's `import -window root` (what a person would see) to docs/images/.
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

OUT = Path(__file__).resolve().parent / "images"
WANTED = "encephalocele"


def main() -> int:
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

    def shot(name: str) -> None:
        subprocess.run(["import", "-window", "root", str(OUT / name)], check=True)
        print("saved", OUT / name)

    def step() -> None:
        if not state["selected"]:
            series = [it.data(0, ROLE)[3] for it in window.browser.series_items()]
            target = [s for s in series if Path(s.source).name == Path(wanted_file).name]
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
        if window._job is not None:
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
