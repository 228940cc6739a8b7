"""Whether this program may start worker processes of its own (the head finder's).

A spawned process imports the program's main module again before it runs anything, so a
script without an ``if __name__ == "__main__":`` guard would run once more in each worker:
its output printed twice, its files written twice. The core starts none unless the program
says its main module imports safely (:func:`allow_workers`): the app's entry point does, for
the viewer and the CLI; a script of one's own may, once it has that guard.
"""

from __future__ import annotations

_allowed = False


def allow_workers(allowed: bool = True) -> None:
    """Let the core start worker processes in this program (or not, with False)."""
    global _allowed
    _allowed = allowed


def workers_allowed() -> bool:
    return _allowed
