"""Runtimes: every backend agrees with torch; auto measures once, caches, can be forced;
a damaged cache is ignored with a log line; the agreement rule rejects what it should."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fetal_viewer.core.model.checkpoint import (
    LoadedModel,
    ModelCard,
    load_checkpoint,
    save_checkpoint,
)
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.core.runtime import auto, backends
from fetal_viewer.core.runtime.backends import BFLOAT16, NAMES, Backend, Outputs, softmax
from fetal_viewer.errors import InferenceError


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    torch.manual_seed(7)
    model = build_resnet34(5)
    for m in model.modules():  # non-trivial batch-norm statistics, folded by the runtimes
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    card = ModelCard(name="tiny", version="1", input_size=64)
    return load_checkpoint(save_checkpoint(model, card, tmp_path_factory.mktemp("ckpt")))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-cache")


def _batch(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 3, 64, 64)).astype(np.float32)


def test_every_backend_agrees_with_torch(loaded: LoadedModel, cache: Path) -> None:
    x = _batch()
    with torch.no_grad():
        t = torch.from_numpy(x)
        ref_logits, ref_feats = backends.resnet_forward(loaded.model, t)
    ref_probs = ref_logits.softmax(1).numpy()
    ran = []
    for name in NAMES:
        try:
            predictor = Predictor(loaded, backend=name, cache_dir=cache)
        except InferenceError as exc:
            # only bfloat16 may be missing here: every float32 runtime is a dependency
            assert name.endswith("-bf16") and "bfloat16" in exc.message, exc.message
            continue
        ran.append(name)
        assert predictor.runtime.name == name and predictor.choice.how == "forced"
        logits, feats = predictor.runtime.run(x)
        assert logits.shape == (3, 5) and feats.shape == (3, 512, 2, 2)
        assert logits.dtype == feats.dtype == np.float32
        probs, cams = predictor.run_arrays(x, with_cam=True)
        assert cams is not None and cams.shape == (3, 5, 2, 2)
        if predictor.precision == BFLOAT16:
            assert np.abs(probs - ref_probs).max() < 0.02
            # bfloat16 keeps 8 significant bits: close as a whole, not element by element
            rel = np.linalg.norm(feats - ref_feats.numpy()) / np.linalg.norm(ref_feats.numpy())
            assert rel < 0.05, rel
        else:
            assert np.abs(probs - ref_probs).max() < 1e-4
            np.testing.assert_allclose(feats, ref_feats.numpy(), rtol=1e-3, atol=1e-3)
    assert {"openvino", "onnxruntime", "torch"} <= set(ran)


def test_bfloat16_is_refused_where_the_cpu_lacks_it(
    loaded: LoadedModel, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "openvino_bf16", lambda core: False)
    monkeypatch.setattr(backends, "torch_bf16", lambda: False)
    for name in ("openvino-bf16", "torch-bf16"):
        with pytest.raises(InferenceError, match="no native bfloat16"):
            Predictor(loaded, backend=name, cache_dir=cache)
    with pytest.raises(InferenceError, match="Unknown backend"):
        Predictor(loaded, backend="tensorrt", cache_dir=cache)


class _Skewed(Backend):
    """Another backend's outputs, changed as a less precise runtime might change them."""

    def __init__(self, inner: Backend, precision: str, change: str) -> None:
        self.inner, self.precision, self.change = inner, precision, change
        self.runtime = inner.runtime

    def run(self, batch: np.ndarray) -> Outputs:
        logits, feats = self.inner.run(batch)
        if self.change == "logits":
            logits = logits + np.linspace(0, 0.2, logits.shape[1], dtype=np.float32)
        elif self.change == "top":  # swap the two best classes of every frame
            order = np.argsort(logits, axis=1)
            rows = np.arange(len(logits))
            a, b = order[:, -1], order[:, -2]
            logits = logits.copy()
            logits[rows, a], logits[rows, b] = logits[rows, b], logits[rows, a]
        elif self.change == "peak":  # move every frame's activations by one cell
            feats = np.roll(feats, 1, axis=-1)
        return logits, feats


def test_the_agreement_rule(loaded: LoadedModel, cache: Path) -> None:
    from fetal_viewer.core.cam.gradcam import cams_from_features
    from fetal_viewer.core.model.probe import probe_batch, probe_frames

    reference = Predictor(loaded, backend="onnxruntime", cache_dir=cache)
    frames = probe_frames()  # shipped phantoms of every class
    assert len(frames) == 8 and all(f.dtype == np.uint8 and f.shape[2] == 3 for f in frames)
    probe = probe_batch(loaded.card.spec)
    assert probe.shape == (8, 3, 64, 64)
    logits, feats = reference.runtime.run(probe)
    probs = softmax(logits)
    w = reference.fc_weight
    top = probs.argmax(axis=1)
    peaks = auto._peaks(feats, w, top)
    # the peak is the hottest cell of the Grad-CAM the viewer draws
    cams = cams_from_features(feats, w)[np.arange(8), top].reshape(8, -1)
    np.testing.assert_array_equal(peaks, np.where(cams.max(1) > 0, cams.argmax(1), -1))

    source = auto.ModelSource("0" * 64, 64, w, lambda: probe)

    def check(precision: str, change: str) -> tuple[bool, str]:
        skewed = _Skewed(reference.runtime, precision, change)
        ok, why, _ = auto._agreement(skewed, source, probe, probs, peaks)
        return ok, why

    assert check("float32", "none") == (True, "")
    assert check(BFLOAT16, "none") == (True, "")
    ok, why = check("float32", "logits")  # a 0.2 logit skew is far beyond 1e-4
    assert not ok and "prob" in why
    ok, why = check(BFLOAT16, "top")
    assert not ok and ("top class" in why or "prob" in why)
    ok, why = check(BFLOAT16, "peak")
    assert not ok and "peak cell" in why
    # with an operating point, the probabilities compared are the ones the app shows
    offsets = np.array([1.5, 0, 0, 0, 0], np.float32)
    shifted = auto.ModelSource("0" * 64, 64, w, lambda: probe, logit_offsets=offsets)
    skewed = _Skewed(reference.runtime, BFLOAT16, "logits")
    _, _, dprob = auto._agreement(skewed, shifted, probe, shifted.probs(logits), peaks)
    skewed_logits, _ = skewed.run(probe)
    expected = np.abs(softmax(skewed_logits + offsets) - softmax(logits + offsets)).max()
    assert dprob == pytest.approx(float(expected), abs=1e-6)
    assert dprob != pytest.approx(float(np.abs(softmax(skewed_logits) - probs).max()), abs=1e-6)


