"""One interface over the runtimes that can run the classifier on a CPU.

Every :class:`Backend` takes a preprocessed float32 batch ``(N, 3, S, S)`` and returns, from
one pass, the logits ``(N, C)`` and the ``layer4`` activations ``(N, 512, h, w)``: the
probabilities, all-class Grad-CAM and anything else computed from the pooled features cost
one forward pass whichever runtime runs it.

=================  ==========================================================================
``openvino``       OpenVINO on the ONNX graph, float32
``openvino-bf16``  the same with ``INFERENCE_PRECISION_HINT=bf16``; only where OpenVINO
                   lists ``BF16`` in the CPU's ``OPTIMIZATION_CAPABILITIES`` (AMX or
                   AVX-512 BF16)
``onnxruntime``    ONNX Runtime's CPU execution provider on the ONNX graph, float32
``torch``          torch eager, float32, channels-last, inference mode
``torch-bf16``     the same under bfloat16 autocast; only where oneDNN supports bfloat16
=================  ==========================================================================

Which one is fastest depends on the CPU; :mod:`fetal_viewer.core.runtime.auto` measures it.
Torch is optional: the ONNX backends need only the graph.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.errors import InferenceError

if TYPE_CHECKING:
    import torch

FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
#: names of the ONNX graph's input and outputs
INPUT, LOGITS, FEATURES = "x", "logits", "features"
#: every concrete backend
NAMES: tuple[str, ...] = ("openvino-bf16", "openvino", "onnxruntime", "torch-bf16", "torch")
AUTO = "auto"
#: what ``--backend`` accepts
CHOICES: tuple[str, ...] = (AUTO, *NAMES)
#: runtime -> (title, its distribution: shown with its version, what to install)
RUNTIMES: dict[str, tuple[str, str]] = {
    "openvino": ("OpenVINO", "openvino"),
    "onnxruntime": ("ONNX Runtime", "onnxruntime"),
    "torch": ("PyTorch", "torch"),
}

Outputs = tuple[NDArray[np.float32], NDArray[np.float32]]


def softmax(logits: NDArray, offsets: NDArray | None = None) -> NDArray[np.float32]:
    """Row-wise softmax, computed in float64; ``offsets`` (one per class: a model's
    operating point) are added to the logits first."""
    z = np.asarray(logits, dtype=np.float64)
    if offsets is not None:
        z = z + np.asarray(offsets, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def parse(name: str) -> tuple[str, str]:
    """``(runtime, precision)`` of a backend name; :class:`InferenceError` if unknown."""
    if name not in NAMES:
        raise InferenceError(f"Unknown backend {name!r}.", fix=f"Use one of: {', '.join(CHOICES)}.")
    runtime, _, bf16 = name.partition("-")
    return runtime, BFLOAT16 if bf16 else FLOAT32


def version(distribution: str) -> str:
    """Installed version of a distribution (or of its imported module, where a bundle
    carries no metadata), or ``""``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(distribution)
        return str(getattr(module, "__version__", "")) if module is not None else ""


def torch_available() -> bool:
    """Whether torch can be imported, decided without importing it (about 2 s)."""
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def one_blas_thread() -> None:
    """Run numpy's BLAS on one thread from now on, in this process.

    The predictor's own arithmetic (the guard's Mahalanobis distances, all-class heatmaps)
    is a few small matrix products. A multithreaded BLAS leaves its threads spinning after
    each, and on two cores that slowed the runtime's next pass by 20 % (``bench_inference``:
    prediction with the guard 1.22x prediction alone; 1.0x on one BLAS thread). Nothing in
    the app needs a parallel numpy BLAS: training runs in torch."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def default_threads() -> int:
    """Threads a backend uses unless told otherwise: torch's setting when torch is already
    imported (the viewer sets it), else every core."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return os.cpu_count() or 1


class Backend(ABC):
    """A runtime holding the model, ready to run batches."""

    runtime: str = ""
    precision: str = FLOAT32

    @property
    def name(self) -> str:
        return self.runtime + ("-bf16" if self.precision == BFLOAT16 else "")

    @property
    def description(self) -> str:
        """E.g. ``"OpenVINO 2026.4.1, bfloat16"``."""
        title, dist = RUNTIMES[self.runtime]
        return f"{title} {version(dist)}".strip() + f", {self.precision}"

    @abstractmethod
    def run(self, batch: NDArray[np.float32]) -> Outputs:
        """Logits ``(N, C)`` and ``layer4`` activations ``(N, K, h, w)``, float32."""


def _missing(runtime: str, exc: BaseException) -> InferenceError:
    title, dist = RUNTIMES[runtime]
    return InferenceError(
        f"{title} is not available.",
        why=f"{type(exc).__name__}: {exc}",
        fix=f"Install it (pip install {dist}) or choose another backend.",
    )


def openvino_bf16(core: Any) -> bool:
    """Whether OpenVINO runs bfloat16 natively on this CPU (AMX or AVX-512 BF16)."""
    try:
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:
        return False
    return "BF16" in {str(c).upper() for c in caps}


