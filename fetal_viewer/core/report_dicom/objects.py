"""The AI result objects of a study: the source headers they copy, the SR and the
secondary captures built together, and the files they are written to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fetal_viewer.core.report_dicom.capture import build_capture
from fetal_viewer.core.report_dicom.sr import build_sr
from fetal_viewer.errors import StudyLoadError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from fetal_viewer.core.report_dicom.analysis import StudyAnalysis


@dataclass(frozen=True)
class ResultObjects:
    sr: Dataset
    captures: tuple[Dataset, ...]

    @property
    def all(self) -> list[Dataset]:
        return [self.sr, *self.captures]


def read_sources(paths: Sequence[Path]) -> dict[str, Dataset]:
    """Headers of the source instances, by SOP Instance UID (no pixel data)."""
    from pydicom import dcmread

    out: dict[str, Dataset] = {}
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise StudyLoadError(
                "A source of the AI result is not a readable DICOM file.",
                why=f"{type(exc).__name__}: {exc}",
                fix="AI results as DICOM need the study's DICOM files.",
                path=path,
            ) from exc
        out[str(ds.SOPInstanceUID)] = ds
    return out


def build_results(
    analysis: StudyAnalysis, sources: dict[str, Dataset], *, alpha: float = 0.4
) -> ResultObjects:
    """The SR and one secondary capture per key frame, in two new series of the study."""
    from pydicom.uid import generate_uid

    sr = build_sr(analysis, sources)
    sc_series = str(generate_uid())
    captures = tuple(
        build_capture(
            key,
            sources[key.sop_instance_uid],
            analysis,
            series_uid=sc_series,
            instance_number=i + 1,
            alpha=alpha,
        )
        for i, key in enumerate(analysis.key_frames)
    )
    return ResultObjects(sr, captures)


def write_results(objects: ResultObjects, folder: Path) -> list[Path]:
    """``folder/sr.dcm`` and ``folder/key_frame_NN.dcm``; files are never overwritten."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, ds in [
        ("sr.dcm", objects.sr),
        *((f"key_frame_{i + 1:02d}.dcm", c) for i, c in enumerate(objects.captures)),
    ]:
        path = folder / name
        if path.exists():
            raise StudyLoadError(
                "The output file exists already.",
                fix="Choose an empty --out folder.",
                path=path,
            )
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out
