"""A long session, scaled down: 40 studies opened and closed, 80 frames analysed.

``benchmarks/soak_gui.py`` runs the same soak at 500 studies and 1,000 frames.
"""

from __future__ import annotations

import json

import pytest

from tests.hardening.soak import check, run_soak


@pytest.fixture(scope="module")
def soak_result(qapp: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    import os

    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34
    from fetal_viewer.gui.error_sink import close_logging

    work = tmp_path_factory.mktemp("soak")
    old = os.environ.get("FETAL_VIEWER_LOG_DIR")
    os.environ["FETAL_VIEWER_LOG_DIR"] = str(work / "logs")
    try:
        torch.manual_seed(0)
        card = save_checkpoint(
            build_resnet34(5), ModelCard(name="soak", version="1", input_size=64), work / "m"
        )
        result = run_soak(card, work, n_studies=40, frames_to_analyse=80, warmup=10)
    finally:
        close_logging()
        if old is None:
            os.environ.pop("FETAL_VIEWER_LOG_DIR", None)
        else:
            os.environ["FETAL_VIEWER_LOG_DIR"] = old
    print(json.dumps(result))
    return result


@pytest.mark.slow
def test_long_session_memory_threads_widgets(soak_result: dict) -> None:
    assert soak_result["frames_analysed"] == 80
    problems = [p for p in check(soak_result) if not p.startswith("live QObjects")]
    assert not problems, json.dumps(soak_result, indent=1)


@pytest.mark.slow
def test_long_session_no_live_qobject_wrappers(soak_result: dict) -> None:
    problems = [p for p in check(soak_result) if p.startswith("live QObjects")]
    assert not problems, json.dumps(soak_result, indent=1)
