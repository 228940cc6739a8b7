"""The operating point: the normal-logit offset, its fit, the card and the predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fetal_viewer.core.model.card import ModelCard
from fetal_viewer.core.model.checkpoint import load_checkpoint, save_checkpoint
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.core.model.predictor import Predictor, softmax
from fetal_viewer.core.training.operating_point import fit_offset, offset_for_rate
from fetal_viewer.errors import DataError, ModelLoadError
from tests.factories import run_cli


def _called(logits: np.ndarray, offset: float) -> np.ndarray:
    z = logits.copy()
    z[:, 0] += offset
    return np.asarray(z.argmax(axis=1))


def test_offset_is_the_smallest_that_meets_the_rate_in_every_center() -> None:
    rng = np.random.default_rng(0)
    n = 400
    logits = rng.normal(size=(n, 5))
    labels = rng.integers(0, 5, n)
    # center B's normals look much more like anomalies than center A's
    centers = ["A" if i % 2 else "B" for i in range(n)]
    logits[[i for i in range(n) if centers[i] == "B" and labels[i] == 0], 0] -= 2.0
    point = fit_offset(logits, labels, centers, 0, 0.9, "normal")
    called = _called(logits, point.offset)
    for c in ("A", "B"):
        mine = [i for i in range(n) if centers[i] == c and labels[i] == 0]
        assert (called[mine] == 0).mean() >= 0.9
    # a hair less and the harder center misses the target
    below = _called(logits, point.offset - 1e-6)
    mine_b = [i for i in range(n) if centers[i] == "B" and labels[i] == 0]
    assert (below[mine_b] == 0).mean() < 0.9
    fig = point.centers["B"]
    assert fig["normal_called_normal_before"] < 0.9 <= fig["normal_called_normal_after"]
    others = [i for i in range(n) if centers[i] == "B" and labels[i] != 0]
    assert fig["others_called_other_after"] == pytest.approx((called[others] != 0).mean(), abs=1e-4)
    # the card keeps 4 decimals, rounded up: the rate still holds at the stored offset
    assert point.offset <= point.stored_offset < point.offset + 1e-4
    assert point.record()["logit_offset"] == point.stored_offset


def test_offset_never_goes_below_zero_and_bad_requests_are_refused() -> None:
    # every normal already called normal: no offset, the anomalies keep all their evidence
    assert offset_for_rate(np.array([-3.0, -2.0, -1.0]), 0.95) == 0.0
    assert offset_for_rate(np.array([1.0, 2.0, 3.0, 4.0]), 0.5) == 2.0
    logits = np.zeros((4, 5))
    with pytest.raises(DataError, match="between 0 and 1"):
        fit_offset(logits, np.zeros(4, np.int64), ["A"] * 4, 0, 1.0, "normal")
    with pytest.raises(DataError, match="no normal frames"):
        fit_offset(logits, np.ones(4, np.int64), ["A"] * 4, 0, 0.9, "normal")


def test_card_keeps_offsets_and_refuses_bad_ones() -> None:
    card = ModelCard(name="t", version="1", logit_offsets={"normal": 1.5})
    back = ModelCard.from_json(card.to_json())
    assert back.logit_offsets == {"normal": 1.5}
    vector = back.offset_vector()
    assert vector is not None and vector[0] == 1.5
    assert "normal +1.50" in back.operating_point_words()
    assert ModelCard(name="t", version="1").offset_vector() is None
    for bad in ({"polydactyly": 1.0}, {"normal": float("inf")}):
        data = json.loads(card.to_json())
        data["logit_offsets"] = bad
        with pytest.raises(ModelLoadError, match="logit_offsets"):
            ModelCard.from_json(json.dumps(data))


@pytest.fixture
def biased_card(tmp_path: Path) -> Path:
    """A 64 px model whose normal logit is pushed far down: it never calls normal."""
    model = build_resnet34(5)
    with torch.no_grad():
        fc = model.fc
        assert isinstance(fc, torch.nn.Linear)
        fc.bias.copy_(torch.tensor([-4.0, 0.0, 0.0, 0.0, 0.0]))
    return save_checkpoint(model, ModelCard(name="t", version="1", input_size=64), tmp_path / "m")


def test_predictor_applies_the_offset_and_leaves_heatmaps_alone(biased_card: Path) -> None:
    rng = np.random.default_rng(3)
    frames = [rng.integers(40, 160, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    plain = Predictor(load_checkpoint(biased_card), backend="onnxruntime")
    before = plain.predict(frames, with_cam=True)
    data = json.loads(biased_card.read_text())
    data["logit_offsets"] = {"normal": 2.5}
    biased_card.write_text(json.dumps(data))
    after = Predictor(load_checkpoint(biased_card), backend="onnxruntime").predict(
        frames, with_cam=True
    )
    shifted = np.log(before.probs.astype(np.float64))
    shifted[:, 0] += 2.5
    np.testing.assert_allclose(after.probs, softmax(shifted), atol=1e-5)
    assert (after.probs[:, 0] > before.probs[:, 0]).all()
    assert before.cams is not None and after.cams is not None
    np.testing.assert_allclose(after.cams, before.cams, atol=1e-5)


def test_operating_point_fit_from_the_command_line(biased_card: Path, tmp_path: Path) -> None:
    from fetal_viewer.core.phantoms import generate_dataset

    manifest = generate_dataset(
        tmp_path / "ph", patients_per_class=3, centers=2, seed=4, fmt="png", size=(96, 72)
    )

    r = run_cli(
        "operating-point", "fit", "--model", str(biased_card), "--manifest", str(manifest),
        "--rate", "0.9", "--val-fraction", "0.4", "--no-progress",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    card = json.loads(biased_card.read_text())
    record = card["metrics"]["operating_point"]
    assert card["logit_offsets"] == {"normal": record["logit_offset"]}
    assert record["logit_offset"] > 3.0  # the -4 bias has to be undone, nearly
    assert record["validation_by_center"].keys() <= {"A", "B"}
    with_normals = [f for f in record["validation_by_center"].values() if f["normal_frames"]]
    assert with_normals
    for fig in with_normals:
        assert fig["normal_called_normal_before"] == 0.0
        assert fig["normal_called_normal_after"] >= 0.9
    assert "normal logit offset +" in r.stdout and "center A" in r.stdout
    # predict names it, in JSON and in words
    frame = str(next((tmp_path / "ph").rglob("*.png")))
    r = run_cli("predict", "--model", str(biased_card), "--json", "--no-progress", frame)
    assert r.returncode == 0, r.stderr
    op = json.loads(r.stdout)["model"]["operating_point"]
    assert op["logit_offsets"] == card["logit_offsets"] and op["target_rate"] == 0.9
    r = run_cli("predict", "--model", str(biased_card), "--no-progress", frame)
    assert "operating point: logit offsets normal +" in r.stdout
    # a class the model lacks is a clear error, the card untouched
    r = run_cli(
        "operating-point", "fit", "--model", str(biased_card), "--manifest", str(manifest),
        "--class", "polydactyly",
    )  # fmt: skip
    assert r.returncode == 1 and "no class 'polydactyly'" in r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(biased_card.read_text()) == card
