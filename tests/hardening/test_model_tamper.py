"""Tampered checkpoints are refused with ModelLoadError and a clear reason; nothing runs.

``tests/core/test_checkpoint.py`` covers a flipped byte (sha256), pickles renamed
``.safetensors`` (protocols 0, 2, highest, torch zip), ``.pt``/``.pth`` files, a 4-class
card over 5-class weights and ``../`` in ``weights_file``. This file adds the rest of the
issue's list: absolute paths and symlinks escaping the folder, weights swapped with a
matching sha256, malformed and hostile safetensors headers and cards. Wherever a pickle
could be reached, it is a payload that would create a marker file if unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch

from fetal_viewer.core.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.errors import ModelLoadError


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Bytes of a 5-class and a 4-class checkpoint (weights + card), saved once."""
    out: dict[str, bytes] = {}
    root = tmp_path_factory.mktemp("ckpt")
    for n in (5, 4):
        torch.manual_seed(n)
        classes = ("normal", "a", "b", "c", "d")[:n]
        card = save_checkpoint(
            build_resnet34(n),
            ModelCard(name=f"t{n}", version="1", classes=classes, input_size=64),
            root / str(n),
            fp16=True,  # half the bytes to copy per test
        )
        out[f"weights{n}"] = (card.parent / "weights.safetensors").read_bytes()
        out[f"card{n}"] = card.read_bytes()
    return out


def _checkpoint(folder: Path, saved: dict[str, bytes], n: int = 5) -> Path:
    folder.mkdir(parents=True)
    (folder / "weights.safetensors").write_bytes(saved[f"weights{n}"])
    card = folder / "card.json"
    card.write_bytes(saved[f"card{n}"])
    return card


def _edit(card: Path, **changes: object) -> None:
    data = json.loads(card.read_text())
    data.update(changes)
    card.write_text(json.dumps(data))


def _marker_pickle(tmp_path: Path) -> tuple[bytes, Path]:
    marker = tmp_path / "pwned"
    return pickle.dumps(_Exploit(marker), protocol=2), marker


def _refused(card: Path, match: str) -> ModelLoadError:
    with pytest.raises(ModelLoadError, match=match) as info:
        load_checkpoint(card)
    assert info.value.what and info.value.fix
    return info.value


def test_untampered_copy_loads(tmp_path: Path, saved: dict[str, bytes]) -> None:
    """The baseline every tamper below departs from does load."""
    assert load_checkpoint(_checkpoint(tmp_path / "ok", saved)).card.classes[0] == "normal"


def test_absolute_weights_path_refused(tmp_path: Path, saved: dict[str, bytes]) -> None:
    payload, marker = _marker_pickle(tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(payload)
    card = _checkpoint(tmp_path / "ck", saved)
    _edit(card, weights_file=str(outside), weights_sha256=hashlib.sha256(payload).hexdigest())
    _refused(card, "points outside the card's folder")
    assert not marker.exists()


@pytest.mark.parametrize("target", ["file", "dir"])
def test_symlink_escaping_folder_refused(
    tmp_path: Path, saved: dict[str, bytes], target: str
) -> None:
    """A link inside the folder (to a file, or to a folder) that leads outside it."""
    payload, marker = _marker_pickle(tmp_path)
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "w.safetensors").write_bytes(payload)
    card = _checkpoint(tmp_path / "ck", saved)
    if target == "file":
        (card.parent / "link.safetensors").symlink_to(outside_dir / "w.safetensors")
        name = "link.safetensors"
    else:
        (card.parent / "sub").symlink_to(outside_dir, target_is_directory=True)
        name = "sub/w.safetensors"
    _edit(card, weights_file=name, weights_sha256=hashlib.sha256(payload).hexdigest())
    _refused(card, "points outside the card's folder")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["", ".", "sub/..", "/"])
