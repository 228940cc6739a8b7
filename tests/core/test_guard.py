"""The domain guard: fitting, scoring, storage in the checkpoint, and the aggregation rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fetal_viewer.core.model.aggregation import aggregate, aggregate_assessable
from fetal_viewer.core.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from fetal_viewer.core.model.guard import (
    GUARD_FILE,
    NO_GUARD_NOTE,
    fit_guard,
    load_guard,
    save_guard,
)
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.errors import InferenceError, ModelLoadError


def _clusters(rng: np.random.Generator, n: int, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    centres = np.eye(3, d) * 6.0
    y = rng.integers(0, 3, n)
    return centres[y] + rng.normal(size=(n, d)), y


def test_threshold_passes_the_percentile_of_fresh_in_domain_frames() -> None:
    rng = np.random.default_rng(0)
    x, y = _clusters(rng, 4000)
    val, _ = _clusters(rng, 2000)
    guard = fit_guard(x, y, val, percentile=95)
    fresh, _ = _clusters(rng, 4000)
    flagged = 1.0 - guard.in_domain(guard.score(fresh)).mean()
    assert 0.03 < flagged < 0.07
    # frames far from every class are flagged, whatever their direction
    far = rng.normal(size=(200, 16)) * 8.0 + 20.0
    assert not guard.in_domain(guard.score(far)).any()


def test_score_is_the_smallest_class_mahalanobis_distance_of_unit_features() -> None:
    rng = np.random.default_rng(1)
    x, y = _clusters(rng, 500, d=4)
    guard = fit_guard(x, y, x[:50], percentile=90)
    raw = rng.normal(size=(7, 4))
    np.testing.assert_allclose(guard.score(raw), guard.score(3.0 * raw), rtol=1e-5)
    q = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    p = guard.precision.astype(np.float64)
    expected = [
        min(float(np.sqrt((v - m) @ p @ (v - m))) for m in guard.means.astype(np.float64))
        for v in q
    ]
    np.testing.assert_allclose(guard.score(q), expected, rtol=1e-4)


def test_bad_inputs_are_refused() -> None:
    rng = np.random.default_rng(2)
    x, y = _clusters(rng, 300)
    with pytest.raises(InferenceError, match="percentile"):
        fit_guard(x, y, x, percentile=100)
    guard = fit_guard(x, y, x, percentile=99)
    with pytest.raises(InferenceError, match="expects"):
        guard.score(np.zeros((2, 5)))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x, y = _clusters(rng, 300)
    guard = fit_guard(x, y, x[:40], percentile=97.5)
    back = load_guard(save_guard(guard, tmp_path / GUARD_FILE))
    assert back.summary() == guard.summary()
    np.testing.assert_array_equal(back.precision, guard.precision)
    np.testing.assert_array_equal(back.score(x[:5]), guard.score(x[:5]))


def test_aggregation_uses_only_in_domain_frames() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]], np.float32)
    mask = np.array([False, True, True])
    np.testing.assert_allclose(aggregate_assessable(probs, mask), aggregate(probs[1:]))
    assert aggregate_assessable(probs, np.zeros(3, bool)) is None
    with pytest.raises(InferenceError):
        aggregate_assessable(probs, np.ones(2, bool))


@pytest.fixture(scope="module")
def guarded_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 64-px checkpoint whose guard is fitted on its own features of random frames."""
    from fetal_viewer.core.training.guard_fit import store_guard

    torch.manual_seed(0)
    card = save_checkpoint(
        build_resnet34(5),
        ModelCard(name="t", version="1", input_size=64),
        tmp_path_factory.mktemp("guarded"),
    )
    loaded = load_checkpoint(card)
    rng = np.random.default_rng(0)
    frames = [rng.integers(60, 120, (64, 64, 3), dtype=np.uint8) for _ in range(24)]
    pred = Predictor(loaded).predict(frames, with_features=True)
    assert pred.features is not None and pred.domain_scores is None
    feats = pred.features
    guard = fit_guard(feats[:16], np.arange(16) % 5, feats[16:], percentile=90)
    store_guard(loaded, guard)
    return card


@pytest.fixture
def guarded_card(guarded_original: Path, tmp_path: Path) -> Path:
    """A private copy of the guarded checkpoint, free to damage."""
    import shutil

    return shutil.copytree(guarded_original.parent, tmp_path / "m") / "card.json"


def test_checkpoint_carries_a_verified_guard(guarded_card: Path) -> None:
    card = json.loads(guarded_card.read_text())
    entry = card["artifacts"]["guard"]
    assert entry["file"] == GUARD_FILE and len(entry["sha256"]) == 64
    assert card["metrics"]["domain_guard"]["percentile"] == 90
    loaded = load_checkpoint(guarded_card)
    assert loaded.guard is not None and loaded.guard_note == ""
    rng = np.random.default_rng(5)
    frames = [rng.integers(60, 120, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    frames.append(np.zeros((64, 64, 3), np.uint8))
    frames.append(np.full((64, 64, 3), 255, np.uint8))
    pred = Predictor(loaded).predict(frames, batch_size=2, with_features=True)
    assert pred.domain_scores is not None and pred.features is not None
    np.testing.assert_allclose(pred.domain_scores, loaded.guard.score(pred.features), rtol=1e-5)
    assert pred.domain_threshold == loaded.guard.threshold
    assert pred.in_domain is not None
    np.testing.assert_array_equal(pred.assessable(), pred.in_domain)


@pytest.mark.parametrize("damage", ["tamper", "delete", "escape"])
def test_a_damaged_guard_is_refused_and_the_model_still_loads(
    guarded_card: Path, damage: str
) -> None:
    guard_file = guarded_card.parent / GUARD_FILE
    if damage == "tamper":
        data = bytearray(guard_file.read_bytes())
        data[-3] ^= 0xFF
        guard_file.write_bytes(bytes(data))
    elif damage == "delete":
        guard_file.unlink()
    else:
        card = json.loads(guarded_card.read_text())
        card["artifacts"]["guard"]["file"] = "../elsewhere.safetensors"
        guarded_card.write_text(json.dumps(card))
    loaded = load_checkpoint(guarded_card)
    assert loaded.guard is None
    assert "refused" in loaded.guard_note and NO_GUARD_NOTE in loaded.guard_note
    pred = Predictor(loaded).predict([np.zeros((64, 64, 3), np.uint8)])
    assert pred.domain_scores is None and pred.in_domain is None
    assert pred.assessable().all()


def test_card_without_guard_says_so(tmp_path: Path) -> None:
    card = save_checkpoint(
        build_resnet34(5), ModelCard(name="t", version="1", input_size=64), tmp_path
    )
    loaded = load_checkpoint(card)
    assert loaded.guard is None and loaded.guard_note == NO_GUARD_NOTE


def test_malformed_artifact_entry_is_a_card_error(guarded_card: Path) -> None:
    card = json.loads(guarded_card.read_text())
    card["artifacts"]["guard"] = {"file": GUARD_FILE}
    guarded_card.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="wrong type"):
        load_checkpoint(guarded_card)
