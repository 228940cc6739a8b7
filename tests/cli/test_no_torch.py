"""Without torch: ``predict``, the viewer and the reader study's AI run from the ONNX graph
the checkpoint carries. Each runs in a subprocess whose ``sitecustomize`` makes ``import
torch`` (and torchvision, pytorch-grad-cam) fail, as in the lean bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BLOCK = (
    "import sys\n"
    "for _name in ('torch', 'torchvision', 'pytorch_grad_cam'):\n"
    "    sys.modules[_name] = None  # import fails, as where torch is not installed\n"
)


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a process where torch cannot be imported, with its own user cache."""
    site = tmp_path_factory.mktemp("no-torch-site")
    (site / "sitecustomize.py").write_text(BLOCK, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    env["FETAL_VIEWER_CACHE_DIR"] = str(tmp_path_factory.mktemp("no-torch-cache"))
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.pop("FETAL_VIEWER_BACKEND", None)
    return env


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny 64-px checkpoint with its ONNX graph, and the same weights without one."""
    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, add_onnx, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(5)
    model = build_resnet34(5)
    with_graph = save_checkpoint(
        model, ModelCard(name="tiny", version="1", input_size=64), tmp_path_factory.mktemp("a")
    )
    add_onnx(with_graph)
    bare = save_checkpoint(
        model, ModelCard(name="bare", version="1", input_size=64), tmp_path_factory.mktemp("b")
    )
    return with_graph, bare


def _frames(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = np.zeros((80, 100, 3), np.uint8)
        frame[10:75, 10:90] = rng.integers(30, 255, (65, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    return folder


def _run(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_the_block_holds(no_torch: dict[str, str]) -> None:
    res = _run(no_torch, "-c", "import torch")
    assert res.returncode != 0 and "import of torch halted" in res.stderr


def test_predict_runs_from_the_onnx_graph(
    no_torch: dict[str, str], cards: tuple[Path, Path], tmp_path: Path
) -> None:
    card, bare = cards
    data = _frames(tmp_path / "data")
    heat = tmp_path / "heat"
    res = _run(
        no_torch, "-m", "fetal_viewer", "predict", "--no-progress", "--json", "--model", card,
        "--heatmaps", heat, "--cam-method", "gradcam-stitch", data,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["model"]["backend"] in ("openvino", "onnxruntime")
    assert doc["model"]["backend_choice"] == "measured"
    frames = [f for p in doc["patients"] for s in p["series"] for f in s["frames"]]
    assert len(frames) == 2 and all(Path(f["heatmap"]).is_file() for f in frames)
    # the choice was measured against ONNX Runtime; torch was reported missing
    (entry,) = (Path(no_torch["FETAL_VIEWER_CACHE_DIR"]) / "runtime" / "choices").glob("*.json")
    choice = json.loads(entry.read_text())["choice"]
    assert choice["reference"] == "onnxruntime"
    assert choice["trials"]["torch"]["status"] == "unavailable"
    # the graph came with the checkpoint: nothing was exported
    assert not (Path(no_torch["FETAL_VIEWER_CACHE_DIR"]) / "runtime" / "graphs").exists()

    # what needs torch says so
    res = _run(
        no_torch, "-m", "fetal_viewer", "predict", "--no-progress", "--model", card,
        "--heatmaps", heat, "--cam-method", "gradcam++", data,
    )  # fmt: skip
    assert res.returncode == 1 and "needs torch" in res.stderr and "Fix:" in res.stderr
    res = _run(no_torch, "-m", "fetal_viewer", "predict", "--no-progress", "--model", bare, data)
    assert res.returncode == 1 and "no ONNX graph" in res.stderr and "export" in res.stderr


def test_viewer_smoke_test_and_reader_study_ai_run_without_torch(
    no_torch: dict[str, str], cards: tuple[Path, Path], tmp_path: Path
) -> None:
    card, _ = cards
    data = _frames(tmp_path / "data", 1)
    env = dict(no_torch)
    env["FETAL_VIEWER_LOG_DIR"] = str(tmp_path / "logs")
    env["FETAL_VIEWER_SETTINGS"] = str(tmp_path / "settings.ini")
    res = _run(env, "-m", "fetal_viewer", str(data / "f0.png"), "--model", card, "--smoke-test")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "smoke test: ok" in res.stdout
    log = (tmp_path / "logs" / "fetal-viewer.log").read_text()
    assert "Inference backend:" in log and "PyTorch" not in log

    script = (
        "import sys, types\n"
        "from fetal_viewer.core.readerstudy.coordination import StudyModel\n"
        "model = StudyModel(sys.argv[1])\n"
        "out = model(types.SimpleNamespace(source_path=sys.argv[2], frame=0))\n"
        "print(round(sum(out.probabilities.values()), 4), out.heatmap.shape)\n"
    )
    res = _run(env, "-c", script, card, data / "f0.png")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "1.0" and "(80, 100)" in res.stdout
