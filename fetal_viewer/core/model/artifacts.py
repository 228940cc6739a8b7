"""Files a model card names, verified before use: the weights and the artifacts beside them.

Each file must lie in the card's folder, be no pickle, match the card's sha256 and (but for
the ONNX graph) be well-formed safetensors. Artifacts are named in the card's ``artifacts``
(``name -> {"file": ..., "sha256": ...}``): :func:`add_artifact` adds one,
:func:`artifact_path` verifies one. Every refusal is a
:class:`~fetal_viewer.errors.ModelLoadError` with what/why/fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from fetal_viewer.core.model.card import CARD_NAME, ModelCard
from fetal_viewer.errors import ModelLoadError

if TYPE_CHECKING:
    from fetal_viewer.core.model.guard import DomainGuard

log = logging.getLogger(__name__)

_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".tar"}
_MAX_HEADER = 100 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """The file's sha256 as hex, read in blocks (the one file-hash helper of the app)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _looks_like_pickle(head: bytes) -> bool:
    # protocol 2+ pickles start with PROTO (0x80) and the protocol number; torch.save's zip
    # format with "PK"; protocol 0/1 pickles with an opcode. A safetensors header length
    # whose low byte is 0x80 is not a pickle.
    return (
        (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
        or head[:2] == b"PK"
        or head[:1] in (b"(", b"c", b"]", b"}")
    )


def _check_weights_format(path: Path) -> None:
    """Refuse anything that is not a well-formed safetensors file, before parsing it."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        header = fh.read(n) if 2 <= n <= _MAX_HEADER and 8 + n <= size else b""
    meta: object = None
    why = ""
    if header:
        try:
            meta = json.loads(header)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            why = f"its header is not JSON ({exc})"
    else:
        why = f"its header length ({n} bytes) does not fit a {size}-byte file"
    if isinstance(meta, dict):
        return
    if _looks_like_pickle(head):
        raise ModelLoadError(
            "The weights file is a pickle (torch.save format), which is never loaded.",
            why="Unpickling can run arbitrary code; fetal-viewer loads safetensors only.",
            fix=(
                "Convert it on a trusted machine with safetensors.torch.save_file, or "
                "re-export with save_checkpoint."
            ),
            path=path,
        )
    raise ModelLoadError(
        "The weights file is not in safetensors format.",
        why=why or "its header is not a JSON object",
        fix="Use the weights.safetensors written by save_checkpoint.",
        path=path,
    )


def _resolve_card(card_path: str | Path) -> Path:
    path = Path(card_path).expanduser()
    if path.is_dir():
        path = path / CARD_NAME
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"Refusing to load {path.name}: pickled checkpoints are never loaded.",
            why="Unpickling can run arbitrary code.",
            fix="Pass the card.json of a safetensors checkpoint written by save_checkpoint.",
            path=path,
        )
    if path.suffix.lower() == ".safetensors":
        raise ModelLoadError(
            "Pass the model card (card.json), not the weights file.",
            why="The card holds the classes, preprocessing and the weights' checksum.",
            fix=f"Use {path.parent / CARD_NAME}.",
            path=path,
        )
    if not path.is_file():
        raise ModelLoadError(
            "The model card does not exist.",
            fix="Pass --model with the card.json of a checkpoint (see `fetal-viewer train`).",
            path=path,
        )
    return path


def _verified_file(
    card_path: Path, name: str, sha256: str, what: str, safetensors: bool = True
) -> Path:
    """The file ``name`` beside the card, after checking that it stays in the card's folder,
    is no pickle, exists, is safetensors (unless ``safetensors`` is False: an ONNX graph) and
    matches ``sha256``; ``what`` names it in errors ("weights", "domain guard" ...)."""
    folder = card_path.resolve().parent
    file = (folder / name).resolve()
    if not file.is_relative_to(folder) or file == folder:
        raise ModelLoadError(
            f"The card's {what} file {name!r} points outside the card's folder.",
            why="A card may only name files beside it.",
            fix="Keep card.json and the files it names together in one folder.",
            path=card_path,
        )
    if file.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"The card names a pickled {what} file ({file.name}); it is never loaded.",
            why="Unpickling can run arbitrary code.",
            fix="Re-export the model with save_checkpoint (safetensors).",
            path=card_path,
        )
    if not file.is_file():
        raise ModelLoadError(
            f"The {what} file named by the card is missing.",
            fix="Copy the whole checkpoint folder (card.json and every file it names).",
            path=file,
        )
    if safetensors:
        _check_weights_format(file)
    if not sha256:
        raise ModelLoadError(
            f"The model card has no sha256 for the {what} file, so it cannot be verified.",
            fix="Re-export the model with save_checkpoint.",
            path=card_path,
        )
    actual = sha256_file(file)
    if actual != sha256:
        raise ModelLoadError(
            f"The {what} file does not match the card's sha256.",
            why=f"card says {sha256[:16]}..., file is {actual[:16]}...: "
            "the file was changed, truncated or belongs to another card.",
            fix="Copy the checkpoint folder again from its source.",
            path=file,
        )
    return file


def artifact_path(
    card_path: str | Path, card: ModelCard, name: str, safetensors: bool = True
) -> Path | None:
    """The verified file of the card's artifact ``name``, or ``None`` when the card names
    none; raises :class:`ModelLoadError` when it is missing, unsafe or tampered with.
    ``safetensors``: the file must be safetensors (False for the ONNX graph)."""
    entry = card.artifacts.get(name)
    if entry is None:
        return None
    return _verified_file(Path(card_path), entry["file"], entry["sha256"], name, safetensors)


def add_artifact(card_path: str | Path, name: str, file: str | Path) -> ModelCard:
    """Name ``file`` (already written beside the card) in the card as artifact ``name`` with
    its sha256, and rewrite the card; the weights and their sha256 are untouched."""
    path = _resolve_card(card_path)
    card = ModelCard.from_json(path.read_text(encoding="utf-8"), path=path)
    f = Path(file).resolve()
    if f.parent != path.resolve().parent:
        raise ModelLoadError(
            f"An artifact must lie beside its card; {f.name} does not.",
            fix=f"Write it into {path.parent}.",
            path=f,
        )
    card.artifacts[name] = {"file": f.name, "sha256": sha256_file(f)}
    path.write_text(card.to_json(), encoding="utf-8")
    return card


def load_card_guard(card_path: Path, card: ModelCard) -> tuple[DomainGuard | None, str]:
    """The card's verified domain guard and ``""``, or ``None`` and what the AI surfaces
    say instead. A missing or tampered guard is logged and does not stop the model."""
    from fetal_viewer.core.model.guard import GUARD_ARTIFACT, NO_GUARD_NOTE, load_guard

    try:
        file = artifact_path(card_path, card, GUARD_ARTIFACT)
        if file is None:
            return None, NO_GUARD_NOTE
        return load_guard(file), ""
    except ModelLoadError as exc:
        log.warning("domain guard not loaded: %s", exc.message)
        return None, f"domain guard refused ({exc.what}): {NO_GUARD_NOTE}"
