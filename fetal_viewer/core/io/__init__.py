"""Study loading: DICOM and plain images to patients -> studies -> series, frames on demand.

Public API (see CONTRIBUTING.md): :func:`open_path`, :func:`open_paths`, :func:`read_frame`,
and the frozen dataclasses :class:`LoadResult`, :class:`Patient`, :class:`PatientIdentity`,
:class:`Study`, :class:`Series`, :class:`Calibration`.
"""

from fetal_viewer.core.io.loader import open_path, open_paths, open_series, read_frame
from fetal_viewer.core.io.study import (
    Calibration,
    FrameSource,
    LoadResult,
    Patient,
    PatientIdentity,
    Series,
    Study,
    make_pseudonym,
)

__all__ = [
    "Calibration",
    "FrameSource",
    "LoadResult",
    "Patient",
    "PatientIdentity",
    "Series",
    "Study",
    "make_pseudonym",
    "open_path",
    "open_paths",
    "open_series",
    "read_frame",
]
