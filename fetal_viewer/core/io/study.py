"""The study model: patient -> study -> series, as frozen dataclasses.

Protected health information (patient ID, name, birth date) lives only in
:class:`PatientIdentity`. Everything else, including :attr:`Patient.pseudonym`, is safe to
show and export. A :class:`Series` is one image file (a still or a cine loop); its frames are
decoded lazily, one at a time, by the :class:`FrameSource` it carries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol, overload

import numpy as np

from fetal_viewer.errors import StudyLoadError

#: A frame larger than this many pixels is refused before anything is allocated
#: (an 8192 x 8192 image; ultrasound frames are well under 1/50 of it).
MAX_FRAME_PIXELS = 8192 * 8192
#: A file declaring more frames than this is refused (10 minutes of cine at 30 Hz).
MAX_FRAMES = 18_000
#: A file whose decoded frames would exceed this many bytes in all is refused.
MAX_TOTAL_BYTES = 64 * 1024**3


class FrameSource(Protocol):
    """Decodes one frame of one file to display-ready ``uint8`` RGB ``(rows, cols, 3)``."""

    def read(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Calibration:
    """Physical pixel spacing from the Sequence of Ultrasound Regions (0018,6011).

    ``spacing_mm`` is (row, col) millimetres per pixel, or ``None`` when no valid,
    consistent calibration exists; ``reason`` then says why (and, when calibrated, which
    region it came from). ``region`` is the calibrated region's box as
    ``(x0, y0, x1, y1)`` pixel coordinates, inclusive, as the DICOM region stores it
    (RegionLocationMinX0, MinY0, MaxX1, MaxY1).
    """

    spacing_mm: tuple[float, float] | None
    region: tuple[int, int, int, int] | None
    reason: str

    @classmethod
    def none(cls, reason: str) -> Calibration:
        return cls(spacing_mm=None, region=None, reason=reason)


@dataclass(frozen=True, repr=False)
class PatientIdentity:
    """The only place protected health information is kept (its repr hides it, for logs)."""

    patient_id: str
    patient_name: str
    birth_date: date | None

    def __repr__(self) -> str:
        return "PatientIdentity(<PHI hidden>)"


def make_pseudonym(key: str) -> str:
    """A stable pseudonym for a patient key: ``P-`` and 8 hex digits of its SHA-256."""
    return "P-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8].upper()


#: the Manufacturer the app writes into the DICOM objects it makes (its AI result captures)
APP_MANUFACTURER = "fetal-viewer"
#: the modality the AI's header rule reads for those captures: they show its output, not a scan
APP_CAPTURE = "FV-AI"


@dataclass(frozen=True, eq=False)
class Series:
    """One image file: a still or a cine loop, with the header facts the viewer needs.

    ``uid`` is the DICOM SeriesInstanceUID (several files of one DICOM series share it;
    use ``source`` or ``instance_uid`` as a key). ``frame_time_ms`` is the cine frame
    interval (FrameTime, the mean of FrameTimeVector, or 1000 / RecommendedDisplayFrameRate
    or CineRate), ``None`` for stills. ``burned_in_annotation`` is the BurnedInAnnotation
    tag (``None`` when absent: assume there may be burned-in text). ``ga_weeks`` is the
    gestational age in weeks when the header holds it (see :mod:`.dicom`).
    """

    uid: str
    description: str
    modality: str
    manufacturer: str
    model_name: str
    rows: int
    cols: int
    n_frames: int
    frame_time_ms: float | None
    calibration: Calibration
    burned_in_annotation: bool | None
    ga_weeks: float | None
    source: Path
    instance_uid: str = ""
    instance_number: int | None = None
    series_number: int | None = None
    transfer_syntax: str = ""
    photometric: str = ""
    _frames: FrameSource | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.n_frames

    @property
    def header_modality(self) -> str:
        """The modality the AI's header rule reads: the file's, or :data:`APP_CAPTURE` for
        a capture the app made of its own result (sent to PACS and retrieved again), so
        that its heatmap is never analysed as a scan nor counted for the patient."""
        own = self.manufacturer == APP_MANUFACTURER and self.modality in ("OT", "SC")
        return APP_CAPTURE if own else self.modality

    def frames(self) -> SeriesFrames:
        """The frames as a sequence that decodes each one when it is asked for."""
        return SeriesFrames(self)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a C-contiguous ``(rows, cols, 3)`` ``uint8`` RGB array.

        Raises :class:`StudyLoadError` when the frame cannot be decoded, ``IndexError``
        when ``index`` is out of range.
        """
        if not -self.n_frames <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range: {self.source} has {self.n_frames}")
        if self._frames is None:
            raise StudyLoadError("this series has no frame source", path=self.source)
        index %= self.n_frames
        try:
            arr = self._frames.read(index)
        except StudyLoadError:
            raise
        except Exception as exc:  # a decoder failing in a way we did not foresee
            raise StudyLoadError(
                f"frame {index} could not be decoded",
                why=f"{type(exc).__name__}: {exc}",
                fix="Re-export the file from the scanner or PACS; if it opens elsewhere, "
                "report it with the file.",
                path=self.source,
            ) from exc
        if arr.shape != (self.rows, self.cols, 3) or arr.dtype != np.uint8:
            raise StudyLoadError(
                f"frame {index} decoded to {arr.shape} {arr.dtype}, "
                f"expected ({self.rows}, {self.cols}, 3) uint8",
                why="the pixel data does not match the header",
                fix="Re-export the file; its header and pixel data disagree.",
                path=self.source,
            )
        return np.ascontiguousarray(arr)


class SeriesFrames(Sequence[np.ndarray]):
    """A series' frames, decoded one at a time when asked for (:meth:`Series.frames`)."""

    def __init__(self, series: Series) -> None:
        self.series = series

    def __len__(self) -> int:
        return len(self.series)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self.series.frame(i) for i in range(*index.indices(len(self)))]
        return self.series.frame(index)


@dataclass(frozen=True)
class Study:
    uid: str
    description: str
    date: date | None
    series: tuple[Series, ...]


@dataclass(frozen=True)
class Patient:
    """A patient: ``pseudonym`` is what the UI and exports show; PHI stays in ``identity``."""

    pseudonym: str
    identity: PatientIdentity
    studies: tuple[Study, ...]


@dataclass(frozen=True)
class LoadResult:
    """What a path or paths held: the loaded patients and one error per bad file."""

    patients: list[Patient]
    problems: list[StudyLoadError]

    @property
    def series(self) -> list[Series]:
        """Every series, in patient -> study -> series order."""
        return [s for p in self.patients for st in p.studies for s in st.series]
