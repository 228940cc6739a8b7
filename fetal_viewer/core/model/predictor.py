"""Batched inference: per-class probabilities per frame, all-class Grad-CAM, aggregation.

The :class:`Predictor` runs a loaded checkpoint on one backend of
:mod:`fetal_viewer.core.runtime`: OpenVINO, ONNX Runtime or torch, in float32 or bfloat16.
``auto`` (the default) is the fastest of them measured on this machine among those whose
outputs agree with the float32 reference, measured once and then cached
(:mod:`fetal_viewer.core.runtime.auto`). Every backend returns the logits and the ``layer4``
activations from one pass, so all-class Grad-CAM (:mod:`fetal_viewer.core.cam.gradcam`)
costs a matrix product on top of the prediction, and the stitched map one pass over the
shifted copies of the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.cam.gradcam import (
    FAST_METHOD,
    STITCH,
    STITCH_METHOD,
    cams_from_features,
    frame_heatmap,
    shifted_batch,
    stitch_features,
)
from fetal_viewer.core.measure.head import HeadSearch
from fetal_viewer.core.model.aggregation import AGGREGATION_RULES, DEFAULT_RULE, aggregate
from fetal_viewer.core.model.card import HEAD_CLOSEUP
from fetal_viewer.core.model.checkpoint import LoadedModel
from fetal_viewer.core.model.closeup import head_closeup, start_head_searches
from fetal_viewer.core.model.guard import cine_flagged, foreign_modality, pool
from fetal_viewer.core.model.preprocess import Geometry, preprocess
from fetal_viewer.core.model.probe import probe_batch
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.runtime.auto import ModelSource, select
from fetal_viewer.core.runtime.backends import (
    CHOICES,
    Outputs,
    one_blas_thread,
    softmax,
    torch_available,
)
from fetal_viewer.errors import InferenceError

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

#: what ``backend=`` accepts: "auto" measures (see the module notes), the rest are forced
BACKENDS: tuple[str, ...] = CHOICES


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
    #: ``(N,)`` domain-guard scores (higher is further from the training frames), or None
    #: when the model has no guard; a frame is in domain when its score <= the threshold
    domain_scores: NDArray[np.float32] | None = None
    domain_threshold: float | None = None
    #: ``(N, D)`` pooled ``layer4`` features, only when asked for (guard fitting)
    features: NDArray[np.float32] | None = None
    #: the frames are every frame of one file, so the guard's cine rule applies to them
    whole_series: bool = False
    #: the head search of each frame, made for the card's second look
    #: (:mod:`fetal_viewer.core.model.closeup`), or None when the model has none
    heads: list[HeadSearch] | None = None
    #: the DICOM Modality of the frames' series ("" for plain images or when unknown)
    modality: str = ""

    @property
    def foreign_modality(self) -> str | None:
        """The series' modality in words when its header says it is not ultrasound, so
        every frame is withheld (:func:`fetal_viewer.core.model.guard.foreign_modality`)."""
        return foreign_modality(self.modality)

    @property
    def closeups(self) -> NDArray[np.bool_] | None:
        """``(N,)`` which frames were also read as a close-up of their head, or None when
        the model has no second look."""
        if self.heads is None:
            return None
        return np.array([h.fit is not None for h in self.heads], dtype=bool)

    @property
    def cine_flagged(self) -> tuple[int, int] | None:
        """``(frames flagged, frames)`` when the cine rule withholds the whole series (see
        :func:`fetal_viewer.core.model.guard.cine_flagged`), else ``None``."""
        if not self.whole_series or self.domain_scores is None or self.domain_threshold is None:
            return None
        return cine_flagged(self.domain_scores <= self.domain_threshold)

    @property
    def in_domain(self) -> NDArray[np.bool_] | None:
        """Which frames may be shown: none of a series whose header says it is not
        ultrasound; else, with a guard, those whose own score is at most the threshold and
        whose cine is not withheld as a whole; ``None`` when the model has no guard."""
        if self.foreign_modality is not None:
            return np.zeros(len(self.probs), dtype=bool)
        if self.domain_scores is None or self.domain_threshold is None:
            return None
        inside = self.domain_scores <= self.domain_threshold
        return np.zeros_like(inside) if self.cine_flagged is not None else inside

    def assessable(self) -> NDArray[np.bool_]:
        """Frames whose output may be shown and aggregated: all of them without a guard."""
        mask = self.in_domain
        return np.ones(len(self.probs), dtype=bool) if mask is None else mask

    def top(self, i: int) -> tuple[str, float]:
        j = int(np.argmax(self.probs[i]))
        return self.classes[j], float(self.probs[i, j])

    def heatmap(self, i: int, class_index: int) -> NDArray[np.float32]:
        """Frame i's map for one class, ``[0, 1]`` in the original frame's geometry."""
        if self.cams is None:
            raise InferenceError("These predictions were made without heatmaps.")
        return frame_heatmap(self.cams[i, class_index], self.geometries[i])


_HOW = {
    "measured": "measured now as the fastest that agrees with the float32 reference",
    "cached": "measured on this machine as the fastest that agrees with the float32 reference",
    "forced": "chosen by hand",
}


class Predictor:
    """Runs a :class:`LoadedModel` on frames; see the module docstring for the backends.

    ``backend`` is ``"auto"`` or one of :data:`BACKENDS`; ``num_threads`` the threads of the
    ONNX backends (default: torch's setting when torch is imported, else every core);
    ``cache_dir`` where ``auto`` keeps its choice and the exported graph (default: the user
    cache's ``runtime`` folder).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        backend: str = "auto",
        num_threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise InferenceError(
                f"Unknown backend {backend!r}.", fix=f"Use one of: {', '.join(BACKENDS)}."
            )
        self.loaded = loaded
        self.card = loaded.card
        self.classes = tuple(loaded.card.classes)
        self.spec = loaded.card.spec
        self.fc_weight = loaded.fc_weight
        self.guard = loaded.guard
        self.guard_note = loaded.guard_note
        #: the card's operating point, added to the logits (None: none, or fitting one)
        self.logit_offsets = loaded.card.offset_vector()
        #: read each frame also as a close-up of its head (the card's second look; off while
        #: fitting the guard or the operating point, which are fitted on whole frames)
        self.second_look = loaded.card.second_look == HEAD_CLOSEUP
        #: run the second look's head finder in worker processes (off: in this one)
        self.head_workers = True
        spec = self.spec
        source = ModelSource(
            weights_sha256=loaded.card.weights_sha256,
            input_size=spec.input_size,
            fc_weight=self.fc_weight,
            probe=lambda: probe_batch(spec),
            stitch_batch=STITCH * STITCH,
            graph=loaded.onnx_path,
            torch_model=(lambda: loaded.model) if torch_available() else None,
            logit_offsets=self.logit_offsets,
        )
        one_blas_thread()
        self.runtime, self.choice = select(source, backend, num_threads, cache_dir)
        #: the runtime ("openvino", "onnxruntime" or "torch") and its precision
        self.backend = self.runtime.runtime
        self.precision = self.runtime.precision
        self.backend_note = f"{self.runtime.name} ({self.choice.how})"
        log.info("Inference backend: %s", self.runtime_description)

    @property
    def model(self) -> Any:
        """The torch module (built on first use where the checkpoint loads it lazily)."""
        return self.loaded.model

    @property
    def runtime_description(self) -> str:
        """One line for people: runtime, version, precision and how it was chosen."""
        text = f"{self.runtime.description}; {_HOW.get(self.choice.how, self.choice.how)}"
        chosen = self.choice.trials.get(self.choice.backend)
        if chosen is not None and "1" in chosen.ms:
            text += f" ({chosen.ms['1']:.1f} ms a frame)"
        return text

    @property
    def default_cam_method(self) -> str:
        """The stitched heatmap where it was measured to cost no more on this machine than
        the plain one did on the ONNX Runtime predictor, else the plain one."""
        return STITCH_METHOD if self.choice.stitch_is_cheaper(STITCH * STITCH) else FAST_METHOD

    def run_arrays(
        self, x: NDArray[np.float32], with_cam: bool = False, stitch: bool = False
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Probabilities ``(N, C)`` and optionally all-class CAMs ``(N, C, h, w)`` for a
        preprocessed batch ``(N, 3, S, S)``; with ``stitch``, the CAMs come from
        :data:`~fetal_viewer.core.cam.gradcam.STITCH` squared shifted copies run in the same
        pass, on a grid that many times finer
        (:func:`~fetal_viewer.core.cam.gradcam.stitch_features`)."""
        probs, cams, _ = self.run_batch(x, with_cam=with_cam, stitch=stitch)
        return probs, cams

    def run_batch(
        self,
        x: NDArray[np.float32],
        with_cam: bool = False,
        stitch: bool = False,
        with_features: bool = False,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None, NDArray[np.float32] | None]:
        """:meth:`run_arrays` plus the pooled ``layer4`` features ``(N, D)`` of the same
        pass, computed when the model has a domain guard or ``with_features`` asks."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        n = len(batch)
        if with_cam and stitch:
            black = -np.asarray(self.spec.mean, np.float32) / np.asarray(self.spec.std, np.float32)
            logits, feats = self._forward(shifted_batch(batch, black))
            cams: NDArray[np.float32] | None = stitch_features(feats, self.fc_weight)
            logits, feats = logits[:n], feats[:n]  # the unshifted copy comes first
        else:
            logits, feats = self._forward(batch)
            cams = cams_from_features(feats, self.fc_weight) if with_cam else None
        pooled = pool(feats) if with_features or self.guard is not None else None
        return softmax(logits, self.logit_offsets), cams, pooled

    def _forward(self, batch: NDArray[np.float32]) -> Outputs:
        """Logits and ``layer4`` activations of one batch on the backend."""
        try:
            return self.runtime.run(batch)
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
        with_features: bool = False,
        whole_series: bool = False,
        modality: str = "",
    ) -> Predictions:
        """Preprocess and classify ``frames`` (uint8 RGB or grey) in batches; ``with_cam``
        adds every class's Grad-CAM, on the finer stitched grid with ``stitch``; with a
        domain guard every frame gets its score; ``with_features`` keeps the pooled
        features; ``whole_series`` says the frames are every frame of one file, so the
        guard's cine rule applies; ``modality`` is their series' DICOM Modality (the header
        rule withholds every frame of a series that is not ultrasound)."""
        n = len(frames)
        if batch_size < 1:
            raise InferenceError(f"batch_size must be at least 1, got {batch_size}.")
        probs: list[NDArray[np.float32]] = []
        cams: list[NDArray[np.float32]] = []
        pooled: list[NDArray[np.float32]] = []
        heads: list[HeadSearch] = []
        geometries: list[Geometry] = []
        progress(0, n, "frames")
        for start in range(0, n, batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            chunk = [frames[i] for i in range(start, min(n, start + batch_size))]
            # the head finder works in other processes while the network reads the batch
            pending = start_head_searches(chunk, self.head_workers) if self.second_look else None
            pre = [preprocess(frame, self.spec) for frame in chunk]
            batch = np.stack([q.array for q in pre])
            p, c, f = self.run_batch(
                batch, with_cam=with_cam, stitch=stitch, with_features=with_features
            )
            if pending is not None:
                searches = pending()
                p = self._second_look(chunk, searches, p)
                heads.extend(searches)
            probs.append(p)
            if c is not None:
                cams.append(c)
            if f is not None:
                pooled.append(f)
            geometries.extend(q.geometry for q in pre)
            progress(len(geometries), n, "frames")
        n_classes = len(self.classes)
        feats = np.concatenate(pooled) if pooled else None
        scores = None
        if self.guard is not None:
            scores = self.guard.score(feats) if feats is not None else np.zeros(0, np.float32)
        return Predictions(
            probs=np.concatenate(probs) if probs else np.zeros((0, n_classes), np.float32),
            cams=(np.concatenate(cams) if cams else None) if with_cam else None,
            geometries=geometries,
            classes=self.classes,
            domain_scores=scores,
            domain_threshold=self.guard.threshold if self.guard is not None else None,
            features=feats if with_features else None,
            whole_series=whole_series,
            heads=heads if self.second_look else None,
            modality=modality,
        )

    def _second_look(
        self,
        frames: Sequence[NDArray],
        searches: Sequence[HeadSearch],
        probs: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        """The whole frames' ``probs`` averaged with those of the close-ups of the heads
        ``searches`` found in them. The domain guard reads the whole frames alone."""
        found = np.array([s.fit is not None for s in searches], dtype=bool)
        if not found.any():
            return probs
        views = [
            head_closeup(np.asarray(frame), s.fit)
            for frame, s in zip(frames, searches, strict=True)
            if s.fit is not None
        ]
        batch = np.stack([preprocess(v, self.spec).array for v in views])
        close, _, _ = self.run_batch(batch)
        probs = probs.copy()
        probs[found] = (probs[found] + close) / 2
        return probs

    def aggregate(self, probs: NDArray, rule: str | None = None) -> NDArray[np.float32]:
        """Patient/study-level probabilities by ``rule`` (the card's rule by default)."""
        return aggregate(probs, rule or self.card.aggregation)
