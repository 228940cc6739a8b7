"""The PACS use cases the CLI and the GUI share: verify a node, find studies and series,
send instances (retrieving a study is :mod:`fetal_viewer.core.net.retrieve`). Each works
for a DIMSE node and for a DICOMweb node alike, takes a
:class:`~fetal_viewer.core.progress.CancelToken` and a ``ProgressFn`` where it runs long,
and raises :class:`~fetal_viewer.errors.NetworkError` with what/why/fix.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetal_viewer.core.net import dimse, web
from fetal_viewer.core.net.nodes import LocalAE, Node
from fetal_viewer.core.net.storage import is_uid
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.errors import NetworkError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger("fetal_viewer.core.net")

STUDY_FIELDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_FIELDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)


def inbox_root() -> Path:
    """Where the listener puts what is pushed to it: ``<user data>/inbox`` (not a cache:
    a modality may delete what it sent)."""
    from fetal_viewer.core.appdirs import data_dir

    return data_dir() / "inbox"


# ---------------------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------------------
_DATE = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")


def parse_date(text: str) -> dt.date:
    t = text.strip()
    if not _DATE.match(t):
        raise NetworkError(f"{text!r} is not a date.", fix="Write dates as YYYYMMDD or YYYY-MM-DD.")
    try:
        digits = t.replace("-", "")
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError as exc:
        raise NetworkError(
            f"{text!r} is not a date.", why=str(exc), fix="Write dates as YYYYMMDD or YYYY-MM-DD."
        ) from exc


def parse_date_range(text: str) -> tuple[dt.date | None, dt.date | None]:
    """``A-B``, ``A-``, ``-B`` or ``A`` (dates as YYYYMMDD or YYYY-MM-DD)."""
    t = text.strip()
    m = re.match(r"^(\d{4}-?\d{2}-?\d{2})?\s*(?:(\s-\s|-|\.\.)\s*(\d{4}-?\d{2}-?\d{2})?)?$", t)
    if not t or m is None:
        raise NetworkError(
            f"{text!r} is not a date range.",
            fix="Use FROM-TO, FROM- or -TO with dates as YYYYMMDD, e.g. 20240101-20240131.",
        )
    start = parse_date(m.group(1)) if m.group(1) else None
    end = parse_date(m.group(3)) if m.group(3) else None
    if m.group(2) is None:
        end = start
    if start and end and end < start:
        raise NetworkError(f"The date range {text!r} ends before it starts.")
    return start, end


@dataclass(frozen=True)
class StudyQuery:
    """Study search criteria; empty ones match anything. A name without ``*`` or ``?``
    matches anywhere in the patient's name (case as the node compares it)."""

    patient_id: str = ""
    patient_name: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    accession: str = ""
    modality: str = ""

    def name_pattern(self) -> str:
        name = self.patient_name.strip()
        if name and not any(c in name for c in "*?"):
            return f"*{name}*"
        return name

    def date_text(self) -> str:
        a = self.date_from.strftime("%Y%m%d") if self.date_from else ""
        b = self.date_to.strftime("%Y%m%d") if self.date_to else ""
        if a and a == b:
            return a
        return f"{a}-{b}" if a or b else ""

    def identifier(self) -> Dataset:
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for key in STUDY_FIELDS:
            setattr(ds, key, "")
        ds.PatientID = self.patient_id.strip()
        ds.PatientName = self.name_pattern()
        ds.StudyDate = self.date_text()
        ds.AccessionNumber = self.accession.strip()
        ds.ModalitiesInStudy = self.modality.strip().upper()
        return ds

    def filters(self) -> dict[str, str]:
        pairs = {
            "PatientID": self.patient_id.strip(),
            "PatientName": self.name_pattern(),
            "StudyDate": self.date_text(),
            "AccessionNumber": self.accession.strip(),
            "ModalitiesInStudy": self.modality.strip().upper(),
        }
        return {k: v for k, v in pairs.items() if v}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date(value: Any) -> dt.date | None:
    text = str(value or "").strip()
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) >= 8 else None
    except ValueError:
        return None


