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
``showwarning`` on another thread cannot steal a block's warnings. The filter list is
process-wide: while any block is open it starts with one "always" entry of ours (so a repeated
warning is collected every time), and the last block to close puts back the list that was there.
A foreign ``catch_warnings`` (superqt runs every worker inside one) that closes while a block
is open puts back the list it saw when it opened; ``warnings._filters_mutated``, which it calls
right after, is wrapped too, so the "always" entry is put back at once, and taken out of a
list restored after the last block closed.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_lock = threading.RLock()  # the hook below runs inside blocks that hold it
_local = threading.local()
_open = 0
_saved_filters: Any = None
_ours: Any = None  # the filter list a block installed, until someone replaces it
_ALWAYS = ("always", None, Warning, None, 0)  # identified by identity, not equality
_wrapped: Callable[[warnings.WarningMessage], None] | None = None
_mutated: Callable[[], None] | None = None


def _route(message: warnings.WarningMessage) -> None:
    stack: list[list[warnings.WarningMessage]] = getattr(_local, "stack", [])
    if stack:
        stack[-1].append(message)
    elif _wrapped is not None:
        _wrapped(message)


def _has_always(filters: Sequence[Any]) -> bool:
    return any(f is _ALWAYS for f in filters)


def _keep_always() -> None:
    """After any change of the filter list: ours first while a block is open, else gone."""
    assert _mutated is not None
    _mutated()
    with _lock:
        current = warnings.filters
        if _open and not _has_always(current):
            warnings.filters = [_ALWAYS, *current]  # a foreign block put back its list
            _mutated()
        elif not _open and _has_always(current):
            warnings.filters = [f for f in current if f is not _ALWAYS]
            _mutated()


def _install_route() -> None:
    """Wrap the hooks once (never again: re-wrapping a hook that wraps ours would loop)."""
    global _wrapped, _mutated
    if _wrapped is None:
        _wrapped = warnings._showwarnmsg  # type: ignore[attr-defined]
        warnings._showwarnmsg = _route  # type: ignore[attr-defined]
        _mutated = warnings._filters_mutated  # type: ignore[attr-defined]
        warnings._filters_mutated = _keep_always  # type: ignore[attr-defined]


@contextmanager
def collect_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning this thread raises inside the block, instead of showing it."""
    global _open, _saved_filters, _ours
    caught: list[warnings.WarningMessage] = []
    stack: list[list[warnings.WarningMessage]] = _local.__dict__.setdefault("stack", [])
    with _lock:
        _install_route()
        _open += 1
        if _open == 1:
            _saved_filters = warnings.filters
            _ours = warnings.filters = [_ALWAYS, *_saved_filters]
            _keep_always()
    stack.append(caught)
    try:
        yield caught
    finally:
        stack.pop()
        with _lock:
            _open -= 1
            if _open == 0:
                if warnings.filters is _ours:
                    warnings.filters = _saved_filters
                else:  # replaced while open: keep the replacement, without our entry
                    warnings.filters = [f for f in warnings.filters if f is not _ALWAYS]
                _keep_always()
                _saved_filters = _ours = None
