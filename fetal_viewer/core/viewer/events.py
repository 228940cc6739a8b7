"""A tiny event: callbacks connected to it are called, in order, with the emitted value.

The headless state objects of :mod:`fetal_viewer.core.viewer` announce their changes with
these (napari's ``EmitterGroup`` is the model, without Qt). Everything runs on the thread
that emits; the GUI only ever changes state from its own thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Event(Generic[T]):
    """``connect(callback)``, ``disconnect(callback)``, ``emit(value)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[T], object]] = []

    def connect(self, callback: Callable[[T], object]) -> Callable[[T], object]:
        """Call ``callback(value)`` on every :meth:`emit`; returns it (usable as decorator)."""
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[[T], object] | None = None) -> None:
        """Forget ``callback`` (every callback when None)."""
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, value: T) -> None:
        for callback in list(self._callbacks):
            callback(value)

    def __len__(self) -> int:
        return len(self._callbacks)
