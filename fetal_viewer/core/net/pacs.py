"""The PACS use cases the CLI and the GUI share: verify a node, find studies and series,
retrieve a study into the local cache, send instances. Each works for a DIMSE node and for
a DICOMweb node alike, takes a :class:`~fetal_viewer.core.progress.CancelToken` and a
``ProgressFn`` where it runs long, and raises :class:`~fetal_viewer.errors.NetworkError`
with what/why/fix.

A retrieve writes the study under ``<cache>/pacs/<StudyInstanceUID>/`` (see
:mod:`fetal_viewer.core.net.storage`) and keeps a small state file there: incomplete
until every instance the node listed is on disk. Retrieving an incomplete study again
fetches only the instances still missing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetal_viewer.core.net import dimse, web
from fetal_viewer.core.net.listener import Listener
from fetal_viewer.core.net.nodes import LocalAE, Node
from fetal_viewer.core.net.storage import (
    _NO_SPACE,
    StoredInstance,
    StudyStore,
    TransferState,
    is_uid,
    no_space_error,
)
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.errors import CancelledError, FetalViewerError, NetworkError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger("fetal_viewer.core.net")

METHODS = ("get", "move")
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


def cache_root() -> Path:
    """Where retrieved studies go: ``<user cache>/pacs``."""
    from fetal_viewer.core.appdirs import cache_dir

    return cache_dir() / "pacs"


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

    _check_uid(study_uid)
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

    _check_uid(study_uid)
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


def _check_uid(uid: str) -> None:
    if not is_uid(uid):
        raise NetworkError(
            f"{uid!r} is not a Study Instance UID.",
            fix="Copy the UID from `fetal-viewer pacs find` (digits and dots).",
        )


# ---------------------------------------------------------------------------------------
# retrieve
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrieveResult:
    study_uid: str
    folder: Path
    method: str
    complete: bool
    expected: int | None  # instances the node listed
    held: int  # instances of the study on disk now
    received: int  # instances that arrived in this call (new or not)
    new: int
    duplicates: int
    conflicts: int
    failed: int  # sub-operations the node reported as failed
    nbytes: int
    seconds: float
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "folder": str(self.folder),
            "method": self.method,
            "complete": self.complete,
            "expected": self.expected,
            "held": self.held,
            "received": self.received,
            "new": self.new,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "bytes": self.nbytes,
            "seconds": round(self.seconds, 3),
            "problem": self.problem,
        }


def _missing(
    remote: dict[str, dict[str, str]], held: set[str]
) -> tuple[dict[str, list[str]], int, set[str]]:
    """(missing instances by series, instances on the node, SOP classes of the missing)."""
    missing = {s: sorted(u for u in sops if u not in held) for s, sops in remote.items()}
    classes = {remote[s][u] for s, sops in missing.items() for u in sops} - {""}
    return (
        {s: sops for s, sops in missing.items() if sops},
        sum(len(v) for v in remote.values()),
        classes,
    )


def retrieve_study(
    node: Node,
    local: LocalAE,
    study_uid: str,
    *,
    store: StudyStore | None = None,
    method: str = "get",
    listener: Listener | None = None,
    on_instance: Callable[[StoredInstance], None] | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> RetrieveResult:
    """Retrieve one study into ``store`` (default: the user cache).

    ``method`` is ``"get"`` (C-GET: instances come back on the same association) or
    ``"move"`` (C-MOVE to our AE title: the node must know it, and ``listener``, or a
    temporary one on our port, receives). DICOMweb nodes use WADO-RS whatever the method.
    A study held in part (an earlier attempt broke off) is completed: only the missing
    instances are asked for. ``on_instance`` hears of each stored instance (from the
    receiving thread), so a viewer can show series as they arrive.

    Raises :class:`NetworkError` when the node cannot be reached or the connection breaks
    (what arrived is kept and the study stays marked incomplete), and
    :class:`CancelledError` on cancel (the same)."""
    if method not in METHODS:
        raise NetworkError(f"Unknown retrieve method {method!r}.", fix="Use get or move.")
    _check_uid(study_uid)
    store = store or StudyStore(cache_root())
    t0 = time.perf_counter()
    held0 = store.held(study_uid)
    kind = "wado" if node.kind == "dicomweb" else method

    # what the node holds: the whole study, or (resuming) the instances still missing
    wanted: dict[str, list[str]] | None = None
    expected: int | None
    classes: set[str] = set()
    if held0:
        remote = find_instances(node, local, study_uid)
        wanted, expected, classes = _missing(remote, held0)
        if not remote:
            raise _no_such_study(node, study_uid)
    elif node.kind == "dicomweb":
        match = find_study(node, local, study_uid)
        if match is None:
            raise _no_such_study(node, study_uid)
        expected = match.n_instances
    else:
        # no C-FIND first: the C-GET/C-MOVE responses count the sub-operations, and an
        # association less is a tenth of a second less on a short transfer
        expected = None

    state = TransferState(study_uid, node.name, kind, expected=expected, received=len(held0))
    store.save_state(state)
    total = [expected or 0]
    tally = dimse.Tally()
    progress(len(held0), total[0], "connecting")

    def arrived(item: StoredInstance, *_: Any) -> None:
        if on_instance is not None:
            on_instance(item)
        progress(
            len(held0) + tally.received, max(total[0], len(held0) + tally.received), "receiving"
        )

    def announced(n: int) -> None:
        total[0] = max(total[0], len(held0) + n)

    subops: list[dimse.SubOps] = []
    try:
        if wanted == {}:
            pass  # everything is on disk already
        elif node.kind == "dicomweb":
            for ds in web.iter_instances(node, study_uid, wanted, cancel):
                sop = str(ds.get("SOPInstanceUID", ""))
                series = str(ds.get("SeriesInstanceUID", ""))
                if str(ds.get("StudyInstanceUID", "")) != study_uid or not is_uid(series):
                    tally.refused += 1
                    continue
                item = store.write(
                    study_uid, series, sop, web.encode(ds), str(ds.get("SOPClassUID", ""))
                )
                tally.add(item)
                arrived(item)
        elif method == "get":
            route = {study_uid: store}.get
            handler = dimse.store_handler(route, tally, arrived)
            subops = dimse.c_get(
                node,
                local,
                dimse.retrieve_query(study_uid, wanted),
                handler,
                sop_classes=classes,
                on_total=announced,
                cancel=cancel,
            )
            if any(s.failed for s in subops):
                # instances of classes we did not propose: ask for those, naming them
                remote = find_instances(node, local, study_uid)
                again, expected, classes = _missing(remote, store.held(study_uid))
                if again and classes:
                    subops = dimse.c_get(
                        node,
                        local,
                        dimse.retrieve_query(study_uid, again),
                        handler,
                        sop_classes=classes,
                        on_total=announced,
                        cancel=cancel,
                    )
        else:
            subops = _move(
                node, local, study_uid, wanted, store, listener, tally, arrived, announced, cancel
            )
    except (FetalViewerError, OSError) as exc:
        held = len(store.held(study_uid))
        if isinstance(exc, OSError):
            exc = (
                no_space_error(store.root, exc)
                if exc.errno in _NO_SPACE
                else NetworkError(
                    "A received instance could not be written.",
                    why=f"{type(exc).__name__}: {exc.strerror or exc}",
                    fix="Check that the cache folder is writable.",
                    path=store.root,
                )
            )
        elif tally.disk_error is not None and not isinstance(exc, CancelledError):
            exc = no_space_error(store.root, tally.disk_error)
        store.save_state(replace(state, received=held, error=_one_line(exc)))
        if isinstance(exc, NetworkError):
            exc.why = (exc.why + "; " if exc.why else "") + (
                f"{held} of {expected if expected is not None else '?'} instances are on disk "
                f"in {store.study_dir(study_uid)}, marked incomplete"
            )
            exc.fix = (exc.fix + " " if exc.fix else "") + "Retrieving the study again "
            "fetches only what is missing."
            exc.args = (exc.message,)
        raise exc from None

    held_now = store.held(study_uid)
    failed = sum(s.failed for s in subops)
    bad_status = [s for s in subops if s.status != dimse.SUCCESS]
    if subops and expected is None:
        expected = sum(s.completed + s.failed + s.warning for s in subops)
        state = replace(state, expected=expected)
        if expected == 0 and not held_now:
            # nothing came and nothing was counted: no such study, or (a failure status)
            # the node could not send at all; a search tells which
            status = ""
            if bad_status:
                s0 = bad_status[0]
                status = f"status 0x{s0.status:04X}" + (f" ({s0.comment})" if s0.comment else "")
            if bad_status and find_study(node, local, study_uid) is not None:
                error = _could_not_send(node, local, method, status)
                store.save_state(replace(state, error=_one_line(error)))
                raise error
            store.forget(study_uid)  # leave no empty study folder behind
            error = _no_such_study(node, study_uid)
            if status:
                error.why = f"it answered the retrieve with {status} and sent nothing"
            raise error
    if tally.disk_error is not None:
        err = no_space_error(store.root, tally.disk_error)
        store.save_state(replace(state, received=len(held_now), error=_one_line(err)))
        raise err
    complete = not failed and not bad_status and (expected is None or len(held_now) >= expected)
    problem = ""
    if not complete:
        parts = []
        if failed:
            parts.append(f"the node reported {failed} failed sub-operation(s)")
        for s in bad_status:
            parts.append(f"final status 0x{s.status:04X}{': ' + s.comment if s.comment else ''}")
        if expected is not None and len(held_now) < expected:
            parts.append(f"{len(held_now)} of {expected} instances arrived")
        problem = "; ".join(parts) or "the study is incomplete"
    store.save_state(
        replace(
            state,
            complete=complete,
            received=len(held_now),
            failed=failed,
            error=problem,
        )
    )
    progress(len(held_now), max(total[0], len(held_now)), "done")
    return RetrieveResult(
        study_uid=study_uid,
        folder=store.study_dir(study_uid),
        method=kind,
        complete=complete,
        expected=expected,
        held=len(held_now),
        received=tally.received,
        new=tally.stored,
        duplicates=tally.duplicates,
        conflicts=tally.conflicts,
        failed=failed,
        nbytes=tally.nbytes,
        seconds=time.perf_counter() - t0,
        problem=problem,
    )


def _no_such_study(node: Node, study_uid: str) -> NetworkError:
    return NetworkError(
        f"{node.address} has no study {study_uid} (or refuses to send it).",
        fix="Search with `fetal-viewer pacs find` and copy the Study Instance UID; the study "
        "may have been deleted.",
    )


def _could_not_send(node: Node, local: LocalAE, method: str, status: str) -> NetworkError:
    if method == "move":
        return NetworkError(
            f"{node.address} has the study but could not send it to us (C-MOVE).",
            why=f"it answered {status} without sending anything: it cannot reach our "
            f"listener, or does not know our AE title {local.ae_title!r}",
            fix=f"Ask its administrator to add AE title {local.ae_title!r} with this "
            f"computer's address and port {local.port}, check that no firewall blocks that "
            "port, or retrieve by C-GET (without --move).",
        )
    return NetworkError(
        f"{node.address} has the study but refused to send it.",
        why=f"it answered the C-GET with {status} and sent nothing",
        fix="Try C-MOVE (--move), or ask the node's administrator whether it allows C-GET "
        f"from our AE title {local.ae_title!r}.",
    )


def _one_line(exc: BaseException) -> str:
    return str(getattr(exc, "what", "") or exc).splitlines()[0][:300]


def _move(
    node: Node,
    local: LocalAE,
    study_uid: str,
    wanted: dict[str, list[str]] | None,
    store: StudyStore,
    listener: Listener | None,
    tally: dimse.Tally,
    arrived: Callable[[StoredInstance], None],
    announced: Callable[[int], None],
    cancel: CancelToken | None,
) -> list[dimse.SubOps]:
    own = None
    if listener is None or not listener.running:
        # a listener for this retrieve only: accepts the node's AE title, stores nothing
        # that this retrieve did not ask for
        own = Listener(local, None, allowed_callers=[node.ae_title])
        own.start()
        listener = own
    before = listener.tally.refused

    def counted(item: StoredInstance) -> None:
        tally.add(item)
        arrived(item)

    try:
        with listener.route(study_uid, store, counted):
            subops = dimse.c_move(
                node,
                local,
                dimse.retrieve_query(study_uid, wanted),
                local.ae_title,
                on_total=announced,
                cancel=cancel,
            )
        if listener.tally.disk_error is not None and listener.tally.refused > before:
            tally.disk_error = listener.tally.disk_error
        return subops
    finally:
        if own is not None:
            own.stop()


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
