"""Fetal head biometry by gestational age, from Hadlock's regressions.

Hadlock FP, Deter RL, Harrist RB, Park SK. "Estimating fetal age: computer-assisted
analysis of multiple fetal growth parameters." Radiology 1984;152(2):497-501.

The regressions themselves (age from size) live in :mod:`fetal_viewer.core.measure.hadlock`,
which the automatic head measurement uses too. The phantoms need the inverse (size from
age), so both are inverted here: the BPD one in closed form (a quadratic), the HC one by
bisection (the cubic is increasing). The
occipito-frontal diameter follows from HC and BPD through Ramanujan's perimeter of an
ellipse, which is how HC is measured (an ellipse fitted to the outer skull).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fetal_viewer.core.measure.hadlock import ellipse_perimeter, ga_from_bpd, ga_from_hc

__all__ = [
    "GA_MAX_WEEKS",
    "GA_MIN_WEEKS",
    "HeadSize",
    "bpd_from_ga",
    "ellipse_perimeter",
    "ga_from_bpd",
    "ga_from_hc",
    "hc_from_ga",
    "head_size",
]

#: gestational ages the phantoms cover (weeks)
GA_MIN_WEEKS = 14.0
GA_MAX_WEEKS = 40.0


def bpd_from_ga(ga_weeks: float) -> float:
    """Biparietal diameter (cm) at ``ga_weeks``: the positive root of Hadlock's quadratic."""
    a, b, c = 0.1676, 1.482, 9.54 - ga_weeks
    return (-b + math.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)


def hc_from_ga(ga_weeks: float) -> float:
    """Head circumference (cm) at ``ga_weeks``: Hadlock's cubic inverted by bisection."""
    lo, hi = 0.0, 60.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ga_from_hc(mid) < ga_weeks:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class HeadSize:
    """Head dimensions in millimetres at one gestational age."""

    ga_weeks: float
    bpd_mm: float
    hc_mm: float
    ofd_mm: float
    skull_mm: float

    @property
    def cephalic_index(self) -> float:
        return self.bpd_mm / self.ofd_mm


def head_size(ga_weeks: float) -> HeadSize:
    """BPD and HC from Hadlock, OFD solved so the ellipse (OFD, BPD) has perimeter HC.

    The cephalic index is kept within 0.70-0.90 (the normal range), which only binds at
    the youngest ages where the two regressions are least consistent.
    """
    ga = min(max(ga_weeks, GA_MIN_WEEKS), GA_MAX_WEEKS)
    bpd = bpd_from_ga(ga) * 10.0
    hc = hc_from_ga(ga) * 10.0
    b = bpd / 2.0
    lo, hi = b, 3.0 * b
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ellipse_perimeter(mid, b) < hc:
            lo = mid
        else:
            hi = mid
    ofd = 2.0 * 0.5 * (lo + hi)
    ofd = min(max(ofd, bpd / 0.90), bpd / 0.70)
    # calvarial bone thickens with age: about 1.5 mm mid-trimester to 3.5 mm at term
    skull = 0.3 + 0.08 * ga
    return HeadSize(ga_weeks=ga, bpd_mm=bpd, hc_mm=hc, ofd_mm=ofd, skull_mm=skull)