def test_auto_measures_once_then_uses_the_cache(
    loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = auto.measure

    def counting(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(auto, "measure", counting)
    first = Predictor(loaded, cache_dir=tmp_path)
    assert len(calls) == 1 and first.choice.how == "measured"
    trials = first.choice.trials
    chosen = trials[first.choice.backend]
    assert chosen.status == "chosen" and {"1", "4", "16"} <= set(chosen.ms)
    assert first.choice.reference == "torch"
    assert {"openvino", "onnxruntime", "torch"} <= set(trials)
    timed = {n: t for n, t in trials.items() if t.status in ("chosen", "ok")}
    for name, trial in timed.items():
        tolerance = auto.BFLOAT16_TOLERANCE if "bf16" in name else auto.FLOAT32_TOLERANCE
        assert trial.max_dprob is not None and trial.max_dprob <= tolerance
    # the choice has the smallest worse ratio to the best at batch 1 and at batch 16
    best = {b: min(t.ms[b] for t in timed.values()) for b in ("1", "16")}
    worse = {n: max(t.ms[b] / best[b] for b in best) for n, t in timed.items()}
    assert worse[first.choice.backend] == min(worse.values())
    assert "measured now" in first.runtime_description
    assert first.default_cam_method in ("gradcam", "gradcam-stitch")

    second = Predictor(loaded, cache_dir=tmp_path)
    assert len(calls) == 1, "the second construction measured again"
    assert second.choice.how == "cached" and second.runtime.name == first.runtime.name
    assert second.choice.to_dict() == first.choice.to_dict()
    assert "measured on this machine" in second.runtime_description
    x = _batch(2)
    np.testing.assert_allclose(second.run_arrays(x)[0], first.run_arrays(x)[0], atol=1e-6)
    # the exported graph is cached too: one graph, checked, not exported again
    graphs = list((tmp_path / "graphs").glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0].with_name(graphs[0].name + ".sha256").is_file()


def test_forced_backend_does_not_measure(
    loaded: LoadedModel, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> object:
        raise AssertionError("a forced backend was measured")

    monkeypatch.setattr(auto, "measure", refuse)
    predictor = Predictor(loaded, backend="torch", cache_dir=cache)
    assert (predictor.backend, predictor.precision, predictor.choice.how) == (
        "torch",
        "float32",
        "forced",
    )
    assert "PyTorch" in predictor.runtime_description
    assert "chosen by hand" in predictor.runtime_description
    assert predictor.default_cam_method == "gradcam"  # nothing measured: the plain map


def test_damaged_caches_are_ignored_with_a_log_line(
    loaded: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(auto, "NAMES", ("onnxruntime",))  # one candidate: quick
    calls = []
    real = auto.measure
    monkeypatch.setattr(auto, "measure", lambda *a: calls.append(1) or real(*a))
    Predictor(loaded, cache_dir=tmp_path)
    (entry,) = (tmp_path / "choices").glob("*.json")
    (graph,) = (tmp_path / "graphs").glob("*.onnx")

    entry.write_text('{"key": {"format": 1}, "choice": ', encoding="utf-8")  # cut short
    with caplog.at_level(logging.WARNING, logger="fetal_viewer.core.runtime"):
        again = Predictor(loaded, cache_dir=tmp_path)
    assert len(calls) == 2 and again.choice.how == "measured"
    assert "Ignoring the cached runtime choice" in caplog.text

    caplog.clear()
    entry.write_text(entry.read_text().replace('"backend": "', '"backend": "x'), "utf-8")
    with caplog.at_level(logging.WARNING, logger="fetal_viewer.core.runtime"):
        Predictor(loaded, cache_dir=tmp_path)
    assert len(calls) == 3 and "no known backend" in caplog.text

    caplog.clear()
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    graph.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="fetal_viewer.core.runtime"):
        fixed = Predictor(loaded, backend="onnxruntime", cache_dir=tmp_path)
    assert "fails its checksum" in caplog.text
    reference = Predictor(loaded, backend="torch", cache_dir=tmp_path)
    x = _batch(2)
    np.testing.assert_allclose(fixed.run_arrays(x)[0], reference.run_arrays(x)[0], atol=1e-4)
