"""What the model says about a study: every frame's class probabilities and domain
verdict, the aggregate over the assessable frames, and the key frames with their heatmaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.errors import StudyLoadError

if TYPE_CHECKING:
    from fetal_viewer.core.io.study import Study


@dataclass(frozen=True)
class FrameResult:
    """One analysed frame: its source instance, 1-based frame number, per-class
    probabilities, and the domain guard's verdict and score when the model has a guard."""

    sop_instance_uid: str
    frame_number: int
    probs: Sequence[float]
    in_domain: bool | None = None
    domain_score: float | None = None


@dataclass(frozen=True)
class KeyFrame:
    """A frame shown as a secondary capture: the frame, and the heatmap of ``class_name``
    in its geometry (``(rows, cols)`` in [0, 1])."""

    sop_instance_uid: str
    frame_number: int
    class_name: str
    probability: float
    image: NDArray[np.uint8]
    heatmap: NDArray[np.float32]


@dataclass(frozen=True)
class StudyAnalysis:
    """What the model said about one study."""

    model_name: str
    model_version: str
    weights_sha256: str
    classes: tuple[str, ...]
    aggregation: str
    #: aggregated over the assessable frames; ``None`` when the domain guard let none through
    study_probs: Sequence[float] | None
    frames: tuple[FrameResult, ...]
    key_frames: tuple[KeyFrame, ...] = ()
    domain_threshold: float | None = None
    heatmap_method: str = "gradcam"
    #: the card's operating point (class -> logit offset), empty for none
    logit_offsets: tuple[tuple[str, float], ...] = ()
    #: the card's second look ("" none; "head-closeup")
    second_look: str = ""

    @property
    def top(self) -> tuple[str, float] | None:
        """The study's most probable class, or ``None`` (no assessable frames)."""
        if self.study_probs is None:
            return None
        j = int(np.argmax(np.asarray(self.study_probs)))
        return self.classes[j], float(self.study_probs[j])

    @property
    def n_assessable(self) -> int:
        return sum(1 for f in self.frames if f.in_domain is not False)


def analyse_study(
    study: Study,
    predictor: Any,
    *,
    max_key_frames: int = 4,
    batch_size: int = 16,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> StudyAnalysis:
    """Run ``predictor`` (:class:`fetal_viewer.core.model.predictor.Predictor`) over every
    frame of a DICOM study, aggregate the assessable frames by the model card's rule, and
    pick key frames: in each series the assessable frame most probable for the study's
    top class, best first.

    With a domain guard in the model, each frame carries its score and verdict; frames
    outside the domain are left out of the aggregate and of the key frames, and a study
    with none inside has no class (``study_probs`` is ``None``)."""
    from fetal_viewer.core.model.aggregation import aggregate_assessable

    card = predictor.card
    series_list = [s for s in study.series if len(s) > 0]
    for s in series_list:
        if not s.instance_uid or not s.transfer_syntax:
            raise StudyLoadError(
                "AI results as DICOM need a DICOM study.",
                why=f"series {s.description or s.uid} is not from a DICOM file",
                fix="Open the study's DICOM files (not exported images).",
                path=s.source,
            )
    n_total = sum(len(s) for s in series_list)
    done = 0
    frames: list[FrameResult] = []
    per_series: list[tuple[Any, Any]] = []
    all_probs = []
    all_ok = []
    threshold: float | None = None
    for series in series_list:
        offset = done

        def report(d: int, t: int, message: str = "", _o: int = offset) -> None:
            progress(_o + d, n_total, message)

        seq = series.frames()
        pred = predictor.predict(
            seq,
            batch_size=batch_size,
            progress=report,
            cancel=cancel,
            with_cam=True,
            whole_series=True,
            modality=series.header_modality,
        )
        done += len(seq)
        scores = pred.domain_scores
        inside = pred.in_domain
        threshold = pred.domain_threshold
        for i in range(len(seq)):
            frames.append(
                FrameResult(
                    sop_instance_uid=series.instance_uid,
                    frame_number=i + 1,
                    probs=tuple(round(float(p), 6) for p in pred.probs[i]),
                    in_domain=None if inside is None else bool(inside[i]),
                    domain_score=None if scores is None else round(float(scores[i]), 6),
                )
            )
        all_probs.append(pred.probs)
        all_ok.append(pred.assessable())
        per_series.append((series, pred))
    if not frames:
        raise StudyLoadError("The study has no frames to analyse.")
    classes = tuple(card.classes)
    study_probs = aggregate_assessable(
        np.concatenate(all_probs), np.concatenate(all_ok), card.aggregation
    )
    keys: tuple[KeyFrame, ...] = ()
    if study_probs is not None:
        top = int(np.argmax(study_probs))
        candidates = []
        for series, pred in per_series:
            p = np.where(pred.assessable(), pred.probs[:, top], -1.0)
            i = int(np.argmax(p))
            if p[i] >= 0:
                candidates.append((float(p[i]), series, pred, i))
        candidates.sort(key=lambda c: -c[0])
        keys = tuple(
            KeyFrame(
                sop_instance_uid=series.instance_uid,
                frame_number=i + 1,
                class_name=classes[top],
                probability=p,
                image=np.asarray(series.frame(i), dtype=np.uint8),
                heatmap=pred.heatmap(i, top),
            )
            for p, series, pred, i in candidates[:max_key_frames]
        )
    return StudyAnalysis(
        model_name=card.name,
        model_version=card.version,
        weights_sha256=card.weights_sha256,
        classes=classes,
        aggregation=card.aggregation,
        study_probs=None if study_probs is None else tuple(round(float(p), 6) for p in study_probs),
        frames=tuple(frames),
        key_frames=keys,
        domain_threshold=threshold,
        logit_offsets=tuple(sorted(card.logit_offsets.items())),
        second_look=card.second_look,
    )
