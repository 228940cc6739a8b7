"""DIMSE with pynetdicom: verify (C-ECHO), query (C-FIND), retrieve (C-GET, C-MOVE), send
(C-STORE), each over one association opened by
:func:`~fetal_viewer.core.net.association.associate` (which says why one cannot be opened).

Received instances are written by :func:`store_handler` (shared with the listener) straight
from the bytes the peer sent, without decoding the pixel data.
"""

from __future__ import annotations

import io
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetal_viewer.core.net.association import associate, association_lost
from fetal_viewer.core.net.nodes import LocalAE, Node
from fetal_viewer.core.net.storage import (
    _NO_SPACE,
    StoredInstance,
    StudyStore,
    is_uid,
)
from fetal_viewer.core.progress import CancelToken
from fetal_viewer.errors import CancelledError, NetworkError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pynetdicom.presentation import PresentationContext

log = logging.getLogger("fetal_viewer.core.net")

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
#: at most this many presentation contexts in one A-ASSOCIATE-RQ (PS3.8: ids 1-255, odd)
MAX_CONTEXTS = 128
#: transfer syntaxes proposed, each in a context of its own, for image classes: the peer
#: then sends what it holds without transcoding
NATIVE_TS = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
COMPRESSED_TS = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.840.10008.1.2.1.99",  # Deflated explicit VR little endian
)
#: storage classes an obstetric ultrasound study is made of, proposed first for C-GET
PREFERRED_STORAGE = (
    "1.2.840.10008.5.1.4.1.1.6.1",  # US Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # US Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.66",  # Raw Data (scanner vendors keep their data in it)
)
_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.6.",
    "1.2.840.10008.5.1.4.1.1.3.",
    "1.2.840.10008.5.1.4.1.1.7",
)

# DIMSE status codes used here (PS3.4 / PS3.7)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC210
PROCESSING_FAILURE = 0x0110
PENDING = (0xFF00, 0xFF01)
SUBOPS_FAILED = 0xB000


def _contexts(*abstract: str) -> list[PresentationContext]:
    from pynetdicom.presentation import build_context

    return [build_context(a, list(NATIVE_TS)) for a in abstract]


def _status_text(code: int) -> str:
    from pynetdicom.status import code_to_category

    return f"0x{code:04X} ({code_to_category(code)})"


# ---------------------------------------------------------------------------------------
# verify and query
# ---------------------------------------------------------------------------------------
def echo(node: Node, local: LocalAE) -> None:
    """C-ECHO ``node``; :class:`NetworkError` saying what failed."""
    with associate(node, local, _contexts(VERIFICATION)) as assoc:
        status = assoc.send_c_echo()
        if "Status" not in status:
            raise association_lost(node, "the echo", None, local)
        if status.Status != SUCCESS:
            raise NetworkError(
                f"{node.address} answered the echo with status {_status_text(status.Status)}."
            )


def find(
    node: Node, local: LocalAE, query: Dataset, cancel: CancelToken | None = None
) -> list[Dataset]:
    """The identifiers a Study Root C-FIND with ``query`` matches."""
    out: list[Dataset] = []
    with associate(node, local, _contexts(STUDY_ROOT_FIND), cancel=cancel) as assoc:
        for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
            if "Status" not in status:
                raise association_lost(node, "the search", cancel, local)
            code = int(status.Status)
            if code in PENDING:
                if identifier is not None:
                    out.append(identifier)
                continue
            if code != SUCCESS:
                comment = str(status.get("ErrorComment", "")) or "no comment"
                raise NetworkError(
                    f"{node.address} refused the search.",
                    why=f"C-FIND status {_status_text(code)}: {comment}",
                    fix="Search with fewer or simpler criteria (dates as YYYYMMDD).",
                )
    return out


