"""Reading numbers out of DICOM elements that may be missing, empty, multi-valued or junk."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def first_number(value: Any) -> float | None:
    """The first value of a (possibly multi-valued) numeric element as a finite float, or
    None when it is missing, empty or not a number."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def whole_number(value: Any, default: int | None = None) -> int | None:
    """A whole-number element (IS, US...) as int, else ``default``."""
    number = first_number(value)
    return int(number) if number is not None and number.is_integer() else default
