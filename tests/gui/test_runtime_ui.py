"""The viewer's runtime: ``auto`` measured in the model thread, or forced by environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from fetal_viewer.core.cam.gradcam import CAM_METHODS
from fetal_viewer.gui.workers import BACKEND_ENV, ModelService

from .conftest import wait_until


@pytest.mark.parametrize("backend", ["", "torch"])
def test_model_thread_chooses_the_runtime(
    qapp: QApplication,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    monkeypatch.setenv("FETAL_VIEWER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(BACKEND_ENV, backend)  # empty: auto
    service = ModelService()
    errors: list[object] = []
    service.failed.connect(lambda req, exc, ctx: errors.append(exc))
    try:
        service.load_model(tiny_model)
        wait_until(lambda: service.info is not None or bool(errors), 300)
        assert not errors and service.info is not None
        predictor = service._predictor
        assert service.info.runtime == predictor.runtime_description
        if backend:
            assert predictor.choice.how == "forced" and "PyTorch" in service.info.runtime
        else:
            assert predictor.choice.how == "measured" and "measured now" in service.info.runtime
            assert list((tmp_path / "runtime" / "choices").glob("*.json"))
        # the default heatmap comes first; every method is offered where torch is installed
        assert service.methods[0] == predictor.default_cam_method
        assert sorted(service.methods) == sorted(CAM_METHODS)
    finally:
        service.shutdown()