def test_weights_file_naming_the_folder_refused(
    tmp_path: Path, saved: dict[str, bytes], name: str
) -> None:
    card = _checkpoint(tmp_path / "ck", saved)
    _edit(card, weights_file=name)
    _refused(card, "points outside the card's folder")


def test_weights_of_another_model_with_updated_sha_refused(
    tmp_path: Path, saved: dict[str, bytes]
) -> None:
    """Weights swapped for a 4-class model's and the sha256 updated to match: the card's
    five classes do not fit the weights' four outputs."""
    card = _checkpoint(tmp_path / "ck", saved)
    weights = card.parent / "weights.safetensors"
    weights.write_bytes(saved["weights4"])
    _edit(card, weights_sha256=hashlib.sha256(saved["weights4"]).hexdigest())
    err = _refused(card, "5 classes")
    assert "4 outputs but the card lists 5 classes" in err.why


def test_missing_tensor_with_updated_sha_refused(tmp_path: Path, saved: dict[str, bytes]) -> None:
    from safetensors.torch import load_file, save_file

    card = _checkpoint(tmp_path / "ck", saved)
    weights = card.parent / "weights.safetensors"
    state = load_file(str(weights))
    del state["layer4.2.bn2.running_var"]
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(weights))
    _edit(card, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    err = _refused(card, "do not fit")
    assert "missing tensors: layer4.2.bn2.running_var" in err.why
    assert "unexpected tensors: extra.weight" in err.why


def _header_file(header: bytes, declared: int | None = None, body: bytes = b"") -> bytes:
    n = len(header) if declared is None else declared
    return struct.pack("<Q", n) + header + body


HOSTILE_HEADERS = {
    "huge_length": (_header_file(b"{}", declared=2**63), "not in safetensors format"),
    "length_past_end": (_header_file(b'{"a":1}', declared=10**6), "not in safetensors format"),
    "not_json": (_header_file(b"{not json at all"), "not in safetensors format"),
    "json_list": (_header_file(b"[1, 2, 3]"), "not in safetensors format"),
    "deep_nesting": (_header_file(b"[" * 200_000 + b"]" * 200_000), "not in safetensors format"),
    "lying_offsets": (
        _header_file(
            json.dumps(
                {"fc.weight": {"dtype": "F32", "shape": [5, 512], "data_offsets": [0, 10**12]}}
            ).encode(),
            body=b"\x00" * 64,
        ),
        "cannot be read",
    ),
    "shape_overflow": (
        _header_file(
            json.dumps(
                {"x": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}
            ).encode(),
            body=b"\x00" * 16,
        ),
        "cannot be read",
    ),
    "empty": (b"", "not in safetensors format"),
    "short": (b"\x01\x02\x03", "not in safetensors format"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_malformed_safetensors_refused(tmp_path: Path, saved: dict[str, bytes], case: str) -> None:
    """Hostile weights whose sha256 the card was updated to match (the attacker owns both)."""
    data, match = HOSTILE_HEADERS[case]
    card = _checkpoint(tmp_path / "ck", saved)
    (card.parent / "weights.safetensors").write_bytes(data)
    _edit(card, weights_sha256=hashlib.sha256(data).hexdigest())
    _refused(card, match)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 200_000 + "]" * 200_000,  # nesting deeper than the JSON parser's recursion
        '{"name": "x", "version": "1", "classes": ["a", "b"], "input_size": 1e999}',
        '{"name": "x", "version": "1", "classes": "ab"}',
        '{"name": "x", "version": "1", "classes": ["a", "b"], "metrics": 3}',
        "\ufeff{}",
        "",
    ],
    ids=["deep", "inf_size", "classes_str", "metrics_int", "bom", "empty"],
)
def test_hostile_card_refused(tmp_path: Path, saved: dict[str, bytes], text: str) -> None:
    card = _checkpoint(tmp_path / "ck", saved)
    card.write_text(text, encoding="utf-8")
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(card)
    assert "model card" in info.value.what
