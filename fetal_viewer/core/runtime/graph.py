"""The ONNX graph of the classifier that OpenVINO and ONNX Runtime run.

:func:`export_onnx` writes it from the torch module (float32 arithmetic, dynamic batch,
outputs ``logits`` and ``features`` = the ``layer4`` activations). Batch norms are left
unfolded, so every weight is stored as the checkpoint holds it: weights that float16
represents exactly (all of them, for a checkpoint saved in float16) are stored in float16
behind a ``Cast`` to float32, which halves the file and changes no value; the runtimes fold
the casts and batch norms when they load the graph. A checkpoint may carry the graph
next to its weights; otherwise :func:`cached_graph` exports it once into the user cache,
keyed by the weights' sha256, with a ``.sha256`` file beside it that is checked on every
later use, so a later start does not export again and a damaged copy is replaced.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fetal_viewer.core.runtime.backends import FEATURES, INPUT, LOGITS, resnet_forward
from fetal_viewer.core.warncatch import collect_warnings
from fetal_viewer.errors import InferenceError

log = logging.getLogger(__name__)

#: bump when the export changes what the graph computes (cached graphs are then re-made)
GRAPH_VERSION = "1"
OPSET = 17


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _float16_storage(proto: Any) -> int:
    """Store every float32 initializer that float16 holds exactly as float16 behind a
    ``Cast`` back to float32 (lossless); returns how many were converted."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if values.size < 16 or not np.array_equal(half.astype(np.float32), values):
            continue
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(half, f"{init.name}.float16"))
        casts.append(helper.make_node("Cast", [f"{init.name}.float16"], [init.name], to=1))
    for i, node in enumerate(casts):
        graph.node.insert(i, node)
    return len(casts)


def export_onnx(model: Any, input_size: int, path: Path) -> str:
    """Write ``model``'s ONNX graph to ``path`` (atomically); returns its sha256."""
    import onnx
    import torch

    class Both(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return resnet_forward(self.model, x)

    buf = io.BytesIO()
    with collect_warnings(), torch.inference_mode(False), torch.no_grad():
        # the TorchScript-based exporter is deprecated but needs no extra packages
        torch.onnx.export(
            Both().eval(),
            (torch.zeros(1, 3, input_size, input_size),),
            buf,  # type: ignore[arg-type]  # the legacy exporter takes a file object
            dynamo=False,
            input_names=[INPUT],
            output_names=[LOGITS, FEATURES],
            dynamic_axes={INPUT: {0: "n"}, LOGITS: {0: "n"}, FEATURES: {0: "n"}},
            opset_version=OPSET,
            do_constant_folding=False,  # keep batch norms apart: weights stay as stored
        )
    proto = onnx.load_from_string(buf.getvalue())
    _float16_storage(proto)
    data = proto.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def cached_graph(
    weights_sha256: str,
    input_size: int,
    torch_model: Callable[[], Any] | None,
    cache: Path,
) -> Path:
    """The graph of the weights ``weights_sha256`` in ``cache``, exported from
    ``torch_model()`` the first time (or when the cached copy fails its checksum)."""
    path = cache / "graphs" / f"{weights_sha256[:32]}-{input_size}px-v{GRAPH_VERSION}.onnx"
    sidecar = path.with_name(path.name + ".sha256")
    if path.is_file():
        try:
            expected = sidecar.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            expected = ""
        if expected and sha256_of(path) == expected:
            return path
        log.warning("The cached ONNX graph %s fails its checksum; exporting it again.", path.name)
    if torch_model is None:
        raise InferenceError(
            "This model has no ONNX graph, and torch is not installed to make one.",
            why="The checkpoint's card names no ONNX graph and none is in the user cache.",
            fix="Add the graph to the checkpoint on a machine with torch "
            "(fetal-viewer model export-onnx CARD), or install torch.",
        )
    try:
        digest = export_onnx(torch_model(), input_size, path)
        sidecar.write_text(digest + "\n", encoding="ascii")
    except OSError as exc:
        raise InferenceError(
            "Could not write the ONNX graph into the user cache.",
            why=str(exc),
            fix="Check that the cache folder is writable (FETAL_VIEWER_CACHE_DIR moves it).",
            path=path,
        ) from exc
    log.info("Exported the ONNX graph %s.", path.name)
    return path
