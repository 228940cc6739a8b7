"""Collect warnings in a block, safely from several threads at once.

``warnings.catch_warnings`` swaps process-wide state (the filter list and ``showwarning``)
on entry and puts back what it saw on exit, so two threads whose blocks overlap restore each
other's state (before Python 3.14): the filters stay at "always" for good and later warnings
go to a finished block's list, silently and without bound. Frames are decoded on two worker
threads while the GUI thread and the model loader also silence warnings, so this happens.

Here the first block to open installs one recorder and the last to close restores what was
there. Each thread's warnings go to its own innermost open block; warnings raised on a thread
with no open block are shown as before (every time, while any block is open).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_lock = threading.Lock()
_local = threading.local()
_open = 0
_saved_filters: Any = None
_saved_show: Any = None


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    stack: list[list[warnings.WarningMessage]] = getattr(_local, "stack", [])
    if stack:
        stack[-1].append(warnings.WarningMessage(message, category, filename, lineno, file, line))
    elif _saved_show is not None:
        _saved_show(message, category, filename, lineno, file, line)


@contextmanager
def collect_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning this thread raises inside the block, instead of showing it."""
    global _open, _saved_filters, _saved_show
    caught: list[warnings.WarningMessage] = []
    stack: list[list[warnings.WarningMessage]] = _local.__dict__.setdefault("stack", [])
    with _lock:
        if _open == 0:
            _saved_filters, _saved_show = warnings.filters, warnings.showwarning
            warnings.filters = _saved_filters[:]
            warnings.simplefilter("always")
            warnings.showwarning = _show
        _open += 1
    stack.append(caught)
    try:
        yield caught
    finally:
        stack.pop()
        with _lock:
            _open -= 1
            if _open == 0:
                warnings.filters = _saved_filters
                warnings.showwarning = _saved_show
                warnings._filters_mutated()  # type: ignore[attr-defined]
                _saved_filters = _saved_show = None
