"""What an AI panel shows, as data: the viewer's panel and the reading window's aided-step
panel both render an :class:`AIView` and nothing else.

States (:class:`AIStatus`): ``NONE`` (nothing to show: no model, no frame, or a blinded
read), ``PENDING`` (asked, no answer yet), ``SHOWN`` (probabilities, and a heatmap when
there is one), ``FAILED`` (the answer could not be had; the panel offers to ask again),
``WITHHELD`` (the model's domain guard says the frame is outside what it was trained on:
no probabilities, no heatmap; the panel offers ``action`` "Show anyway").

A panel shows ``message`` for every state but ``SHOWN`` and offers the ``action`` when there
is one; ``domain`` is the guard's verdict in words in every state that has an answer. The
heatmap layer follows :attr:`AIView.shown`, so a withheld output draws no heat either.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray


class AIStatus(Enum):
    NONE = "none"
    PENDING = "pending"
    SHOWN = "shown"
    FAILED = "failed"
    WITHHELD = "withheld"


@dataclass(frozen=True)
class AIView:
    """One rendering of an AI panel.

    ``classes`` and ``probs`` (set only when shown) fill the bars; ``heat_class`` is the
    class whose map is drawn (``None``: no map); ``notes`` are sentences under the output
    (how coarse the map is, that a map is empty); ``message`` replaces the output in every
    other state; ``action`` names the button that state offers (e.g. "Show the AI again").
    """

    status: AIStatus
    classes: tuple[str, ...] = ()
    probs: NDArray[np.float32] | None = None
    heat_class: int | None = None
    heat_empty: bool = False
    notes: tuple[str, ...] = ()
    message: str = ""
    action: str = ""
    caption: str = ""  # what the probabilities are of ("Frame 3", the model's identity)
    #: the domain guard's verdict in words ("" while there is no answer)
    domain: str = ""
    #: False when the guard flagged the frame (shown only on the reader's request)
    in_domain: bool | None = None

    @property
    def shown(self) -> bool:
        return self.status is AIStatus.SHOWN and self.probs is not None

    @property
    def top(self) -> int | None:
        """Index of the most probable class, when shown."""
        return None if self.probs is None else int(np.argmax(self.probs))

    @property
    def top_label(self) -> str | None:
        top = self.top
        return None if top is None else self.classes[top]


#: the action a withheld view offers
SHOW_ANYWAY = "Show anyway"


def domain_words(
    score: float | None,
    threshold: float | None,
    guard_note: str,
    cine: tuple[int, int] | None = None,
    cine_pending: bool = False,
    modality: str | None = None,
) -> str:
    """The guard's verdict on one frame as the AI surfaces print it; ``cine`` is ``(frames
    flagged, frames)`` when the frame's cine is withheld as a whole; ``cine_pending`` that the
    rest of its cine is still being scored, so the cine rule may yet withhold it;
    ``modality``, the series' modality in words when its header says it is not ultrasound
    (withheld whatever the guard says)."""
    from fetal_viewer.core.model.guard import (
        NO_GUARD_NOTE,
        WITHHELD_NOTE,
        cine_words,
        modality_words,
    )

    if modality is not None:
        return f"{modality_words(modality)}."
    if score is None or threshold is None:
        note = guard_note or NO_GUARD_NOTE
        return note[0].upper() + note[1:] + "."
    if score > threshold:
        return f"{WITHHELD_NOTE} (domain score {score:.2f} > threshold {threshold:.2f})."
    if cine is not None:
        return (
            f"{WITHHELD_NOTE} with its cine: {cine_words(cine)} (this frame's own domain "
            f"score {score:.2f} <= {threshold:.2f})."
        )
    inside = f"Inside what this model was trained on (domain score {score:.2f} <= {threshold:.2f})"
    if cine_pending:
        return f"{inside}; the rest of this cine is being checked."
    return f"{inside}."


def withheld_why(
    score: float | None,
    threshold: float | None,
    cine: tuple[int, int] | None,
    modality: str | None,
) -> str:
    """Why an output was withheld, for the log line of a reveal (no file name)."""
    if modality is not None:
        return f"not ultrasound: {modality}"
    why = f"domain score {score:.3f}, threshold {threshold:.3f}"
    return why if cine is None else f"{why}, withheld with its cine"
