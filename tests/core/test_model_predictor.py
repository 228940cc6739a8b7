"""Predictor: backends agree with torch, batching, progress, cancel, aggregation."""

from __future__ import annotations

import json
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
from fetal_viewer.core.model.predictor import Predictor, aggregate
from fetal_viewer.core.progress import CancelToken
from fetal_viewer.errors import CancelledError, InferenceError


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    torch.manual_seed(3)
    model = build_resnet34(5)
    # non-trivial batch-norm statistics so the exported graph's folding is exercised
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    card = ModelCard(name="tiny", version="1", input_size=64)
    return load_checkpoint(save_checkpoint(model, card, tmp_path_factory.mktemp("ckpt")))


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (70 + 3 * i, 90, 3), dtype=np.uint8) for i in range(n)]


def test_onnx_backends_and_torch_match_the_torch_reference(loaded: LoadedModel) -> None:
    frames = _frames(5)
    fast = Predictor(loaded, backend="openvino")
    assert (fast.backend, fast.precision) == ("openvino", "float32"), fast.backend_note
    ref_backend = Predictor(loaded, backend="onnxruntime")
    got = fast.predict(frames, batch_size=2, with_cam=True)
    alt = ref_backend.predict(frames, batch_size=4, with_cam=True)
    from fetal_viewer.core.model.preprocess import preprocess

    x = torch.from_numpy(np.stack([preprocess(f, loaded.card.spec).array for f in frames]))
    with torch.no_grad():
        ref = loaded.model(x).softmax(1).numpy()
    assert got.probs.shape == (5, 5)
    assert np.abs(got.probs - ref).max() < 1e-4
    assert np.abs(alt.probs - ref).max() < 1e-4
    assert got.cams is not None and alt.cams is not None
    assert got.cams.shape == (5, 5, 2, 2)
    assert np.abs(got.cams - alt.cams).max() < 1e-4
    np.testing.assert_allclose(got.probs.sum(1), 1.0, atol=1e-5)
    name, p = got.top(0)
    assert name == loaded.card.classes[int(np.argmax(ref[0]))] and p == pytest.approx(
        ref[0].max(), abs=1e-4
    )
    hm = got.heatmap(1, 2)
    assert hm.shape == frames[1].shape[:2] and hm.min() >= 0.0 and hm.max() <= 1.0


def test_stitched_heatmaps_come_with_the_same_probabilities(loaded: LoadedModel) -> None:
    frames = _frames(3)
    for backend in ("openvino", "onnxruntime", "torch"):
        predictor = Predictor(loaded, backend=backend)
        plain = predictor.predict(frames, with_cam=True)
        fine = predictor.predict(frames, with_cam=True, stitch=True)  # one pass of 4 copies
        np.testing.assert_allclose(fine.probs, plain.probs, atol=1e-6)
        assert fine.cams is not None and fine.cams.shape == (3, 5, 4, 4)  # 2x2 cells at 64 px
        heat = fine.heatmap(0, 1)
        assert heat.shape == frames[0].shape[:2] and 0.9 < heat.max() <= 1.0


def test_progress_cancel_and_batching(loaded: LoadedModel) -> None:
    predictor = Predictor(loaded, backend="torch")
    calls: list[tuple[int, int]] = []
    out = predictor.predict(
        _frames(5), batch_size=2, progress=lambda d, t, m="": calls.append((d, t))
    )
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert out.cams is None and len(out.geometries) == 5
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        predictor.predict(_frames(3), cancel=token)
    with pytest.raises(InferenceError, match="batch_size"):
        predictor.predict(_frames(1), batch_size=0)


