"""Argument types the commands share."""

from __future__ import annotations

import argparse
import math
from typing import Any


def ranged(
    kind: type[int] | type[float], lo: float, hi: float = math.inf, *, above: bool = False
) -> Any:
    """An argparse ``type``: a finite ``kind`` from ``lo`` (or above it, with ``above``) to
    ``hi``; anything else is a usage error before any work starts."""
    word = "whole number" if kind is int else "number"
    if above:
        span = f"above {lo:g}"
    else:
        span = f"at least {lo:g}" if hi == math.inf else f"from {lo:g} to {hi:g}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {word} {span}, got {text!r}") from None
        if not (math.isfinite(value) and (value > lo if above else value >= lo) and value <= hi):
            raise argparse.ArgumentTypeError(f"expected a {word} {span}, got {text!r}")
        return value

    return parse
