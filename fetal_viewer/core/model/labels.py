"""Class names of the fetal CNS anomaly classifier.

The order is the order of the network's outputs for the default five-class model. A model
card may carry another list (for example :data:`ANOMALY_CLASSES` for an anomaly-only model);
the card's list is always the one that names a checkpoint's outputs.
"""

from __future__ import annotations

#: the paper's five classes, in output order
CLASSES: tuple[str, ...] = (
    "normal",
    "anencephaly",
    "encephalocele",
    "holoprosencephaly",
    "rachischisis",
)

#: the four anomaly classes (an anomaly-only model uses these)
ANOMALY_CLASSES: tuple[str, ...] = CLASSES[1:]
