"""Safe checkpoints: safetensors weights plus a JSON model card.

A checkpoint is a folder::

    card.json            ModelCard (what the model is, how to feed it, how it was made)
    weights.safetensors  the state dict, float32 or float16 (loaded back as float32)
    guard.safetensors    optional artifacts beside the weights (the domain guard, the
    model.onnx           ONNX graph that the OpenVINO and ONNX Runtime backends run), each
    ...                  named in the card's ``artifacts`` with its sha256

Nothing is ever unpickled. Torch is needed only to train or to run the torch backend:
:func:`load_checkpoint` reads the weights as numpy arrays and builds the torch module on
first use of :attr:`LoadedModel.model`, so a viewer running the ONNX graph never imports
torch. :func:`load_checkpoint` refuses pickles (``.pt``/``.pth`` or a
pickle renamed ``.safetensors``), checks the safetensors header, the weights' sha256 against
the card, that the weights file lies inside the card's folder, and that tensor names,
shapes and the class list agree with the architecture. Every refusal is a
:class:`~fetal_viewer.errors.ModelLoadError` with what/why/fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.aggregation import AGGREGATION_RULES, DEFAULT_RULE
from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.model.network import ARCHITECTURE, resnet34_shapes
from fetal_viewer.core.model.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESS_VERSION,
    PreprocessSpec,
)
from fetal_viewer.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

    from fetal_viewer.core.model.guard import DomainGuard

log = logging.getLogger(__name__)

CARD_NAME = "card.json"
WEIGHTS_NAME = "weights.safetensors"
#: the ONNX graph of the network, an artifact of the card (``train`` writes it)
ONNX_ARTIFACT = "onnx"
ONNX_FILE = "model.onnx"
CARD_FORMAT = 1
RESEARCH_USE = "research use only"
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".tar"}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass
class ModelCard:
    """Everything needed to use a checkpoint correctly, and what it is (not) for."""

    name: str
    version: str
    classes: tuple[str, ...] = CLASSES
    architecture: str = ARCHITECTURE
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    preprocessing_version: str = PREPROCESS_VERSION
    aggregation: str = DEFAULT_RULE
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    intended_use: str = RESEARCH_USE
    weights_file: str = WEIGHTS_NAME
    weights_sha256: str = ""
    dtype: str = "float32"
    created: str = ""
    notes: str = ""
    #: extra files beside the weights: name -> {"file": ..., "sha256": ...}
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    card_format: int = CARD_FORMAT

    @property
    def spec(self) -> PreprocessSpec:
        """The preprocessing this model expects."""
        return PreprocessSpec(
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            version=self.preprocessing_version,
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, path: str | Path | None = None) -> ModelCard:
        """Parse and validate a card; raises :class:`ModelLoadError` on any problem."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: nesting deeper than the parser's recursion limit
            raise ModelLoadError(
                "The model card is not valid JSON.",
                why=str(exc),
                fix="Use the card.json written by save_checkpoint / `fetal-viewer train`.",
                path=path,
            ) from exc
        if not isinstance(data, dict):
            raise ModelLoadError("The model card is not a JSON object.", path=path)
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("name", "version", "classes") if k not in data]
        if missing:
            raise ModelLoadError(
                f"The model card lacks {', '.join(missing)}.",
                fix="Re-export the model with save_checkpoint.",
                path=path,
            )
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(
                f"The model card has unknown fields: {', '.join(unknown)}.",
                why="It was written by another tool or a newer version of fetal-viewer.",
                fix="Update fetal-viewer or re-export the model.",
                path=path,
            )
        try:
            card = cls(
                name=_str(data["name"]),
                version=_str(data["version"]),
                classes=tuple(_str(c) for c in data["classes"]),
                architecture=_str(data.get("architecture", ARCHITECTURE)),
                input_size=int(data.get("input_size", 224)),
                mean=_triple(data.get("mean", IMAGENET_MEAN)),
                std=_triple(data.get("std", IMAGENET_STD)),
                preprocessing_version=_str(data.get("preprocessing_version", PREPROCESS_VERSION)),
                aggregation=_str(data.get("aggregation", DEFAULT_RULE)),
                training_data=_str(data.get("training_data", "")),
                metrics=dict(data.get("metrics", {})),
                intended_use=_str(data.get("intended_use", RESEARCH_USE)),
                weights_file=_str(data.get("weights_file", WEIGHTS_NAME)),
                weights_sha256=_str(data.get("weights_sha256", "")).lower(),
                dtype=_str(data.get("dtype", "float32")),
                created=_str(data.get("created", "")),
                notes=_str(data.get("notes", "")),
                artifacts=_artifacts(data.get("artifacts", {})),
                card_format=int(data.get("card_format", CARD_FORMAT)),
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e999)
            raise ModelLoadError(
                "The model card has a field of the wrong type.",
                why=str(exc),
                fix="Re-export the model with save_checkpoint.",
                path=path,
            ) from exc
        card.validate(path)
        return card

    def validate(self, path: str | Path | None = None) -> None:
        """Check the card's own consistency (not the weights)."""
        problems: list[str] = []
        if self.card_format > CARD_FORMAT:
            problems.append(f"card_format {self.card_format} is newer than {CARD_FORMAT}")
        if self.architecture != ARCHITECTURE:
            problems.append(f"architecture {self.architecture!r} is not {ARCHITECTURE!r}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append(f"classes must be 2+ distinct names, got {list(self.classes)}")
        if not 32 <= self.input_size <= 1024:
            problems.append(f"input_size {self.input_size} is outside 32..1024")
        if any(s <= 0 for s in self.std):
            problems.append(f"std {list(self.std)} must be positive")
        if self.preprocessing_version != PREPROCESS_VERSION:
            problems.append(
                f"preprocessing_version {self.preprocessing_version!r} is not this "
                f"version's {PREPROCESS_VERSION!r}"
            )
        if self.aggregation not in AGGREGATION_RULES:
            problems.append(
                f"aggregation {self.aggregation!r} is not one of {list(AGGREGATION_RULES)}"
            )
        if self.dtype not in {"float32", "float16"}:
            problems.append(f"dtype {self.dtype!r} is not float32 or float16")
        if RESEARCH_USE not in self.intended_use.lower():
            problems.append(f"intended_use must state {RESEARCH_USE!r}")
        if problems:
            raise ModelLoadError(
                "The model card is inconsistent.",
                why="; ".join(problems),
                fix="Re-export the model with save_checkpoint from this version of fetal-viewer.",
                path=path,
            )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _artifacts(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise TypeError(f"artifacts must be an object, got {value!r}")
    out: dict[str, dict[str, str]] = {}
    for name, entry in value.items():
        if not isinstance(entry, dict) or set(entry) != {"file", "sha256"}:
            raise TypeError(f"artifact {name!r} must have exactly 'file' and 'sha256'")
        out[_str(name)] = {"file": _str(entry["file"]), "sha256": _str(entry["sha256"]).lower()}
    return out


def _triple(value: Any) -> tuple[float, float, float]:
    vals = [float(v) for v in value]
    if len(vals) != 3:
        raise ValueError(f"expected 3 numbers, got {value!r}")
    return vals[0], vals[1], vals[2]


class LoadedModel:
    """A verified checkpoint: its card, the weights as float32 numpy ``arrays``, the verified
    ONNX graph (``onnx_path``, or ``None`` when the card names none) and the domain guard.

    ``guard`` is the verified domain guard, or ``None``; then ``guard_note`` says why (the
    card names none, or its file was missing or tampered with: the model still loads).
    :attr:`model`, the torch module in eval mode (float32, CPU), is built from the arrays on
    first use; without torch it raises :class:`ModelLoadError`.
    """

    def __init__(
        self,
        card: ModelCard,
        card_path: Path,
        weights_path: Path,
        arrays: dict[str, NDArray] | None = None,
        model: torch.nn.Module | None = None,
        guard: DomainGuard | None = None,
        guard_note: str = "",
        onnx_path: Path | None = None,
    ) -> None:
        if arrays is None and model is None:
            raise ValueError("a LoadedModel needs its weights as arrays or as a torch module")
        self.card = card
        self.card_path = card_path
        self.weights_path = weights_path
        self.arrays = arrays
        self.guard = guard
        self.guard_note = guard_note
        self.onnx_path = onnx_path
        self._model = model
        self._lock = threading.Lock()

    @property
    def model(self) -> torch.nn.Module:
        """The torch module, built from the arrays on first use (then the arrays are let go)."""
        with self._lock:
            if self._model is None:
                assert self.arrays is not None
                self._model = _torch_model(self.card, self.arrays, self.weights_path)
                self.arrays = None
            return self._model

    @property
    def fc_weight(self) -> NDArray[np.float32]:
        """The final layer's weight ``(C, 512)``, which every heatmap is computed from."""
        if self._model is None and self.arrays is not None:
            return np.asarray(self.arrays["fc.weight"], dtype=np.float32)
        fc = getattr(self.model, "fc", None)
        weight = getattr(fc, "weight", None)
        if weight is None:
            raise ModelLoadError("The model has no linear fc layer; it is not a ResNet.")
        return np.asarray(weight.detach().cpu().numpy(), dtype=np.float32)


def _torch_model(card: ModelCard, arrays: dict[str, NDArray], weights: Path) -> torch.nn.Module:
    try:
        import torch

        from fetal_viewer.core.model.network import build_resnet34
    except ImportError as exc:
        raise ModelLoadError(
            "This needs torch, which is not installed.",
            why=f"{type(exc).__name__}: {exc}",
            fix="Install torch (the full bundle or `pip install torch`), or use what runs "
            "without it: the ONNX runtimes and the gradcam / gradcam-stitch heatmaps.",
            path=weights,
        ) from exc
    model = build_resnet34(len(card.classes))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    return model.eval()


def sha256_file(path: str | Path) -> str:
    """The file's sha256 as hex, read in blocks (the one file-hash helper of the app)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def save_checkpoint(
    model: torch.nn.Module, card: ModelCard, out_dir: str | Path, fp16: bool = False
) -> Path:
    """Write ``weights.safetensors`` and ``card.json`` into ``out_dir``; return the card path.

    The card is updated in place with the weights' file name, sha256, dtype and (if empty)
    creation time. ``fp16=True`` halves the file; loading converts back to float32.
    """
    import torch
    from safetensors.torch import save_file

    card.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    n_out = state["fc.weight"].shape[0] if "fc.weight" in state else None
    if n_out != len(card.classes):
        raise ModelLoadError(
            f"The model has {n_out} outputs but the card lists {len(card.classes)} classes.",
            fix="Build the network with build_resnet34(len(card.classes)).",
        )
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        t = value.detach().to("cpu")
        if fp16 and t.is_floating_point():
            t = t.to(torch.float16)
        tensors[key] = t.contiguous()
    weights = out / WEIGHTS_NAME
    tmp = weights.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "name": card.name})
    tmp.replace(weights)
    card.weights_file = WEIGHTS_NAME
    card.weights_sha256 = sha256_file(weights)
    card.dtype = "float16" if fp16 else "float32"
    if not card.created:
        card.created = datetime.now(UTC).isoformat(timespec="seconds")
    card_path = out / CARD_NAME
    card_path.write_text(card.to_json(), encoding="utf-8")
    return card_path


def write_card_metrics(card_path: str | Path, key: str, figures: dict[str, Any]) -> None:
    """Set ``metrics[key]`` in a model card on disk (the weights and their sha256 untouched)."""
    path = Path(card_path)
    card = ModelCard.from_json(path.read_text(encoding="utf-8"), path=path)
    card.metrics[key] = figures
    path.write_text(card.to_json(), encoding="utf-8")


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


def load_checkpoint(card_path: str | Path) -> LoadedModel:
    """Load and verify a checkpoint from its card (or the folder holding ``card.json``):
    the card, the weights (sha256, format, names and shapes against the architecture,
    finite values), the ONNX graph when the card names one (sha256) and the domain guard.
    Needs no torch; the torch module is built when :attr:`LoadedModel.model` is first used."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = _resolve_card(card_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError("The model card cannot be read.", why=str(exc), path=path) from exc
    card = ModelCard.from_json(text, path=path)

    weights = _verified_file(path, card.weights_file, card.weights_sha256, "weights")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            "The safetensors weights cannot be read.",
            why=str(exc),
            fix="Copy the checkpoint folder again from its source, or re-export the model "
            "with save_checkpoint.",
            path=weights,
        ) from exc

    expected = resnet34_shapes(len(card.classes))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} != {shape}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    if missing or unexpected or wrong:
        why = []
        if "fc.weight" in state and state["fc.weight"].shape[0] != len(card.classes):
            why.append(
                f"the weights have {state['fc.weight'].shape[0]} outputs but the card lists "
                f"{len(card.classes)} classes"
            )
        if missing:
            why.append(f"missing tensors: {', '.join(missing[:5])}")
        if unexpected:
            why.append(f"unexpected tensors: {', '.join(unexpected[:5])}")
        if wrong:
            why.append(f"wrong shapes: {'; '.join(wrong[:5])}")
        raise ModelLoadError(
            f"The weights do not fit a {card.architecture} with {len(card.classes)} classes.",
            why="; ".join(why),
            fix="Use the card that was saved with these weights.",
            path=weights,
        )
    arrays: dict[str, NDArray] = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            arrays[k] = np.array(v, dtype=np.int64)
        elif not np.issubdtype(v.dtype, np.floating):
            raise ModelLoadError(
                f"The weights hold {v.dtype} values in {k}, not floating point.",
                fix="Use the weights.safetensors written by save_checkpoint.",
                path=weights,
            )
        else:
            arrays[k] = np.array(v, dtype=np.float32)  # float16 files load as float32
    bad = [k for k, v in arrays.items() if v.dtype == np.float32 and not np.isfinite(v).all()]
    if bad:
        raise ModelLoadError(
            "The weights contain NaN or infinite values.",
            why=f"in {', '.join(bad[:5])}",
            fix="Use a checkpoint from a training run that converged.",
            path=weights,
        )
    onnx = artifact_path(path, card, ONNX_ARTIFACT, safetensors=False)
    guard, note = load_card_guard(path, card)
    return LoadedModel(
        card=card,
        card_path=path,
        weights_path=weights,
        arrays=arrays,
        guard=guard,
        guard_note=note,
        onnx_path=onnx,
    )


def add_onnx(card_path: str | Path, loaded: LoadedModel | None = None) -> Path:
    """Write the checkpoint's ONNX graph (:data:`ONNX_FILE`) beside its weights and name it
    in the card as artifact :data:`ONNX_ARTIFACT` with its sha256; needs torch. Returns the
    graph's path. ``loaded``: the checkpoint, when already loaded."""
    from fetal_viewer.core.runtime.graph import export_onnx

    path = _resolve_card(card_path)
    loaded = loaded if loaded is not None else load_checkpoint(path)
    graph = path.parent / ONNX_FILE
    try:
        export_onnx(loaded.model, loaded.card.input_size, graph)
    except OSError as exc:
        raise ModelLoadError(
            "Could not write the ONNX graph beside the weights.",
            why=str(exc),
            fix="Check that the checkpoint folder is writable.",
            path=graph,
        ) from exc
    card = add_artifact(path, ONNX_ARTIFACT, graph)
    loaded.card.artifacts = card.artifacts
    loaded.onnx_path = graph
    return graph


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
