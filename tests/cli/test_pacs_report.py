"""`fetal-viewer pacs report`: the AI result of a DICOM study as SR + secondary captures,
in a subprocess with a tiny random model (sending is tested in tests/net)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    return save_checkpoint(
        build_resnet34(5),
        ModelCard(name="tiny-test", version="9.9", input_size=64),
        tmp_path_factory.mktemp("m"),
    )


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "pacs", "report", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_report_writes_sr_and_key_frames(card: Path, tmp_path: Path) -> None:
    from fetal_viewer.core.phantoms import generate_dataset

    generate_dataset(tmp_path / "ph", 1, ["A"], seed=3, fmt="dicom", size=(96, 64))
    study = sorted((tmp_path / "ph" / "dicom").glob("*/*"))[0]
    r = _cli(study, "--out", tmp_path / "out", "--model", card, "--backend", "torch", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (entry,) = doc["studies"]
    assert doc["model"]["name"] == "tiny-test" and doc["model"]["version"] == "9.9"
    assert doc["domain_guard"] == {"note": "no domain check for this model"}
    assert entry["assessment"] == "assessed" and entry["assessable_frames"] == entry["frames"]
    assert len(doc["model"]["weights_sha256"]) == 64
    sr = dcmread(entry["files"][0])
    assert sr.Modality == "SR" and sr.StudyInstanceUID == entry["study_uid"]
    assert all(dcmread(f).Modality == "OT" for f in entry["files"][1:])
    assert "P-" in entry["files"][0]  # folders named by pseudonym, never the patient's ID
    none = _cli(tmp_path / "out" / "nothing", "--out", tmp_path / "o2", "--model", card)
    assert none.returncode == 1 and "No DICOM study" in none.stderr