class OpenVinoBackend(Backend):
    """OpenVINO on the CPU, compiled from the ONNX graph; compiled blobs are kept in
    ``cache_dir`` (OpenVINO's ``CACHE_DIR``), so a later start skips compiling."""

    runtime = "openvino"

    def __init__(
        self, graph: Path, precision: str, threads: int, cache_dir: Path | None = None
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise _missing(self.runtime, exc) from exc
        core = ov.Core()
        if precision == BFLOAT16 and not openvino_bf16(core):
            raise InferenceError(
                "This CPU has no native bfloat16 for OpenVINO.",
                why="OpenVINO's OPTIMIZATION_CAPABILITIES for the CPU do not list BF16 "
                "(it needs AMX or AVX-512 BF16).",
                fix="Use backend 'openvino' (float32).",
            )
        self.precision = precision
        if cache_dir is not None:
            with contextlib.suppress(OSError):
                cache_dir.mkdir(parents=True, exist_ok=True)
                core.set_property({"CACHE_DIR": str(cache_dir)})
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == BFLOAT16 else "f32",
            "INFERENCE_NUM_THREADS": int(threads),
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            compiled = core.compile_model(str(graph), "CPU", config)
        except Exception as exc:
            raise InferenceError(
                "OpenVINO could not compile the model.", why=str(exc), path=graph
            ) from exc
        self._request = compiled.create_infer_request()

    def run(self, batch: NDArray[np.float32]) -> Outputs:
        request = self._request
        request.infer({INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        # the request reuses its output buffers on the next call: copy them out
        return (
            np.array(request.get_tensor(LOGITS).data, dtype=np.float32),
            np.array(request.get_tensor(FEATURES).data, dtype=np.float32),
        )


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime's CPU execution provider on the ONNX graph."""

    runtime = "onnxruntime"

    def __init__(self, graph: Path, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise _missing(self.runtime, exc) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # idle threads sleep instead of spinning: the GUI thread and whatever runs next
        # (another backend being timed, another program) get the cores back at once
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(graph), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise InferenceError(
                "ONNX Runtime could not load the model.", why=str(exc), path=graph
            ) from exc

    def run(self, batch: NDArray[np.float32]) -> Outputs:
        logits, feats = self._session.run(
            [LOGITS, FEATURES], {INPUT: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return np.asarray(logits, np.float32), np.asarray(feats, np.float32)


def torch_bf16() -> bool:
    """Whether torch's oneDNN has native bfloat16 on this CPU."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def resnet_forward(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, ``layer4`` activations) of a torchvision ResNet in one pass."""
    import torch

    m = model
    a = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    return m.fc(torch.flatten(m.avgpool(a), 1)), a


class TorchBackend(Backend):
    """Torch eager on the CPU: channels-last, inference mode, optionally bfloat16 autocast.
    Sets torch's (process-wide) thread count to ``threads`` when given."""

    runtime = "torch"

    def __init__(self, model: torch.nn.Module, precision: str, threads: int | None = None) -> None:
        try:
            import torch
        except ImportError as exc:
            raise _missing(self.runtime, exc) from exc
        if precision == BFLOAT16 and not torch_bf16():
            raise InferenceError(
                "This CPU has no native bfloat16 for torch.",
                why="oneDNN reports no bfloat16 support (it needs AVX-512 BF16 or AMX).",
                fix="Use backend 'torch' (float32).",
            )
        self.precision = precision
        if threads:
            torch.set_num_threads(int(threads))
        self._model = model.eval().to(memory_format=torch.channels_last)

    def run(self, batch: NDArray[np.float32]) -> Outputs:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            x = x.contiguous(memory_format=torch.channels_last)
            autocast = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if self.precision == BFLOAT16
                else contextlib.nullcontext()
            )
            with autocast:
                logits, feats = resnet_forward(self._model, x)
            return (
                logits.float().numpy(),
                feats.float().contiguous(memory_format=torch.contiguous_format).numpy(),
            )


def build(
    name: str,
    graph: Callable[[], Path],
    torch_model: Callable[[], Any] | None,
    threads: int,
    openvino_cache: Path | None = None,
) -> Backend:
    """The backend ``name`` (one of :data:`NAMES`). ``graph`` returns the ONNX graph (called
    only by the ONNX backends); ``torch_model`` the torch module, or is ``None`` without
    torch. Raises :class:`InferenceError` saying why a backend is unavailable here."""
    runtime, precision = parse(name)
    if runtime == "torch":
        if torch_model is None or not torch_available():
            raise _missing("torch", ImportError("torch is not installed"))
        return TorchBackend(torch_model(), precision, threads)
    if importlib.util.find_spec(RUNTIMES[runtime][1]) is None:
        raise _missing(runtime, ImportError(f"no module named {runtime}"))
    if runtime == "openvino":
        return OpenVinoBackend(graph(), precision, threads, openvino_cache)
    return OnnxRuntimeBackend(graph(), threads)
