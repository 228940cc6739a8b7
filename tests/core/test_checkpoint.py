"""Safe checkpoints: round trips, verification, and refusal of pickles."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from fetal_viewer.core.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from fetal_viewer.core.model.labels import ANOMALY_CLASSES, CLASSES
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.errors import ModelLoadError


def _save(tmp_path: Path, classes: tuple[str, ...] = CLASSES, fp16: bool = False) -> Path:
    torch.manual_seed(0)
    model = build_resnet34(len(classes))
    card = ModelCard(name="tiny", version="0.0.1", classes=classes, input_size=64)
    return save_checkpoint(model, card, tmp_path / "ckpt", fp16=fp16)


def test_round_trip_float32_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_resnet34(5).eval()
    card_path = save_checkpoint(model, ModelCard(name="t", version="1", input_size=64), tmp_path)
    loaded = load_checkpoint(card_path)
    assert not loaded.model.training
    assert loaded.card.classes == CLASSES
    assert loaded.card.intended_use == "research use only"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_fp16_storage_loads_back_as_float32(tmp_path: Path) -> None:
    card16 = _save(tmp_path / "a", fp16=True)
    card32 = _save(tmp_path / "b", fp16=False)
    loaded = load_checkpoint(card16)
    assert loaded.card.dtype == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    size16 = (card16.parent / "weights.safetensors").stat().st_size
    size32 = (card32.parent / "weights.safetensors").stat().st_size
    assert size16 < 0.6 * size32
    ref = load_checkpoint(card32).model
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ref(x).softmax(1), loaded.model(x).softmax(1), atol=2e-2)


def test_four_class_anomaly_model(tmp_path: Path) -> None:
    loaded = load_checkpoint(_save(tmp_path, classes=ANOMALY_CLASSES).parent)
    assert loaded.card.classes == ANOMALY_CLASSES
    assert loaded.model(torch.zeros(1, 3, 64, 64)).shape == (1, 4)


def test_tampered_weights_fail_sha256(tmp_path: Path) -> None:
    card = _save(tmp_path)
    weights = card.parent / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256") as info:
        load_checkpoint(card)
    assert info.value.fix


def _edit_card(card: Path, **changes: object) -> None:
    data = json.loads(card.read_text())
    data.update(changes)
    card.write_text(json.dumps(data))


def test_class_count_must_match_weights(tmp_path: Path) -> None:
    card = _save(tmp_path)
    _edit_card(card, classes=list(ANOMALY_CLASSES))
    with pytest.raises(ModelLoadError, match="4 classes") as info:
        load_checkpoint(card)
    assert "5 outputs" in info.value.why


def test_weights_outside_card_folder_refused(tmp_path: Path) -> None:
    card = _save(tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes((card.parent / "weights.safetensors").read_bytes())
    _edit_card(card, weights_file="../elsewhere.safetensors")
    with pytest.raises(ModelLoadError, match="outside the card's folder"):
        load_checkpoint(card)


def test_card_problems_are_model_load_errors(tmp_path: Path) -> None:
    card = _save(tmp_path)
    _edit_card(card, intended_use="clinical diagnosis")
    with pytest.raises(ModelLoadError, match="inconsistent") as info:
        load_checkpoint(card)
    assert "research use only" in info.value.why
    card.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_checkpoint(card)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_checkpoint(tmp_path / "missing" / "card.json")


class _Exploit:
    """Unpickling this object creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickles_are_never_unpickled(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker), protocol=protocol)
    # sanity: the payload really would create the marker if unpickled
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Exploit(probe), protocol=protocol))
    assert probe.exists()

    card = _save(tmp_path)
    weights = card.parent / "weights.safetensors"
    weights.write_bytes(payload)  # a pickle renamed .safetensors, with a matching sha256
    import hashlib

    _edit_card(card, weights_sha256=hashlib.sha256(payload).hexdigest())
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(card)
    assert "pickle" in info.value.what or "safetensors" in info.value.what

    pt = tmp_path / "model.pt"
    pt.write_bytes(payload)
    with pytest.raises(ModelLoadError, match="pickled checkpoints are never loaded"):
        load_checkpoint(pt)
    _edit_card(card, weights_file="model.pth")
    (card.parent / "model.pth").write_bytes(payload)
    with pytest.raises(ModelLoadError, match="pickled weights file"):
        load_checkpoint(card)
    assert not marker.exists()


def test_torch_save_zip_renamed_is_refused(tmp_path: Path) -> None:
    card = _save(tmp_path)
    weights = card.parent / "weights.safetensors"
    torch.save(build_resnet34(5).state_dict(), weights)
    import hashlib

    _edit_card(card, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    with pytest.raises(ModelLoadError, match="pickle"):
        load_checkpoint(card)


def test_pretrained_without_cache_never_downloads(tmp_path: Path) -> None:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(ModelLoadError, match="not in the local torch hub cache") as info:
            build_resnet34(5, pretrained=True)
        assert "never downloads" in info.value.why
    finally:
        torch.hub.set_dir(old)


def test_weights_load_as_arrays_and_torch_only_when_asked(tmp_path: Path) -> None:
    from fetal_viewer.core.model.network import resnet34_shapes

    torch.manual_seed(1)
    model = build_resnet34(5)
    assert resnet34_shapes(5) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    loaded = load_checkpoint(save_checkpoint(model, ModelCard(name="t", version="1"), tmp_path))
    assert loaded.arrays is not None and loaded._model is None  # no torch module yet
    assert torch.equal(torch.from_numpy(loaded.fc_weight), model.fc.weight.detach())
    built = loaded.model
    assert loaded.model is built and not built.training and loaded.arrays is None
    assert torch.equal(torch.from_numpy(loaded.fc_weight), model.fc.weight.detach())


def test_onnx_graph_is_named_verified_and_run(tmp_path: Path) -> None:
    from fetal_viewer.core.model.checkpoint import ONNX_ARTIFACT, add_onnx
    from fetal_viewer.core.model.predictor import Predictor

    card_path = _save(tmp_path, fp16=True)
    graph = add_onnx(card_path)
    card = json.loads(card_path.read_text())
    assert card["artifacts"][ONNX_ARTIFACT]["file"] == graph.name == "model.onnx"
    assert len(card["artifacts"][ONNX_ARTIFACT]["sha256"]) == 64
    loaded = load_checkpoint(card_path)
    assert loaded.onnx_path == graph.resolve()
    # the graph is the weights as stored (float16 here): it matches the loaded torch model
    cache = tmp_path / "cache"
    predictor = Predictor(loaded, backend="onnxruntime", cache_dir=cache)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = loaded.model(x).softmax(1).numpy()
    assert abs(predictor.run_arrays(x.numpy())[0] - ref).max() < 1e-4
    assert not (cache / "graphs").exists()  # the card's graph ran: nothing was exported

    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="onnx file does not match the card's sha256"):
        load_checkpoint(card_path)
    graph.unlink()
    with pytest.raises(ModelLoadError, match="onnx file named by the card is missing"):
        load_checkpoint(card_path)