# ---------------------------------------------------------------------------------------
# receiving instances (C-GET here, C-MOVE via the listener)
# ---------------------------------------------------------------------------------------
def _uids(event: Any) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of a C-STORE request's data set, read from its
    first elements only."""
    from pydicom.filereader import read_dataset

    request = event.request
    cx = event.context
    ts = cx.transfer_syntax
    raw: io.BytesIO = request.DataSet
    stream: Any = io.BytesIO(raw.getbuffer())
    if ts == "1.2.840.10008.1.2.1.99":
        stream = io.BytesIO(zlib.decompress(raw.getvalue(), -zlib.MAX_WBITS))
    ds = read_dataset(
        stream,
        ts.is_implicit_VR,
        ts.is_little_endian,
        stop_when=lambda tag, vr, length: tag > 0x0020000E,
    )
    study = str(ds.get("StudyInstanceUID", "")).strip()
    series = str(ds.get("SeriesInstanceUID", "")).strip()
    sop = str(ds.get("SOPInstanceUID", "") or request.AffectedSOPInstanceUID).strip()
    return study, series, sop


def file_parts(event: Any) -> list[Any]:
    """The received instance as a DICOM file (preamble, meta, data set), in pieces that
    share the received buffer instead of copying it."""
    from pydicom.filewriter import write_file_meta_info

    meta = io.BytesIO()
    meta.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(meta, event.file_meta, enforce_standard=True)  # type: ignore[arg-type]
    return [meta.getvalue(), event.request.DataSet.getbuffer()]


@dataclass
class Tally:
    """What a receiving handler did, counted across threads."""

    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    refused: int = 0
    nbytes: int = 0
    disk_error: OSError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, item: StoredInstance) -> None:
        with self._lock:
            self.nbytes += item.nbytes
            if item.outcome.value == "stored":
                self.stored += 1
            elif item.outcome.value == "duplicate":
                self.duplicates += 1
            else:
                self.conflicts += 1

    @property
    def received(self) -> int:
        return self.stored + self.duplicates + self.conflicts


def store_handler(
    route: Callable[[str], StudyStore | None],
    tally: Tally,
    on_stored: Callable[[StoredInstance, Any], None] | None = None,
) -> Callable[[Any], int]:
    """An ``evt.EVT_C_STORE`` handler writing each instance into the store ``route``
    picks for its study UID (``None``: refuse). Returns the DIMSE status: success for a
    stored or duplicate instance, 0xA700 when the disk is full, 0xC210 for a data set that
    cannot be read."""

    def handle(event: Any) -> int:
        try:
            study, series, sop = _uids(event)
        except Exception as exc:
            log.warning("refused a C-STORE data set that cannot be read: %s", exc)
            with tally._lock:
                tally.refused += 1
            return CANNOT_UNDERSTAND
        if not (is_uid(study) and is_uid(series) and is_uid(sop)):
            log.warning("refused a C-STORE data set without valid study/series/instance UIDs")
            with tally._lock:
                tally.refused += 1
            return CANNOT_UNDERSTAND + 1
        store = route(study)
        if store is None:
            with tally._lock:
                tally.refused += 1
            return PROCESSING_FAILURE
        try:
            sop_class = str(event.request.AffectedSOPClassUID or "")
            item = store.write_parts(study, series, sop, file_parts(event), sop_class)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                with tally._lock:
                    tally.disk_error = exc
                    tally.refused += 1
                log.error("disk full while storing an instance: %s", exc.strerror)
                return OUT_OF_RESOURCES
            log.error("could not store an instance: %s", exc)
            with tally._lock:
                tally.disk_error = tally.disk_error or exc
                tally.refused += 1
            return OUT_OF_RESOURCES
        tally.add(item)
        if on_stored is not None:
            try:
                on_stored(item, event)
            except Exception:  # a listener's callback must not fail the store
                log.exception("callback after storing an instance failed")
        return SUCCESS

    return handle


def get_contexts(sop_classes: Iterable[str] = ()) -> tuple[list[PresentationContext], list[Any]]:
    """Presentation contexts and SCP role items for a C-GET: the Study Root GET model and
    storage contexts for ``sop_classes``, or (none given) for the classes an obstetric
    study is made of (:data:`PREFERRED_STORAGE`). Image classes get one context per
    transfer syntax, so the node sends what it holds without transcoding.

    Fewer contexts make a faster association (128 cost about 30 ms more than 3 here);
    :func:`fetal_viewer.core.net.retrieve.retrieve_study` asks again for instances of other
    classes, naming them, when the node reports sub-operations that failed."""
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
    from pynetdicom.presentation import build_context

    wanted = list(dict.fromkeys(sop_classes or PREFERRED_STORAGE))
    contexts = [build_context(STUDY_ROOT_GET, list(NATIVE_TS))]
    for uid in wanted:
        if uid.startswith(_IMAGE_PREFIXES):
            contexts.append(build_context(uid, list(NATIVE_TS)))
            contexts.extend(build_context(uid, [ts]) for ts in COMPRESSED_TS)
        else:
            contexts.append(build_context(uid, list(NATIVE_TS)))
    if len(contexts) > MAX_CONTEXTS:
        raise NetworkError(
            "The study holds too many kinds of objects for one association.",
            why=f"{len(wanted)} SOP classes need {len(contexts)} presentation contexts; "
            f"at most {MAX_CONTEXTS} fit",
            fix="Retrieve it by C-MOVE (--move), where the node proposes what it sends.",
        )
    roles = []
    for uid in wanted:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = uid
        role.scu_role = False
        role.scp_role = True
        roles.append(role)
    return contexts, roles


@dataclass(frozen=True)
class SubOps:
    """The node's final count of C-GET/C-MOVE sub-operations."""

    status: int
    completed: int
    failed: int
    warning: int
    comment: str = ""


