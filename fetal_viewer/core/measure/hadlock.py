"""Hadlock's fetal-age regressions and the ellipse perimeter that head circumference uses.

Hadlock FP, Deter RL, Harrist RB, Park SK. "Estimating fetal age: computer-assisted
analysis of multiple fetal growth parameters." Radiology 1984;152(2):497-501.

The paper gives gestational age (weeks) as a function of each measurement (in cm):

* biparietal diameter: ``GA = 9.54 + 1.482 * BPD + 0.1676 * BPD**2``
* head circumference:  ``GA = 8.96 + 0.540 * HC + 0.0003 * HC**3``

The regressions were fitted on 12-40 weeks; outside that range they extrapolate.
Head circumference is the perimeter of an ellipse fitted to the outer border of the skull,
taken with Ramanujan's approximation (:func:`ellipse_perimeter`).
"""

from __future__ import annotations

import math

#: gestational ages (weeks) that Hadlock's regressions were fitted on
HADLOCK_RANGE_WEEKS = (12.0, 40.0)


def ga_from_bpd(bpd_cm: float) -> float:
    """Hadlock 1984: gestational age (weeks) from biparietal diameter (cm)."""
    return 9.54 + 1.482 * bpd_cm + 0.1676 * bpd_cm**2


def ga_from_hc(hc_cm: float) -> float:
    """Hadlock 1984: gestational age (weeks) from head circumference (cm)."""
    return 8.96 + 0.540 * hc_cm + 0.0003 * hc_cm**3


def ellipse_perimeter(a: float, b: float) -> float:
    """Ramanujan's second approximation of the perimeter of an ellipse (semi-axes a, b)."""
    if a + b <= 0.0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))
