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

The card is :mod:`~fetal_viewer.core.model.card`; the checks on each file it names are
:mod:`~fetal_viewer.core.model.artifacts`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.artifacts import (
    _resolve_card,
    _verified_file,
    add_artifact,
    artifact_path,
    load_card_guard,
    sha256_file,
)
from fetal_viewer.core.model.card import CARD_NAME, WEIGHTS_NAME
from fetal_viewer.core.model.card import ModelCard as ModelCard  # most importers read it here
from fetal_viewer.core.model.network import resnet34_shapes
from fetal_viewer.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

    from fetal_viewer.core.model.guard import DomainGuard

#: the ONNX graph of the network, an artifact of the card (``train`` writes it)
ONNX_ARTIFACT = "onnx"
ONNX_FILE = "model.onnx"


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
