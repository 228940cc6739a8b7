"""Frame -> patient/study aggregation rules named in model cards.

The paper reports subject-level results from the mean of frame probabilities; the other
rules are offered for comparison. Every rule returns a probability-like ``(C,)`` vector that
sums to 1, so the top class and per-class scores are read the same way for all rules.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.errors import InferenceError

#: rule name -> one-line description (shown by the CLI)
AGGREGATION_RULES: dict[str, str] = {
    "mean": "mean of frame probabilities (default, the paper's subject level)",
    "max": "per-class maximum over frames, renormalised to sum to 1",
    "vote": "fraction of frames whose top class is each class (majority vote)",
    "logit_mean": "softmax of the mean frame log-probabilities (geometric mean)",
}
DEFAULT_RULE = "mean"
#: what a patient with no frame inside the model's domain gets instead of a class
NO_ASSESSABLE = "no assessable frames"


def aggregate(probs: NDArray, rule: str = DEFAULT_RULE, dtype: type = np.float32) -> NDArray:
    """Aggregate ``(N, C)`` frame probabilities into one ``(C,)`` vector by ``rule``,
    computed in float64 and returned as ``dtype``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise InferenceError(
            f"Aggregation needs (frames, classes) probabilities with at least one frame; "
            f"got shape {p.shape}."
        )
    if rule == "mean":
        out = p.mean(axis=0)
    elif rule == "max":
        m = p.max(axis=0)
        out = m / m.sum() if m.sum() > 0 else np.full(p.shape[1], 1.0 / p.shape[1])
    elif rule == "vote":
        out = np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / p.shape[0]
    elif rule == "logit_mean":
        z = np.log(np.clip(p, 1e-12, None)).mean(axis=0)
        e = np.exp(z - z.max())
        out = e / e.sum()
    else:
        raise InferenceError(
            f"Unknown aggregation rule {rule!r}.",
            fix=f"Use one of: {', '.join(AGGREGATION_RULES)}.",
        )
    return out.astype(dtype)


def aggregate_assessable(
    probs: NDArray, assessable: NDArray, rule: str = DEFAULT_RULE, dtype: type = np.float32
) -> NDArray | None:
    """:func:`aggregate` over the frames the domain guard lets through (``assessable`` is a
    boolean ``(N,)``); ``None`` when there is none: the patient has no assessable frames."""
    mask = np.asarray(assessable, dtype=bool)
    p = np.asarray(probs)
    if mask.shape != (p.shape[0],):
        raise InferenceError(
            f"The in-domain mask has shape {mask.shape} for {p.shape[0]} frames.",
        )
    if not mask.any():
        return None
    return aggregate(p[mask], rule, dtype)
