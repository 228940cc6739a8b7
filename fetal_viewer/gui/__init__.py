"""Qt desktop face of fetal-viewer: a thin layer over fetal_viewer.core."""

from fetal_viewer.gui._pyside_fix import apply as _apply_pyside_fix

# before anything emits a signal: see _pyside_fix (PySide6 6.12 on Python 3.11)
_apply_pyside_fix()
