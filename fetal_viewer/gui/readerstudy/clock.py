"""Active reading time: wall time while a case is on screen, minus pauses and idle gaps.

The reading mode feeds it every key press and mouse event (:meth:`ActiveClock.touch`). A gap
between two inputs counts at most ``idle_s``: a reader who walks away without pausing adds
``idle_s``, not the whole absence. No Qt here, so it is tested with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

IDLE_S = 60.0


class ActiveClock:
    def __init__(self, idle_s: float = IDLE_S, now: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self._now = now
        self._active = 0.0
        self._last: float | None = None  # last input while running; None = stopped
        self._was_running = False  # running when paused
        self.paused = False

    def start(self) -> None:
        """Start from zero (a new step)."""
        self._active = 0.0
        self.paused = False
        self._last = self._now()

    def stop(self) -> None:
        self._accrue()
        self._last = None

    def _accrue(self) -> None:
        if self._last is not None:
            t = self._now()
            self._active += min(t - self._last, self.idle_s)
            self._last = t

    def touch(self) -> None:
        """An input event: the reader is here."""
        self._accrue()

    def pause(self) -> None:
        if not self.paused:
            self._accrue()
            self.paused = True
            self._was_running = self._last is not None
            self._last = None

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self._was_running:
                self._last = self._now()

    @property
    def running(self) -> bool:
        return self._last is not None

    def elapsed_ms(self) -> int:
        extra = 0.0
        if self._last is not None:
            extra = min(self._now() - self._last, self.idle_s)
        return round((self._active + extra) * 1000)