def _multi(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.split("\\") if v)
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class StudyMatch:
    study_uid: str
    patient_id: str
    patient_name: str
    birth_date: dt.date | None
    study_date: dt.date | None
    study_time: str
    description: str
    accession: str
    modalities: tuple[str, ...]
    n_series: int | None
    n_instances: int | None

    @classmethod
    def from_identifier(cls, ds: Dataset) -> StudyMatch:
        return cls(
            study_uid=str(ds.get("StudyInstanceUID", "")),
            patient_id=str(ds.get("PatientID", "")),
            patient_name=str(ds.get("PatientName", "")),
            birth_date=_date(ds.get("PatientBirthDate")),
            study_date=_date(ds.get("StudyDate")),
            study_time=str(ds.get("StudyTime", "")),
            description=str(ds.get("StudyDescription", "")),
            accession=str(ds.get("AccessionNumber", "")),
            modalities=_multi(ds.get("ModalitiesInStudy")),
            n_series=_int(ds.get("NumberOfStudyRelatedSeries")),
            n_instances=_int(ds.get("NumberOfStudyRelatedInstances")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "study_date": self.study_date.isoformat() if self.study_date else None,
            "study_time": self.study_time,
            "description": self.description,
            "accession": self.accession,
            "modalities": list(self.modalities),
            "n_series": self.n_series,
            "n_instances": self.n_instances,
        }


@dataclass(frozen=True)
class SeriesMatch:
    study_uid: str
    series_uid: str
    modality: str
    number: int | None
    description: str
    n_instances: int | None

    @classmethod
    def from_identifier(cls, ds: Dataset) -> SeriesMatch:
        return cls(
            study_uid=str(ds.get("StudyInstanceUID", "")),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            modality=str(ds.get("Modality", "")),
            number=_int(ds.get("SeriesNumber")),
            description=str(ds.get("SeriesDescription", "")),
            n_instances=_int(ds.get("NumberOfSeriesRelatedInstances")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "modality": self.modality,
            "number": self.number,
            "description": self.description,
            "n_instances": self.n_instances,
        }


def verify(node: Node, local: LocalAE) -> float:
    """C-ECHO (DIMSE) or one QIDO-RS search (DICOMweb); the round trip in seconds."""
    t0 = time.perf_counter()
    if node.kind == "dicomweb":
        web.verify(node)
    else:
        dimse.echo(node, local)
    return time.perf_counter() - t0


def find_studies(
    node: Node, local: LocalAE, query: StudyQuery, cancel: CancelToken | None = None
) -> list[StudyMatch]:
    """Studies matching ``query``, newest first."""
    if node.kind == "dicomweb":
        found = web.find_studies(node, query.filters(), STUDY_FIELDS)
    else:
        found = dimse.find(node, local, query.identifier(), cancel)
    matches = [StudyMatch.from_identifier(ds) for ds in found]
    return sorted(
        (m for m in matches if is_uid(m.study_uid)),
        key=lambda m: (m.study_date or dt.date.min, m.study_time),
        reverse=True,
    )


def find_study(node: Node, local: LocalAE, study_uid: str) -> StudyMatch | None:
    from pydicom.dataset import Dataset

    check_study_uid(study_uid)
    if node.kind == "dicomweb":
        found = web.find_studies(node, {"StudyInstanceUID": study_uid}, STUDY_FIELDS)
    else:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for key in STUDY_FIELDS:
            setattr(ds, key, "")
        ds.StudyInstanceUID = study_uid
        found = dimse.find(node, local, ds)
    matches = [StudyMatch.from_identifier(d) for d in found]
    return next((m for m in matches if m.study_uid == study_uid), None)


def find_series(node: Node, local: LocalAE, study_uid: str) -> list[SeriesMatch]:
    from pydicom.dataset import Dataset

    check_study_uid(study_uid)
    if node.kind == "dicomweb":
        found = web.find_series(node, study_uid, SERIES_FIELDS)
    else:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        for key in SERIES_FIELDS:
            setattr(ds, key, "")
        ds.StudyInstanceUID = study_uid
        found = dimse.find(node, local, ds)
    series = [SeriesMatch.from_identifier(d) for d in found]
    return sorted(
        (s for s in series if is_uid(s.series_uid)),
        key=lambda s: (s.number is None, s.number or 0, s.series_uid),
    )


def find_instances(node: Node, local: LocalAE, study_uid: str) -> dict[str, dict[str, str]]:
    """``{series UID: {SOP Instance UID: SOP Class UID}}`` of the study on the node."""
    from pydicom.dataset import Dataset

    out: dict[str, dict[str, str]] = {}
    for series in find_series(node, local, study_uid):
        if node.kind == "dicomweb":
            found = web.find_instances(node, study_uid, series.series_uid)
        else:
            ds = Dataset()
            ds.QueryRetrieveLevel = "IMAGE"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series.series_uid
            ds.SOPInstanceUID = ""
            ds.SOPClassUID = ""
            found = dimse.find(node, local, ds)
        out[series.series_uid] = {
            str(d.get("SOPInstanceUID", "")): str(d.get("SOPClassUID", ""))
            for d in found
            if d.get("SOPInstanceUID")
        }
    return out


def check_study_uid(uid: str) -> None:
    if not is_uid(uid):
        raise NetworkError(
            f"{uid!r} is not a Study Instance UID.",
            fix="Copy the UID from `fetal-viewer pacs find` (digits and dots).",
        )


# ---------------------------------------------------------------------------------------
# send
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SendResult:
    sent: int
    failed: tuple[tuple[str, str], ...]  # (what, why)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": [{"item": a, "why": b} for a, b in self.failed],
            "seconds": round(self.seconds, 3),
        }


def _outgoing_files(paths: Iterable[Path]) -> tuple[list[dimse.Outgoing], list[tuple[str, str]]]:
    from pydicom import dcmread

    from fetal_viewer.core.io.loader import expand

    files, problems = expand(paths)
    bad = [(str(p.path or p.what), p.what) for p in problems]
    out = []
    for path in files:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            sop = str(ds.file_meta.MediaStorageSOPClassUID)
            ts = str(ds.file_meta.TransferSyntaxUID)
        except Exception as exc:
            bad.append((str(path), f"not a DICOM file with file meta: {type(exc).__name__}"))
            continue
        out.append(dimse.Outgoing(sop, ts, path, str(path)))
    return out, bad


def send(
    node: Node,
    local: LocalAE,
    items: Sequence[Path] | Sequence[Dataset],
    *,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> SendResult:
    """Send files/folders (DICOM files found in them) or data sets to ``node`` by C-STORE
    (DIMSE) or STOW-RS (DICOMweb). Instances the node refuses are listed, not raised."""
    from pydicom.dataset import Dataset

    t0 = time.perf_counter()
    failed: list[tuple[str, str]] = []
    datasets = [x for x in items if isinstance(x, Dataset)]
    paths = [Path(x) for x in items if not isinstance(x, Dataset)]
    outgoing, bad = _outgoing_files(paths) if paths else ([], [])
    failed.extend(bad)
    for ds in datasets:
        outgoing.append(
            dimse.Outgoing(
                str(ds.SOPClassUID),
                str(ds.file_meta.TransferSyntaxUID),
                ds,
                f"{ds.SOPClassUID.name} {ds.SOPInstanceUID}",
            )
        )
    total = len(outgoing)
    sent = [0]
    progress(0, total, "connecting")
    if node.kind == "dicomweb":
        from pydicom import dcmread

        loaded = [
            it.payload if isinstance(it.payload, Dataset) else dcmread(it.payload)
            for it in outgoing
        ]
        done = [0]

        def batch(n: int, refused: list[str]) -> None:
            done[0] += n
            sent[0] += n - len(refused)
            failed.extend((uid, "refused by the server (STOW-RS)") for uid in refused)
            progress(done[0], total)

        web.store(node, loaded, batch, cancel)
    elif outgoing:

        def one(item: dimse.Outgoing, status: int) -> None:
            if status == -1:
                failed.append((item.label, "the node accepts no such object in that encoding"))
            elif status == dimse.SUCCESS or 0xB000 <= status <= 0xBFFF:
                sent[0] += 1
            else:
                failed.append((item.label, f"C-STORE status 0x{status:04X}"))
            progress(sent[0] + len(failed), total)

        dimse.c_store(node, local, outgoing, on_sent=one, cancel=cancel)
    return SendResult(sent[0], tuple(failed), time.perf_counter() - t0)
