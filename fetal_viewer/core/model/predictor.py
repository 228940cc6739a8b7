"""Batched inference: per-class probabilities per frame, all-class Grad-CAM, aggregation.

The :class:`Predictor` builds the fastest honest CPU path for the loaded weights once, at
start: an ONNX Runtime session exported from the very same float32 weights (about 1.4x
faster than torch eager on CPU at batch 1 here), with torch eager (channels_last,
inference mode) as the fallback when ONNX Runtime or the exporter is unavailable. Both
paths return the logits and the ``layer4`` activations from one pass, so all-class
Grad-CAM (:mod:`fetal_viewer.core.cam.gradcam`) costs a matrix product on top of the
prediction. Results agree with the torch model within 1e-4 (tested).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.cam.gradcam import cams_from_features, frame_heatmap, stitched_cams
from fetal_viewer.core.model.aggregation import AGGREGATION_RULES, DEFAULT_RULE, aggregate
from fetal_viewer.core.model.checkpoint import LoadedModel
from fetal_viewer.core.model.preprocess import Geometry, preprocess
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.warncatch import collect_warnings
from fetal_viewer.errors import InferenceError

if TYPE_CHECKING:
    import torch

__all__ = [
    "AGGREGATION_RULES",
    "BACKENDS",
    "DEFAULT_RULE",
    "Predictions",
    "Predictor",
    "aggregate",
    "softmax",
]

log = logging.getLogger(__name__)

#: "auto" picks onnxruntime when it can be built, else torch
BACKENDS: tuple[str, ...] = ("auto", "onnxruntime", "torch")


def softmax(logits: NDArray) -> NDArray[np.float32]:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class Predictions:
    """Output of :meth:`Predictor.predict` for N frames.

    ``probs`` is ``(N, C)``; ``cams`` is ``(N, C, h, w)`` at the network's feature
    resolution (or on the finer stitched grid), normalised like pytorch-grad-cam (or
    ``None``); ``geometries[i]`` maps frame i's input-space maps back onto the frame.
    """

    probs: NDArray[np.float32]
    cams: NDArray[np.float32] | None
    geometries: list[Geometry]
    classes: tuple[str, ...]

    def top(self, i: int) -> tuple[str, float]:
        j = int(np.argmax(self.probs[i]))
        return self.classes[j], float(self.probs[i, j])

    def heatmap(self, i: int, class_index: int) -> NDArray[np.float32]:
        """Frame i's map for one class, ``[0, 1]`` in the original frame's geometry."""
        if self.cams is None:
            raise InferenceError("These predictions were made without heatmaps.")
        return frame_heatmap(self.cams[i, class_index], self.geometries[i])


class _Features:
    """Torch forward that returns (logits, layer4 activations) of a torchvision ResNet."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.m: Any = model

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        m = self.m
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        a = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return m.fc(torch.flatten(m.avgpool(a), 1)), a


