"""The operating point: how much evidence a model needs before it calls a frame an anomaly.

Trained with class-weighted cross-entropy, a model weighs the five classes as if each were
equally common; its probabilities answer "which class, if all were equally likely". An
unremarkable frame then gets about a fifth for normal and four fifths spread over the
anomalies, and a subtle real normal is called an anomaly. A reading room sees far more
normals than anomalies and needs a stated rate of false alarms.

The operating point adds an offset ``b`` to one class's logit (normal) before the softmax:
a prior shift. The probabilities stay a distribution and every surface (bars, top class,
patient aggregation, exports, ``evaluate``) follows it, because the predictor applies it
(:attr:`fetal_viewer.core.model.card.ModelCard.logit_offsets`). Heatmaps do not change: a
class's map does not depend on its bias.

``b`` is the smallest offset (never below 0) at which, in **every center** of the model's
inner-validation split (split exactly as ``train`` split it, as for the domain guard), at
least ``target_rate`` of the frames labelled normal are called normal. Frame by frame, a
frame of logits ``z`` is called normal at ``b`` when ``z_normal + b >= max_k z_k``, so each
center's offset is a quantile of ``max_k z_k - z_normal`` over its normal frames. What that
costs is recorded beside it: the share of each center's anomaly frames still called an
anomaly, before and after.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.card import ModelCard
from fetal_viewer.core.model.checkpoint import LoadedModel
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.training.guard_fit import RecordFrames, split_for
from fetal_viewer.core.training.manifest import Manifest
from fetal_viewer.errors import DataError

#: the share of validation normals called normal that ``operating-point fit`` aims at
DEFAULT_RATE = 0.95


@dataclass(frozen=True)
class OperatingPoint:
    """A fitted offset for ``cls`` and what it does on the validation frames, by center."""

    cls: str
    offset: float
    target_rate: float
    #: center -> figures: frames of ``cls`` and of the other classes, the share of ``cls``
    #: frames called ``cls`` and of the others called something else, before and after
    centers: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def stored_offset(self) -> float:
        """The offset as the card keeps it: 4 decimals, rounded up so the rate still holds."""
        return math.ceil(self.offset * 1e4 - 1e-9) / 1e4

    def record(self) -> dict[str, Any]:
        """What the card's ``metrics["operating_point"]`` keeps."""
        return {
            "class": self.cls,
            "logit_offset": self.stored_offset,
            "target_rate": self.target_rate,
            "rule": (
                f"the smallest offset >= 0 at which at least {self.target_rate:g} of the "
                f"inner-validation {self.cls} frames of every center are called {self.cls}"
            ),
            "validation_by_center": self.centers,
        }


def needed_offsets(logits: NDArray[np.floating], k: int) -> NDArray[np.float64]:
    """Per frame, the offset on class ``k``'s logit from which the frame is called ``k``."""
    z = np.asarray(logits, dtype=np.float64)
    others = np.delete(z, k, axis=1)
    return np.asarray(others.max(axis=1) - z[:, k], dtype=np.float64)


def offset_for_rate(needed: NDArray[np.float64], rate: float) -> float:
    """The smallest offset (>= 0) that calls at least ``rate`` of these frames class k."""
    if len(needed) == 0:
        return 0.0
    order = np.sort(needed)
    j = max(0, min(len(order) - 1, math.ceil(rate * len(order) - 1e-9) - 1))
    return max(0.0, float(order[j]))


def fit_offset(
    logits: NDArray[np.floating],
    labels: NDArray[np.int64],
    centers: list[str],
    k: int,
    rate: float,
    cls: str,
) -> OperatingPoint:
    """The operating point for class ``k`` from validation ``logits`` (raw, no offset)."""
    if not 0.0 < rate < 1.0:
        raise DataError(f"The target rate must lie strictly between 0 and 1, got {rate}.")
    needed = needed_offsets(logits, k)
    by_center: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(centers):
        by_center[c].append(i)
    own = labels == k
    if not own.any():
        raise DataError(
            f"The validation split has no {cls} frames to set the operating point on.",
            fix=f"Fit it on a manifest with {cls} patients.",
        )
    offset = max(
        offset_for_rate(needed[[i for i in rows if own[i]]], rate) for rows in by_center.values()
    )
    figures: dict[str, dict[str, float]] = {}
    for c, rows in sorted(by_center.items()):
        idx = np.array(rows)
        mine, other = idx[own[idx]], idx[~own[idx]]
        entry: dict[str, float] = {f"{cls}_frames": len(mine), "other_frames": len(other)}
        for name, b in (("before", 0.0), ("after", offset)):
            if len(mine):
                entry[f"{cls}_called_{cls}_{name}"] = round(float((needed[mine] <= b).mean()), 4)
            if len(other):
                entry[f"others_called_other_{name}"] = round(float((needed[other] > b).mean()), 4)
        figures[c] = entry
    return OperatingPoint(cls, offset, rate, figures)


def fit_operating_point(
    loaded: LoadedModel,
    manifest: Manifest,
    rate: float = DEFAULT_RATE,
    cls: str = "normal",
    split: tuple[float, int] | None = None,
    batch_size: int = 32,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> OperatingPoint:
    """Fit ``loaded``'s operating point on the inner-validation frames of ``manifest`` (its
    training manifest); see the module notes."""
    from fetal_viewer.core.model.predictor import Predictor

    classes = list(loaded.card.classes)
    if cls not in classes:
        raise DataError(
            f"The model has no class {cls!r}.", fix=f"Name one of: {', '.join(classes)}."
        )
    records = manifest.records
    _, val_idx = split_for(loaded, manifest, "the operating point", split)
    # float32 and no offset, whatever the card holds now: the fit starts from the raw logits
    predictor = Predictor(loaded, backend="onnxruntime")
    predictor.guard = None
    predictor.second_look = False
    predictor.logit_offsets = None
    val = [records[i] for i in val_idx]
    pred = predictor.predict(
        RecordFrames(val),
        batch_size=batch_size,
        progress=lambda done, total, message="": progress(done, total, "validation frames"),
        cancel=cancel,
    )
    logits = np.log(np.clip(pred.probs.astype(np.float64), 1e-300, None))
    labels = np.array([classes.index(r.label) for r in val], dtype=np.int64)
    return fit_offset(logits, labels, [r.center for r in val], classes.index(cls), rate, cls)


def store_operating_point(card_path: str | Path, point: OperatingPoint) -> None:
    """Write ``point`` into the card at ``card_path`` (the weights untouched)."""
    path = Path(card_path)
    card = ModelCard.from_json(path.read_text(encoding="utf-8"), path=path)
    card.logit_offsets = {point.cls: point.stored_offset} if point.offset > 0 else {}
    card.metrics["operating_point"] = point.record()
    path.write_text(card.to_json(), encoding="utf-8")
