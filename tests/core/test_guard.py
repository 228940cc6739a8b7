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
    BACKSTOP_PERCENTILE,
    GUARD_FILE,
    METHOD,
    NO_GUARD_NOTE,
    PROBE_C,
    PROBE_METHOD,
    cine_flagged,
    fit_guard,
    fit_probe,
    foreign_modality,
    load_guard,
    modality_words,
    save_guard,
)
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.core.model.predictor import Predictions, Predictor
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
    for outliers in (None, x[:80] + 3.0):
        guard = fit_guard(x, y, x[:40], percentile=97.5, outliers=outliers)
        back = load_guard(save_guard(guard, tmp_path / GUARD_FILE))
        assert back.summary() == guard.summary() and back.method == guard.method
        np.testing.assert_array_equal(back.precision, guard.precision)
        np.testing.assert_array_equal(back.score(x[:5]), guard.score(x[:5]))


def _one_sided(rng: np.random.Generator, n: int, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """In-domain frames whose dimension 8 varies widely but is never positive."""
    x, y = _clusters(rng, n, d)
    x[:, 8] = -np.abs(rng.normal(0.0, 3.0, n))
    return x, y


def _shell(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    """Frames as close to the classes as in-domain frames are, but on the positive side of
    dimension 8: within its wide spread, so the distance lets most through; only outlier
    exposure tells them apart."""
    x, _ = _one_sided(rng, n, d)
    x[:, 8] = rng.uniform(2.0, 4.0, n)
    return x


def test_the_probe_flags_outliers_the_distance_lets_through() -> None:
    rng = np.random.default_rng(4)
    x, y = _one_sided(rng, 3000)
    val, _ = _one_sided(rng, 1000)
    plain = fit_guard(x, y, val, percentile=99)
    probed = fit_guard(x, y, val, percentile=99, outliers=_shell(rng, 600))
    assert plain.method == METHOD and plain.probe is None
    assert probed.method == PROBE_METHOD and probed.threshold == 1.0
    # the distance backstop sits at the 99.5th percentile of the validation distances
    backstop = np.percentile(plain.parts(val)[0], BACKSTOP_PERCENTILE)
    assert probed.n_outliers == 600
    assert probed.distance_threshold == pytest.approx(backstop, rel=1e-6)
    fresh, _ = _one_sided(rng, 3000)
    unseen = _shell(rng, 1000)
    flagged = 1.0 - probed.in_domain(probed.score(fresh)).mean()
    assert flagged < 0.04  # the joint score flags about 1 %, the backstop 0.5 %
    assert (~plain.in_domain(plain.score(unseen))).mean() < 0.5
    assert (~probed.in_domain(probed.score(unseen))).mean() > 0.95
    # the score: the larger of the distance backstop's ratio and the joint score's
    distance, log_odds = probed.parts(unseen[:9])
    assert log_odds is not None

    def sig(z: np.ndarray | float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(z)))

    expected = np.maximum(
        distance / probed.distance_threshold, distance * sig(log_odds) / probed.joint_threshold
    )
    np.testing.assert_allclose(probed.score(unseen[:9]), expected, rtol=1e-5)


def test_probe_is_the_balanced_l2_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(6)
    inside, _ = _one_sided(rng, 900, d=12)
    outside = _shell(rng, 150, d=12)
    unit = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (inside, outside)]
    w = fit_probe(*unit)
    x = np.r_[unit[0], unit[1]]
    t = np.r_[np.zeros(900), np.ones(150)]
    ref = LogisticRegression(C=PROBE_C, tol=1e-10, max_iter=10_000)
    ref.fit(x, t, sample_weight=np.where(t == 1, 900 / 150, 1.0))
    np.testing.assert_allclose(w[:-1], ref.coef_[0], rtol=1e-3, atol=1e-3)
    assert w[-1] == pytest.approx(ref.intercept_[0], rel=1e-3, abs=1e-3)


def test_aggregation_uses_only_in_domain_frames() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]], np.float32)
    mask = np.array([False, True, True])
    np.testing.assert_allclose(aggregate_assessable(probs, mask), aggregate(probs[1:]))
    assert aggregate_assessable(probs, np.zeros(3, bool)) is None
    with pytest.raises(InferenceError):
        aggregate_assessable(probs, np.ones(2, bool))