def _module(model: torch.nn.Module) -> torch.nn.Module:
    import torch

    features = _Features(model)

    class Both(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return features(x)

    return Both().eval()


class Predictor:
    """Runs a :class:`LoadedModel` on frames; see the module docstring for the backends."""

    def __init__(
        self, loaded: LoadedModel, backend: str = "auto", num_threads: int | None = None
    ) -> None:
        import torch

        if backend not in BACKENDS:
            raise InferenceError(
                f"Unknown backend {backend!r}.", fix=f"Use one of: {', '.join(BACKENDS)}."
            )
        self.loaded = loaded
        self.card = loaded.card
        self.classes = tuple(loaded.card.classes)
        self.spec = loaded.card.spec
        self.model = loaded.model.eval()
        self.num_threads = num_threads or torch.get_num_threads()
        fc = getattr(self.model, "fc", None)
        if not isinstance(fc, torch.nn.Linear):
            raise InferenceError("The model has no linear fc layer; it is not a ResNet.")
        self.fc_weight = fc.weight.detach().cpu().numpy().astype(np.float32)
        self._torch_fn = _Features(self.model)
        self._session: Any = None
        self.backend = "torch"
        self.backend_note = ""
        if backend in ("auto", "onnxruntime"):
            try:
                self._session = self._build_onnx()
                self.backend = "onnxruntime"
            except Exception as exc:
                if backend == "onnxruntime":
                    raise InferenceError(
                        "Could not build the ONNX Runtime session.",
                        why=str(exc),
                        fix="Install onnxruntime, or use backend='torch'.",
                    ) from exc
                self.backend_note = f"onnxruntime unavailable ({exc}); using torch"
                log.info(self.backend_note)
        if self.backend == "torch":
            self.model.to(memory_format=torch.channels_last)

    def _build_onnx(self) -> Any:
        import onnxruntime as ort
        import torch

        size = self.spec.input_size
        buf = io.BytesIO()
        dummy = torch.zeros(1, 3, size, size)
        with collect_warnings():  # the TorchScript-based exporter is deprecated
            torch.onnx.export(
                _module(self.model),
                (dummy,),
                buf,  # type: ignore[arg-type]  # the legacy exporter takes a file object
                dynamo=False,
                input_names=["x"],
                output_names=["logits", "features"],
                dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}, "features": {0: "n"}},
                opset_version=17,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])

    def run_arrays(
        self, x: NDArray[np.float32], with_cam: bool = False, stitch: bool = False
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Probabilities ``(N, C)`` and optionally all-class CAMs ``(N, C, h, w)`` for a
        preprocessed batch ``(N, 3, S, S)``; with ``stitch``, the CAMs come from
        :data:`~fetal_viewer.core.cam.gradcam.STITCH` squared shifted passes on a grid that
        many times finer (:func:`~fetal_viewer.core.cam.gradcam.stitched_cams`)."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        logits, feats = self._forward(batch, with_cam)
        probs = softmax(logits)
        if feats is None:
            return probs, None
        if not stitch:
            return probs, cams_from_features(feats, self.fc_weight)
        black = -np.asarray(self.spec.mean, np.float32) / np.asarray(self.spec.std, np.float32)
        cams = stitched_cams(self._layer4, batch, self.fc_weight, black, unshifted=feats)
        return probs, cams

    def _layer4(self, batch: NDArray[np.float32]) -> NDArray:
        feats = self._forward(batch, True)[1]
        assert feats is not None
        return feats

    def _forward(
        self, batch: NDArray[np.float32], with_features: bool
    ) -> tuple[NDArray, NDArray | None]:
        """Logits and (optionally) ``layer4`` activations of one batch on the backend."""
        import torch

        try:
            if self._session is not None:
                names = ["logits", "features"] if with_features else ["logits"]
                outs = self._session.run(names, {"x": batch})
                return outs[0], (outs[1] if with_features else None)
            with torch.inference_mode():
                t = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
                lt, ft = self._torch_fn(t)
                return lt.numpy(), (ft.contiguous().numpy() if with_features else None)
        except Exception as exc:
            raise InferenceError(
                "The model failed on a batch of frames.", why=f"{type(exc).__name__}: {exc}"
            ) from exc

    def predict(
        self,
        frames: Sequence[NDArray],
        batch_size: int = 16,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
        with_cam: bool = False,
        stitch: bool = False,
    ) -> Predictions:
        """Preprocess and classify ``frames`` (uint8 RGB or grey) in batches; ``with_cam``
        adds every class's Grad-CAM, on the finer stitched grid with ``stitch``."""
        n = len(frames)
        if batch_size < 1:
            raise InferenceError(f"batch_size must be at least 1, got {batch_size}.")
        probs: list[NDArray[np.float32]] = []
        cams: list[NDArray[np.float32]] = []
        geometries: list[Geometry] = []
        progress(0, n, "frames")
        for start in range(0, n, batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            pre = [
                preprocess(frames[i], self.spec) for i in range(start, min(n, start + batch_size))
            ]
            batch = np.stack([p.array for p in pre])
            p, c = self.run_arrays(batch, with_cam=with_cam, stitch=stitch)
            probs.append(p)
            if c is not None:
                cams.append(c)
            geometries.extend(q.geometry for q in pre)
            progress(len(geometries), n, "frames")
        n_classes = len(self.classes)
        return Predictions(
            probs=np.concatenate(probs) if probs else np.zeros((0, n_classes), np.float32),
            cams=(np.concatenate(cams) if cams else None) if with_cam else None,
            geometries=geometries,
            classes=self.classes,
        )

    def aggregate(self, probs: NDArray, rule: str | None = None) -> NDArray[np.float32]:
        """Patient/study-level probabilities by ``rule`` (the card's rule by default)."""
        return aggregate(probs, rule or self.card.aggregation)