def test_aggregation_rules() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]], np.float32)
    np.testing.assert_allclose(aggregate(probs), [1.3 / 3, 1.1 / 3, 0.6 / 3], rtol=1e-6)
    np.testing.assert_allclose(aggregate(probs, "max"), np.array([0.6, 0.7, 0.4]) / 1.7, rtol=1e-6)
    np.testing.assert_allclose(aggregate(probs, "vote"), [2 / 3, 1 / 3, 0], rtol=1e-6)
    geo = np.exp(np.log(probs.astype(np.float64)).mean(0))
    np.testing.assert_allclose(aggregate(probs, "logit_mean"), geo / geo.sum(), rtol=1e-5)
    with pytest.raises(InferenceError, match="Unknown aggregation"):
        aggregate(probs, "median")
    with pytest.raises(InferenceError):
        aggregate(np.zeros((0, 3)))


def test_card_rule_is_the_default(tmp_path: Path) -> None:
    torch.manual_seed(0)
    card = ModelCard(name="t", version="1", input_size=64, aggregation="vote")
    predictor = Predictor(
        load_checkpoint(save_checkpoint(build_resnet34(5), card, tmp_path)), backend="torch"
    )
    probs = np.array([[0.9, 0.1, 0, 0, 0], [0.4, 0.6, 0, 0, 0], [0.8, 0.2, 0, 0, 0]])
    np.testing.assert_allclose(predictor.aggregate(probs), [2 / 3, 1 / 3, 0, 0, 0], rtol=1e-6)