def test_a_cine_mostly_flagged_is_withheld_whole() -> None:
    """The cine rule: more than half of a file's frames flagged withholds every frame;
    half or fewer leaves each frame's own verdict; a still, or frames that are not a whole
    file, are judged frame by frame."""
    assert cine_flagged(np.array([True, False, False])) == (2, 3)
    assert cine_flagged(np.array([True, True, False, False])) is None
    assert cine_flagged(np.array([False])) is None

    def pred(scores: list[float], whole: bool) -> Predictions:
        n = len(scores)
        return Predictions(
            probs=np.full((n, 5), 0.2, np.float32),
            cams=None,
            geometries=[],
            classes=("a", "b", "c", "d", "e"),
            domain_scores=np.array(scores, np.float32),
            domain_threshold=1.0,
            whole_series=whole,
        )

    mostly = pred([0.5, 1.5, 2.0], whole=True)
    assert mostly.cine_flagged == (2, 3) and not mostly.in_domain.any()
    assert not mostly.assessable().any()
    some = pred([0.5, 0.7, 2.0], whole=True)
    assert some.cine_flagged is None and some.in_domain.tolist() == [True, True, False]
    apart = pred([0.5, 1.5, 2.0], whole=False)
    assert apart.cine_flagged is None and apart.in_domain.tolist() == [True, False, False]
    unguarded = Predictions(np.zeros((2, 5), np.float32), None, [], ("a",) * 5, whole_series=True)
    assert unguarded.cine_flagged is None and unguarded.in_domain is None


def test_a_series_whose_header_is_not_ultrasound_is_withheld_whatever_its_scores() -> None:
    """The header rule: a DICOM Modality other than ultrasound, a plain image (OT), a screen
    capture (SC) or none withholds every frame, with or without a guard; the modality is
    named in words."""
    for read in ("US", "OT", "SC", "", " us "):
        assert foreign_modality(read) is None
    assert foreign_modality("MR") == "MR (magnetic resonance)"
    assert foreign_modality("seg") == "SEG (a segmentation)"
    assert foreign_modality("ZZ") == "ZZ"  # a code it has no name for is still not ultrasound
    assert modality_words("MR (magnetic resonance)").startswith("Not ultrasound: the series is MR")

    def pred(modality: str, scores: list[float] | None) -> Predictions:
        return Predictions(
            probs=np.full((2, 5), 0.2, np.float32),
            cams=None,
            geometries=[],
            classes=("a", "b", "c", "d", "e"),
            domain_scores=None if scores is None else np.array(scores, np.float32),
            domain_threshold=None if scores is None else 1.0,
            modality=modality,
        )

    inside = pred("MR", [0.1, 0.2])
    assert inside.foreign_modality == "MR (magnetic resonance)"
    assert inside.in_domain.tolist() == [False, False] and not inside.assessable().any()
    assert pred("CT", None).in_domain.tolist() == [False, False]  # no guard: still withheld
    assert pred("US", [0.1, 2.0]).in_domain.tolist() == [True, False]
    assert pred("OT", None).in_domain is None


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
    dark = Predictor(loaded).predict(
        [rng.integers(0, 30, (64, 64, 3), dtype=np.uint8) for _ in range(8)], with_features=True
    )
    assert dark.features is not None
    guard = fit_guard(
        feats[:16], np.arange(16) % 5, feats[16:], percentile=90, outliers=dark.features
    )
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


def test_guard_fit_from_the_command_line(tmp_path: Path) -> None:
    import cv2

    from fetal_viewer.core.phantoms import generate_dataset
    from fetal_viewer.core.training.guard_fit import MIN_SYNTHETIC
    from tests.factories import run_cli

    torch.manual_seed(0)
    card = save_checkpoint(
        build_resnet34(5), ModelCard(name="t", version="1", input_size=64), tmp_path / "m"
    )
    manifest = generate_dataset(
        tmp_path / "ph", patients_per_class=3, centers=2, seed=4, fmt="png", size=(96, 72)
    )
    other = tmp_path / "other"
    other.mkdir()
    for i in range(3):
        cv2.imwrite(str(other / f"{i}.png"), np.full((50, 80, 3), 60 * i, np.uint8))
    (tmp_path / "empty").mkdir()
    args = ["guard", "fit", "--model", str(card), "--manifest", str(manifest)]
    args += ["--val-fraction", "0.4", "--no-progress"]

    r = run_cli(*args, "--outliers", str(other))
    assert r.returncode == 0, r.stderr
    assert f"{MIN_SYNTHETIC + 3} outlier frames" in r.stdout
    written = json.loads(card.read_text())
    summary = written["metrics"]["domain_guard"]
    assert summary["method"] == PROBE_METHOD and summary["outlier_frames"] == MIN_SYNTHETIC + 3
    assert summary["threshold"] == 1.0 and summary["distance_threshold"] > 0
    frame = str(next((tmp_path / "ph").rglob("*.png")))
    r = run_cli("predict", "--model", str(card), "--json", "--no-progress", frame)
    assert r.returncode == 0, r.stderr
    (patient,) = json.loads(r.stdout)["patients"]
    (result,) = patient["series"][0]["frames"]
    assert result["domain_threshold"] == 1.0 and result["domain_score"] > 0
    # nothing readable under --outliers: a clear error, the card as it was
    r = run_cli(*args, "--outliers", str(tmp_path / "empty"))
    assert r.returncode == 1 and "--outliers" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(card.read_text()) == written
