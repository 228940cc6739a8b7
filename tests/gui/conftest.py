"""GUI fixtures: a ``make_main_window`` factory like napari's ``make_napari_viewer``
(closes its windows, fails on leaked widgets and running threads), a tiny random model,
and ultrasound DICOM files written into ``tmp_path``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QSettings, QThreadPool
from PySide6.QtWidgets import QApplication

from fetal_viewer.gui.error_sink import ErrorSink, close_logging
from fetal_viewer.gui.main_window import MainWindow
from fetal_viewer.gui.workers import ModelService
from tests.factories import write_rgb_cine

# One fixed backend, so that the default heatmap (which ``auto`` picks from timings) is the
# same on every machine; test_runtime_ui.py runs the viewer with ``auto``.
os.environ.setdefault("FETAL_VIEWER_BACKEND", "onnxruntime")


def us_frames(n: int, rows: int = 96, cols: int = 128, seed: int = 0) -> np.ndarray:
    """(n, rows, cols, 3) uint8: a speckled fan on black that moves from frame to frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    fan = ((xx - cols / 2) ** 2 + (yy + rows * 0.1) ** 2 < (rows * 0.95) ** 2) & (
        np.abs(xx - cols / 2) < (yy + rows * 0.1) * 0.8
    )
    out = np.zeros((n, rows, cols, 3), dtype=np.uint8)
    for i in range(n):
        speckle = rng.gamma(2.0, 40.0, (rows, cols)).clip(0, 255)
        blob = 120 * np.exp(-(((xx - cols / 2 - 3 * i) ** 2 + (yy - rows / 2) ** 2) / 90.0))
        grey = np.where(fan, (speckle + blob).clip(0, 255), 0).astype(np.uint8)
        out[i] = grey[..., None]
    return out


def write_us_dicom(
    path: Path,
    frames: np.ndarray,
    calibrated: bool = True,
    spacing_mm: float = 0.2,
    patient_id: str = "PID-001",
    patient_name: str = "Doe^Jane",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_time_ms: float = 40.0,
    description: str = "Axial head",
) -> Path:
    """A multi-frame RGB ultrasound DICOM file, with a Sequence of Ultrasound Regions
    (physical deltas in cm) when ``calibrated``."""
    from pydicom.uid import generate_uid

    return write_rgb_cine(
        path,
        frames,
        region_cm=spacing_mm / 10.0 if calibrated else None,
        PatientID=patient_id,
        PatientName=patient_name,
        PatientBirthDate="19900101",
        StudyInstanceUID=study_uid or generate_uid(),
        SeriesInstanceUID=series_uid or generate_uid(),
        StudyDate="20240101",
        StudyDescription="Fetal CNS",
        SeriesDescription=description,
        Manufacturer="Test",
        FrameTime=f"{frame_time_ms:.1f}",
        BurnedInAnnotation="NO",
    )


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """One patient, one study, two series (6-frame calibrated cine, 1-frame uncalibrated)."""
    from pydicom.uid import generate_uid

    folder = tmp_path / "study"
    study_uid = generate_uid()
    write_us_dicom(folder / "cine.dcm", us_frames(6), study_uid=study_uid)
    write_us_dicom(
        folder / "still.dcm",
        us_frames(1, seed=3),
        calibrated=False,
        study_uid=study_uid,
        description="Sagittal",
    )
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Card of a randomly initialised ResNet34 at 64 px input (fixed seed)."""
    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    model = build_resnet34(5)
    card = ModelCard(name="tiny-random", version="0.0.1", input_size=64)
    return save_checkpoint(model, card, tmp_path_factory.mktemp("tiny-model"))


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        QCoreApplication.processEvents()
        time.sleep(0.005)


@pytest.fixture(scope="session")
def model_service(qapp: QApplication, tiny_model: Path) -> Iterator[ModelService]:
    """One serial model worker with the tiny model loaded, shared by tests (loading builds
    an ONNX session, a few seconds)."""
    service = ModelService()
    service.load_model(tiny_model)
    wait_until(lambda: service.info is not None, 120)
    yield service
    service.shutdown()
    assert not service.isRunning()


@pytest.fixture
def make_main_window(
    qtbot: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., MainWindow]]:
    """Factory of main windows. At teardown: every window is closed, its workers and
    threads must have stopped, and no top-level widget may be left behind."""
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    initial = set(QApplication.topLevelWidgets())
    windows: list[MainWindow] = []

    def make(
        model_service: ModelService | None = None, settings_file: Path | None = None
    ) -> MainWindow:
        settings = QSettings(
            str(settings_file or tmp_path / "settings.ini"), QSettings.Format.IniFormat
        )
        window = MainWindow(settings=settings, error_sink=ErrorSink(), model_service=model_service)
        window.resize(900, 640)
        window.show()
        windows.append(window)
        return window

    yield make

    for window in windows:
        window.close()
        assert window.loader.pool.waitForDone(10_000)
        assert window.running_workers() == int(not window._owns_model and window.model.isRunning())
        if window._owns_model:
            assert not window.model.isRunning(), "model thread left running"
        window.deleteLater()
    assert QThreadPool.globalInstance().waitForDone(10_000), "global pool still busy"
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()
    leaked = [w for w in QApplication.topLevelWidgets() if w not in initial]
    close_logging()
    assert not leaked, f"leaked widgets: {leaked}"


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom demo studies, generated once into a temporary folder."""
    folder = tmp_path_factory.mktemp("demo") / "studies"
    mp = pytest.MonkeyPatch()
    mp.setenv("FETAL_VIEWER_DEMO_DIR", str(folder))
    try:
        from fetal_viewer.core.phantoms.demo import ensure_demo_studies

        return ensure_demo_studies()
    finally:
        mp.undo()