def test_the_second_look_averages_a_head_close_up_into_the_probabilities(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    from fetal_viewer.core.measure.head import find_head
    from fetal_viewer.core.model.card import HEAD_CLOSEUP
    from fetal_viewer.core.model.closeup import SIZE, head_closeup
    from fetal_viewer.core.model.guard import fit_guard
    from tests.core.test_head import ring_frame

    head = ring_frame(270, 400, 190, 150, 60, 48, 20, seed=4)  # a small head: worth a close-up
    noise = _frames(1, seed=9)[0]
    fit = find_head(head)
    assert fit is not None and find_head(noise) is None
    view = head_closeup(head, fit)
    assert view.shape[:2] == (SIZE, SIZE)
    plain = Predictor(loaded, backend="torch")
    feats = plain.predict(_frames(30, seed=5), with_features=True).features
    assert feats is not None
    plain.guard = fit_guard(feats, np.arange(30) % 5, feats[:10], percentile=90)
    whole, close = plain.predict([head, noise]), plain.predict([view])
    assert whole.closeups is None and whole.domain_scores is not None

    card = ModelCard(name="tiny", version="1", input_size=64, second_look=HEAD_CLOSEUP)
    torch.manual_seed(3)
    reloaded = load_checkpoint(save_checkpoint(loaded.model, card, tmp_path))
    looked = Predictor(reloaded, backend="torch")
    assert looked.second_look
    looked.guard = plain.guard
    both = looked.predict([head, noise], batch_size=1)
    assert both.closeups is not None and both.closeups.tolist() == [True, False]
    np.testing.assert_allclose(both.probs[0], (whole.probs[0] + close.probs[0]) / 2, atol=2e-5)
    np.testing.assert_allclose(both.probs[1], whole.probs[1], atol=2e-5)
    # the guard reads the whole frame alone: a close-up decides no frame's domain
    assert both.domain_scores is not None
    np.testing.assert_allclose(both.domain_scores, whole.domain_scores, rtol=1e-4)
    assert "second look" in reloaded.card.reading_words()


def test_a_batch_s_heads_are_searched_in_worker_processes_as_here(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second look's head finder runs a batch's frames in spawned workers while the
    network reads them: the same results, in order, as ``detect_head`` in this process; a
    worker that dies costs that batch a search here, never a result, and the next batch gets
    a new pool. A single frame is searched here."""
    from fetal_viewer.core import spawning
    from fetal_viewer.core.measure.head import detect_head
    from fetal_viewer.core.model import closeup
    from tests.core.test_head import ring_frame

    monkeypatch.setattr(spawning, "_allowed", True)  # as the app's entry point does

    frames = [
        ring_frame(270, 400, 190, 150, 60, 48, 20, seed=4),
        _frames(1, seed=9)[0],
        ring_frame(300, 420, 210, 140, 80, 64, 30, seed=5),
    ]
    expected = [detect_head(f) for f in frames]
    assert expected[0].fit is not None and expected[1].fit is None

    def same(got: list) -> bool:
        return [(g.fit, g.reason) for g in got] == [(e.fit, e.reason) for e in expected]

    if closeup.search_workers() == 0:
        pytest.skip("one core: the head finder runs in this process")
    assert same(closeup.start_head_searches(frames)())
    pool = closeup._pool
    assert pool is not None
    for process in list(pool._processes.values()):  # e.g. killed for memory
        process.kill()
        process.join()
    with caplog.at_level("WARNING", logger="fetal_viewer.core.model.closeup"):
        assert same(closeup.start_head_searches(frames)())
    assert "searching in this process" in caplog.text
    assert closeup._pool is not pool
    assert same(closeup.start_head_searches(frames)()) and closeup._pool is not None
    one = closeup.start_head_searches(frames[:1])()
    assert [(h.fit, h.reason) for h in one] == [(expected[0].fit, expected[0].reason)]


def test_a_script_read_from_stdin_searches_heads_in_its_own_process() -> None:
    """A spawned worker imports the main script again, which a script read from stdin
    cannot give it: the head finder stays in the process, with no worker's traceback."""
    import subprocess
    import sys

    script = (
        "from fetal_viewer.core.model import closeup\n"
        "from fetal_viewer.core.spawning import allow_workers\n"
        "import numpy as np\n"
        "allow_workers()\n"
        "frames = [np.zeros((120, 160, 3), np.uint8)] * 3\n"
        "print(len(closeup.start_head_searches(frames)()), closeup._pool)\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "None"] and "Traceback" not in done.stderr


def test_a_script_that_does_not_allow_workers_runs_once(tmp_path: Path) -> None:
    """A spawned worker runs the main script again, and one without a main guard would run
    whole in it: the core starts no worker unless the program allows them, as the app's
    entry point does."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from fetal_viewer.core.model import closeup\n"
        "import numpy as np\n"
        "frames = [np.zeros((120, 160, 3), np.uint8)] * 4\n"
        "print('ran', len(closeup.start_head_searches(frames)()), closeup._pool, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ran", "4", "None"], done.stdout


def test_head_workers_follow_a_killed_app_without_a_word(tmp_path: Path) -> None:
    """A viewer killed outright (SIGKILL, a crash) leaves no head finder worker behind, and
    nothing of multiprocessing's on its terminal; Ctrl+C, which reaches the workers too, is
    left to the app."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "killed.py"
    script.write_text(
        "import os, signal, time\n"
        "from fetal_viewer.core.model import closeup\n"
        "from fetal_viewer.core.spawning import allow_workers\n"
        "if __name__ == '__main__':\n"
        # as started from a terminal (a shell's background job starts with Ctrl+C ignored)
        "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "    allow_workers()\n"
        "    closeup.start_workers()\n"
        "    pool = closeup._pool\n"
        "    while pool is not None and len(pool._processes) < closeup.search_workers():\n"
        "        time.sleep(0.05)\n"
        "    print(*(pool._processes if pool is not None else ()), flush=True)\n"
        "    if pool is not None:\n"
        "        n = closeup.search_workers()\n"
        "        [f.result() for f in [pool.submit(time.sleep, 1.0) for _ in range(n)]]\n"
        "        for pid in pool._processes:\n"
        "            os.kill(pid, signal.SIGINT)\n"
        "        assert pool.submit(abs, -3).result() == 3\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL
    workers = [int(p) for p in done.stdout.split()]
    if not workers:
        pytest.skip("one core: no head finder workers")

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 20
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
    time.sleep(1)  # the resource tracker's last words, if any
    assert done.stderr == "", done.stderr


def test_a_card_with_an_unknown_second_look_is_refused(tmp_path: Path) -> None:
    from fetal_viewer.errors import ModelLoadError

    path = save_checkpoint(build_resnet34(5), ModelCard(name="t", version="1"), tmp_path)
    data = json.loads(path.read_text())
    data["second_look"] = "zoom-everything"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="second_look"):
        load_checkpoint(path)
