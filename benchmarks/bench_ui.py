"""GUI responsiveness while the model analyses a 120-frame study.

A probe QTimer fires every 5 ms on the GUI thread and records how late each firing is
(its "stall"). First an idle baseline (study open, nothing running), then the same while
"Analyse study" runs over 120 frames and the cine plays. Goal: no stall over 50 ms.

Model: the demo model when present, else a random ResNet34 at the real 224 px input
(the same cost per frame). Study: one 120-frame 300x400 RGB ultrasound DICOM cine.
The last line printed is one JSON object.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_ui.py

``--cold-start N``: instead, N cold starts of ``fetal-viewer --demo --smoke-test`` (new
process each, offscreen) read from the app's start-up trace (``startup: EVENT after S s`` in
its log): first paint, study opened, first frame, model loaded, first probabilities; the
peer is a bare PySide6 main window's first paint in a cold process, measured in the same
run, and the ratio is our first paint over it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.factories writes the study
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
N_FRAMES = 120
PROBE_MS = 5
GOAL_MS = 50.0


def write_cine(path: Path, n: int, rows: int = 300, cols: int = 400) -> Path:
    from pydicom.uid import generate_uid

    from tests.factories import write_rgb_cine

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:rows, 0:cols]
    fan = (np.abs(xx - cols / 2) < (yy + 20) * 0.75) & (
        (xx - cols / 2) ** 2 + (yy + 20) ** 2 < (rows * 0.97) ** 2
    )
    frames = np.zeros((n, rows, cols, 3), np.uint8)
    for i in range(n):
        blob = 110 * np.exp(-(((xx - cols / 2 - i % 40) ** 2 + (yy - rows / 2) ** 2) / 600.0))
        grey = np.where(fan, (rng.gamma(2.0, 40.0, (rows, cols)) + blob).clip(0, 255), 0)
        frames[i] = grey.astype(np.uint8)[..., None]
    return write_rgb_cine(
        path,
        frames,
        PatientID="BENCH-1",
        PatientName="Bench^Patient",
        StudyInstanceUID=generate_uid(),
        FrameTime="33.3",
    )


class StallProbe:
    def __init__(self) -> None:
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.late: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.late = []
        self.clock.start()
        self._last = 0.0
        self.timer.start()

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        late = np.array(self.late or [0.0])
        return {
            "max_stall_ms": round(float(late.max()), 1),
            "p99_ms": round(float(np.percentile(late, 99)), 1),
            "ticks": len(self.late),
        }

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed() / 1e6
        self.late.append(max(0.0, now - self._last - PROBE_MS))
        self._last = now


def spin(seconds: float, until: object = None) -> None:
    """Run the real event loop (like ``app.exec()``) for ``seconds`` or until ``until()``."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    check = QTimer()
    check.setInterval(50)
    check.timeout.connect(lambda: loop.quit() if until and until() else None)
    check.start()
    QTimer.singleShot(round(seconds * 1000), loop.quit)
    loop.exec()
    check.stop()


BARE_QT = """
import time; t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication([])
class W(QMainWindow):
    def paintEvent(self, e):
        super().paintEvent(e)
        print(f"bare first paint {time.perf_counter() - t0:.3f}", flush=True)
        app.quit()
w = W(); w.resize(900, 600); w.show(); app.exec()
"""


def cold_start(runs: int) -> int:
    import re
    import statistics
    import subprocess

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    events: dict[str, list[float]] = {}
    walls, bare = [], []
    for i in range(runs):
        tmp = Path(tempfile.mkdtemp(prefix="bench-start-"))
        run_env = dict(env, FETAL_VIEWER_LOG_DIR=str(tmp), FETAL_VIEWER_SETTINGS=str(tmp / "s.ini"))
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "fetal_viewer", "--demo", "--smoke-test"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        walls.append(time.perf_counter() - t0)
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        log = (tmp / "fetal-viewer.log").read_text()
        for name, secs in re.findall(r"startup: (.+?) after ([0-9.]+) s", log):
            events.setdefault(name, []).append(float(secs))
        out = subprocess.run(
            [sys.executable, "-c", BARE_QT], env=env, capture_output=True, text=True, timeout=120
        )
        bare.append(float(out.stdout.split()[-1]))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in events.items()))
    med = {k: round(statistics.median(v), 3) for k, v in events.items()}
    bare_paint = statistics.median(bare)
    result = {
        "bench": "ui_cold_start_demo",
        "runs": runs,
        "median_s": med,
        "bare_qt_first_paint_s": round(bare_paint, 3),
        "first_paint_ratio_vs_bare_qt": round(med.get("first paint", float("nan")) / bare_paint, 2),
        "process_wall_s": round(statistics.median(walls), 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


def main() -> int:
    if "--cold-start" in sys.argv:
        return cold_start(int(sys.argv[sys.argv.index("--cold-start") + 1]))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from fetal_viewer.core.spawning import allow_workers
    from fetal_viewer.resources import DEMO_MODEL_CARD

    allow_workers()  # as the app does
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert app is not None
    from fetal_viewer.gui.error_sink import ErrorSink
    from fetal_viewer.gui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    os.environ.setdefault("FETAL_VIEWER_LOG_DIR", str(tmp / "logs"))
    if Path(DEMO_MODEL_CARD).is_file():
        card, model_note = Path(DEMO_MODEL_CARD), "demo model"
    else:
        import torch

        from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
        from fetal_viewer.core.model.network import build_resnet34

        torch.manual_seed(0)
        card = save_checkpoint(
            build_resnet34(5), ModelCard(name="bench-random", version="0", input_size=224), tmp
        )
        model_note = "random ResNet34, 224 px input"
    study = write_cine(tmp / "cine.dcm", N_FRAMES)

    sink = ErrorSink()
    window = MainWindow(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat), sink)
    window.resize(1400, 860)
    window.show()
    window.load_model(card)
    window.open_paths([str(study)])
    spin(120, lambda: window.model.info is not None and window.result is not None)
    if window.result is None:
        print("model or study did not load", sink.history, file=sys.stderr)
        return 1
    probe = StallProbe()

    probe.start()
    spin(3.0)  # idle baseline: study open, nothing running
    idle = probe.stop()

    finished: list[bool] = []
    window.model.analysis_finished.connect(lambda job, cancelled: finished.append(cancelled))
    probe.start()
    t0 = time.perf_counter()
    window.analyse_study()
    window.cine.set_playing(True)  # the reader keeps scrolling the cine meanwhile
    spin(600, lambda: bool(finished))
    elapsed = time.perf_counter() - t0
    busy = probe.stop()
    window.cine.set_playing(False)
    frames_shown = window.cine.index
    window.close()
    result = {
        "bench": "ui_stall_during_analysis",
        "model": model_note,
        "frames": N_FRAMES,
        "idle_max_stall_ms": idle["max_stall_ms"],
        "idle_p99_ms": idle["p99_ms"],
        "analysis_max_stall_ms": busy["max_stall_ms"],
        "analysis_p99_ms": busy["p99_ms"],
        "stall_ratio_vs_idle": round(busy["max_stall_ms"] / max(idle["max_stall_ms"], 1.0), 2),
        "analysis_s": round(elapsed, 2),
        "analysis_frames_per_s": round(N_FRAMES / elapsed, 1),
        "errors": len(sink.history),
        "cpu_count": os.cpu_count(),
        "goal_ms": GOAL_MS,
        "goal_met": busy["max_stall_ms"] <= GOAL_MS and not sink.history,
        "cine_index_at_end": frames_shown,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