def _subops(status: Dataset) -> SubOps:
    return SubOps(
        status=int(status.Status),
        completed=int(status.get("NumberOfCompletedSuboperations", 0) or 0),
        failed=int(status.get("NumberOfFailedSuboperations", 0) or 0),
        warning=int(status.get("NumberOfWarningSuboperations", 0) or 0),
        comment=str(status.get("ErrorComment", "") or ""),
    )


def _drain(
    responses: Iterable[tuple[Dataset, Dataset | None]],
    node: Node,
    local: LocalAE,
    what: str,
    on_pending: Callable[[int], None],
    cancel: CancelToken | None,
) -> SubOps:
    final: SubOps | None = None
    for status, _identifier in responses:
        if "Status" not in status:
            raise association_lost(node, what, cancel, local)
        code = int(status.Status)
        if code in PENDING:
            remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
            done = sum(
                int(status.get(k, 0) or 0)
                for k in (
                    "NumberOfCompletedSuboperations",
                    "NumberOfFailedSuboperations",
                    "NumberOfWarningSuboperations",
                )
            )
            on_pending(done + remaining)
            continue
        final = _subops(status)
    if final is None:
        raise association_lost(node, what, cancel, local)
    if cancel is not None and cancel.cancelled:
        raise CancelledError()
    return final


def retrieve_query(study_uid: str, series: dict[str, list[str]] | None = None) -> list[Dataset]:
    """C-GET/C-MOVE identifiers: the whole study, or the given instances of each series."""
    from pydicom.dataset import Dataset

    if series is None:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study_uid
        return [ds]
    out = []
    for series_uid, sops in series.items():
        for i in range(0, len(sops), 200):  # keep each identifier well under a PDU
            ds = Dataset()
            ds.QueryRetrieveLevel = "IMAGE"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = sops[i : i + 200]
            out.append(ds)
    return out


def c_get(
    node: Node,
    local: LocalAE,
    queries: Sequence[Dataset],
    handler: Callable[[Any], int],
    *,
    sop_classes: Iterable[str] = (),
    on_total: Callable[[int], None],
    cancel: CancelToken | None = None,
) -> list[SubOps]:
    """Run C-GETs on one association; instances arrive through ``handler``."""
    from pynetdicom import evt

    contexts, roles = get_contexts(sop_classes)
    results = []
    with associate(
        node,
        local,
        contexts,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, handler)],
        cancel=cancel,
    ) as assoc:
        for i, query in enumerate(queries):
            responses = assoc.send_c_get(query, STUDY_ROOT_GET, msg_id=i + 1)
            results.append(_drain(responses, node, local, "the retrieve (C-GET)", on_total, cancel))
    return results


def c_move(
    node: Node,
    local: LocalAE,
    queries: Sequence[Dataset],
    destination: str,
    *,
    on_total: Callable[[int], None],
    cancel: CancelToken | None = None,
) -> list[SubOps]:
    """Run C-MOVEs to ``destination`` on one association."""
    results = []
    with associate(node, local, _contexts(STUDY_ROOT_MOVE), cancel=cancel) as assoc:
        for i, query in enumerate(queries):
            responses = assoc.send_c_move(query, destination, STUDY_ROOT_MOVE, msg_id=i + 1)
            results.append(
                _drain(responses, node, local, "the retrieve (C-MOVE)", on_total, cancel)
            )
    return results


# ---------------------------------------------------------------------------------------
# sending
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outgoing:
    """One instance to send: a file, or a data set in memory."""

    sop_class: str
    transfer_syntax: str
    payload: Path | Dataset
    label: str


def c_store(
    node: Node,
    local: LocalAE,
    items: Sequence[Outgoing],
    *,
    on_sent: Callable[[Outgoing, int], None],
    cancel: CancelToken | None = None,
) -> None:
    """C-STORE ``items`` on as few associations as their presentation contexts allow;
    ``on_sent(item, status)`` after each. A status other than success or warning is
    passed on, not raised: the caller reports which instances failed."""
    from pynetdicom.presentation import build_context

    pairs = list(dict.fromkeys((it.sop_class, it.transfer_syntax) for it in items))
    for start in range(0, len(pairs), MAX_CONTEXTS):
        chunk = pairs[start : start + MAX_CONTEXTS]
        contexts = [build_context(sop, [ts]) for sop, ts in chunk]
        wanted = set(chunk)
        with associate(node, local, contexts, cancel=cancel) as assoc:
            accepted = {
                (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                for cx in assoc.accepted_contexts
            }
            for item in items:
                key = (item.sop_class, item.transfer_syntax)
                if key not in wanted:
                    continue
                if cancel is not None and cancel.cancelled:
                    raise CancelledError()
                if key not in accepted:
                    on_sent(item, -1)
                    continue
                status = assoc.send_c_store(item.payload)
                if "Status" not in status:
                    raise association_lost(node, "sending", cancel, local)
                on_sent(item, int(status.Status))
