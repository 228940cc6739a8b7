"""What the model worker hands the viewer: the loaded model's identity and one frame's
output. Plain frozen dataclasses, made off the GUI thread and read on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from fetal_viewer.core.io.study import Series
    from fetal_viewer.core.model.card import ModelCard
    from fetal_viewer.core.model.preprocess import Geometry

#: stable key of a series: (source path, series uid)
SeriesKey = tuple[str, str]


def series_key(series: Series) -> SeriesKey:
    """Stable key of a series: (source path, series uid)."""
    return (str(series.source), str(series.uid))


@dataclass(frozen=True)
class FrameResult:
    """Model output for one frame: class probabilities and the low-resolution class maps
    of every class, with the geometry that maps them back onto the frame."""

    probs: NDArray[np.float32]  # (C,)
    cams: NDArray[np.float32] | None  # (C, h, w)
    geometry: Geometry
    #: the domain guard's score and threshold (None: the model has no guard)
    domain_score: float | None = None
    domain_threshold: float | None = None
    #: ``(frames flagged, frames)`` when the frame's cine is withheld as a whole (the
    #: guard's cine rule, known once every frame of the file is analysed), else None
    cine_flagged: tuple[int, int] | None = None
    #: True while the rest of the frame's cine is being scored for that rule
    cine_pending: bool = False
    #: the series' modality in words when its header says it is not ultrasound
    foreign_modality: str | None = None

    @property
    def in_domain(self) -> bool | None:
        """Whether this frame's output may be shown: not when its series is not ultrasound;
        else the guard's verdict (None: no guard)."""
        if self.foreign_modality is not None:
            return False
        if self.domain_score is None or self.domain_threshold is None:
            return None
        return self.domain_score <= self.domain_threshold and self.cine_flagged is None

    def heatmap(self, class_index: int) -> NDArray[np.float32] | None:
        """(H, W) float32 in [0, 1] over the frame for one class, or None."""
        if self.cams is None:
            return None
        from fetal_viewer.core.cam.gradcam import frame_heatmap

        return frame_heatmap(self.cams[class_index], self.geometry)

    def is_empty(self, class_index: int) -> bool:
        """True when this class's map has no heat anywhere (see ``gradcam.is_empty``)."""
        from fetal_viewer.core.cam.gradcam import is_empty

        return self.cams is not None and is_empty(self.cams[class_index])


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model as the viewer names it (from its card)."""

    name: str
    version: str
    sha: str
    classes: tuple[str, ...]
    intended_use: str
    card_path: str
    aggregation: str
    input_size: int
    #: the inference runtime, its precision and how it was chosen, in words
    runtime: str = ""
    #: "" when the model has a domain guard, else what the AI surfaces say instead
    guard_note: str = ""
    #: the card's operating point, in words
    operating_point: str = ""

    @classmethod
    def from_card(
        cls,
        card: ModelCard,
        card_path: str | Path,
        sha: str,
        runtime: str = "",
        guard_note: str = "",
    ) -> ModelInfo:
        return cls(
            name=card.name,
            version=card.version,
            sha=sha,
            classes=tuple(card.classes),
            intended_use=card.intended_use,
            card_path=str(card_path),
            aggregation=card.aggregation,
            input_size=card.input_size,
            runtime=runtime,
            guard_note=guard_note,
            operating_point=card.reading_words(),
        )
