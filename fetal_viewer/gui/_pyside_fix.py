"""Work around a reference-count bug of PySide6 6.12 on Python 3.11.

Its wrappers return the singletons ``None``, ``True`` and ``False`` without a new
reference: every call of a ``void`` Qt method (``processEvents()``, ...) takes one
reference from ``None`` and every ``SignalInstance.emit()`` one from ``True``. Python 3.12+
makes these singletons immortal, so it goes unnoticed there; on 3.11 the process aborts
after some thousands of calls ("Fatal Python error: none_dealloc" / "bool_dealloc").

:func:`apply` measures the leak once and, only if it is there, gives the singletons the
same "immortal" reference count Python 3.12 uses (they are static objects that are never
freed, so an extra count changes nothing else). ``fetal_viewer.gui`` calls it on import,
before anything emits or spins an event loop.
"""

from __future__ import annotations

import ctypes
import sys

#: reference count added to each singleton: effectively never reaches zero
_IMMORTAL = 1 << 40
_SINGLETONS = (None, True, False, Ellipsis, NotImplemented)
_applied = False


def _probe() -> tuple[int, int]:
    """(references to None lost per void call, references to True lost per emit)."""
    from PySide6.QtCore import QCoreApplication, QObject, Signal

    class _Probe(QObject):
        ping = Signal(int)

    probe = _Probe()
    n = 8
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(n):
        probe.ping.emit(0)
        QCoreApplication.sendPostedEvents(probe)  # void, safe without an application
    none_lost = none_before - sys.getrefcount(None)
    true_lost = true_before - sys.getrefcount(True)
    for value, lost in ((None, none_lost), (True, true_lost)):
        _add_refs(value, max(0, lost))  # give back what the probe took
    return round(none_lost / n), round(true_lost / n)


def _add_refs(obj: object, count: int) -> None:
    if count:
        ctypes.c_ssize_t.from_address(id(obj)).value += count


def apply() -> bool:
    """Make the singletons immortal if this PySide6 leaks their references."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12):
        return False  # immortal already
    none_lost, true_lost = _probe()
    if none_lost <= 0 and true_lost <= 0:
        return False
    for obj in _SINGLETONS:
        _add_refs(obj, _IMMORTAL)
    _applied = True
    return True
