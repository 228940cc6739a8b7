"""Measurements on ultrasound frames: the fetal head's ellipse, its circumference, Hadlock age.

Public API:

* :func:`head.find_head` ``(frame) -> HeadFit | None`` and :func:`head.detect_head`
  ``(frame) -> HeadSearch`` (with the reason when no head is found);
* :func:`head.head_circumference_mm` ``(fit, spacing_mm) -> float``,
  :func:`head.skull_masks` ``(fit, shape) -> SkullMasks``;
* :mod:`hadlock`: gestational age from head circumference or biparietal diameter, and the
  ellipse perimeter used for the circumference.
"""
