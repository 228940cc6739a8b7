"""Collect warnings in a block, safely from several threads at once.

``warnings.catch_warnings`` swaps process-wide state (the filter list and ``showwarning``)
on entry and puts back what it saw on exit, so two threads whose blocks overlap restore each
other's state (before Python 3.14): a warning lands in another thread's block, or in a
finished block's list, silently and without bound. Frames are decoded on two worker threads
while the GUI thread and the model loader also collect warnings, so this happens.

Here a warning that passed the filters is routed by thread: ``warnings._showwarnmsg`` (the
hook the interpreter calls for every warning it shows; ``catch_warnings`` never swaps it) is
wrapped once, for good, and hands each warning to its thread's innermost open block, or to
the hook it wrapped when that thread has no open block. So another library swapping
``showwarning`` on another thread cannot steal a block's warnings. The filter list is still
process-wide: the first block to open sets "always" (so a repeated warning is collected every
time) and the last to close puts back what was there. A foreign ``catch_warnings`` that closes
while a block is open can still put back filters that hide a repeat; the GUI keeps superqt's
workers from doing that (``fetal_viewer.gui.workers``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_local = threading.local()
_open = 0
_saved_filters: Any = None
_wrapped: Callable[[warnings.WarningMessage], None] | None = None


def _route(message: warnings.WarningMessage) -> None:
    stack: list[list[warnings.WarningMessage]] = getattr(_local, "stack", [])
    if stack:
        stack[-1].append(message)
    elif _wrapped is not None:
        _wrapped(message)


def _install_route() -> None:
    """Wrap the hook once (never again: re-wrapping a hook that wraps ours would loop)."""
    global _wrapped
    if _wrapped is None:
        _wrapped = warnings._showwarnmsg  # type: ignore[attr-defined]
        warnings._showwarnmsg = _route  # type: ignore[attr-defined]


@contextmanager
def collect_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning this thread raises inside the block, instead of showing it."""
    global _open, _saved_filters
    caught: list[warnings.WarningMessage] = []
    stack: list[list[warnings.WarningMessage]] = _local.__dict__.setdefault("stack", [])
    with _lock:
        _install_route()
        if _open == 0:
            _saved_filters = warnings.filters
            warnings.filters = _saved_filters[:]
            warnings.simplefilter("always")
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
                warnings._filters_mutated()  # type: ignore[attr-defined]
                _saved_filters = None
