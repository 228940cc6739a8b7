"""DICOMweb with ``dicomweb-client``: QIDO-RS search, WADO-RS retrieve, STOW-RS store.

Every call goes through :func:`_call`, which turns what ``requests`` raises into a
:class:`NetworkError` that says what failed: connection refused, unknown host, timeout,
HTTP 401/403 (authentication), 404 (wrong URL or no such study) or a server error.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from fetal_viewer.core.net.nodes import Node
from fetal_viewer.core.progress import CancelToken
from fetal_viewer.errors import CancelledError, NetworkError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger("fetal_viewer.core.net")
T = TypeVar("T")
#: instances per STOW-RS request
STOW_BATCH = 16


def client(node: Node) -> Any:
    import requests
    from dicomweb_client.api import DICOMwebClient

    if node.kind != "dicomweb":
        raise NetworkError(f"{node.address} is a DIMSE node, not a DICOMweb one.")
    session = requests.Session()
    c = DICOMwebClient(url=node.url, session=session, timeout=node.timeout_s)
    # its retrying wrapper retries every exception up to 5 times with exponential waits:
    # a refused connection would take half a minute to report
    c.set_http_retry_params(retry=False)
    return c


def _call(node: Node, what: str, fn: Callable[[], T]) -> T:
    import requests

    from fetal_viewer.core.net.association import probe

    try:
        return fn()
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        if code in (401, 403):
            why, fix = (
                f"HTTP {code}: the server wants credentials or refuses them",
                "Ask the administrator for access; this version sends no credentials.",
            )
        elif code == 404:
            url = str(exc.request.url) if exc.request is not None else node.url
            why, fix = (
                f"HTTP 404 Not Found for {url}",
                "Check the node's URL: it must be the DICOMweb root (e.g. "
                "http://host:8042/dicom-web), and the study must exist.",
            )
        else:
            why, fix = (
                f"HTTP {code}: {exc}",
                "Try again later, or ask the server's administrator.",
            )
        raise NetworkError(f"{node.address}: {what} failed.", why=why, fix=fix) from exc
    except requests.Timeout as exc:
        raise NetworkError(
            f"{node.address}: {what} timed out.",
            why=f"no answer within {node.timeout_s:g} s",
            fix="Check that the server is up; raise the node's timeout on a slow link.",
        ) from exc
    except requests.ConnectionError as exc:
        parsed = urlparse(node.url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        reason = probe(parsed.hostname or "", port, min(node.timeout_s, 5.0))
        raise NetworkError(
            f"{node.address}: {what} failed: the server cannot be reached"
            if reason
            else f"{node.address}: the connection broke during {what}.",
            why=reason if reason is not None else f"{type(exc).__name__}: {exc}",
            fix="Check the URL, that the server runs, and that no firewall blocks it.",
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        # dicomweb-client raises these on bodies it cannot parse: not a DICOMweb service
        raise NetworkError(
            f"{node.address}: {what} got an answer that is not DICOMweb.",
            why=f"{type(exc).__name__}: {exc}",
            fix="Check that the URL is the DICOMweb root of the server.",
        ) from exc


def verify(node: Node) -> None:
    """One QIDO-RS search (limit 1): the server answers DICOMweb at that URL."""
    _call(node, "the search", lambda: client(node).search_for_studies(limit=1))


def _datasets(found: list[dict[str, Any]]) -> list[Dataset]:
    from pydicom.dataset import Dataset

    return [Dataset.from_json(item) for item in found]


def find_studies(node: Node, filters: dict[str, str], fields: Sequence[str]) -> list[Dataset]:
    c = client(node)
    return _datasets(
        _call(
            node,
            "the study search",
            lambda: c.search_for_studies(search_filters=filters, fields=list(fields)),
        )
    )


def find_series(node: Node, study_uid: str, fields: Sequence[str]) -> list[Dataset]:
    c = client(node)
    return _datasets(
        _call(
            node,
            "the series search",
            lambda: c.search_for_series(study_instance_uid=study_uid, fields=list(fields)),
        )
    )


def find_instances(node: Node, study_uid: str, series_uid: str) -> list[Dataset]:
    c = client(node)
    return _datasets(
        _call(
            node,
            "the instance search",
            lambda: c.search_for_instances(
                study_instance_uid=study_uid, series_instance_uid=series_uid, get_remaining=True
            ),
        )
    )


def encode(ds: Dataset) -> bytes:
    """A data set as the bytes of a DICOM file."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def iter_instances(
    node: Node,
    study_uid: str,
    wanted: dict[str, list[str]] | None,
    cancel: CancelToken | None,
) -> Iterator[Dataset]:
    """WADO-RS: every instance of each series (``wanted`` is ``None``), or the listed
    instances of each series."""
    c = client(node)
    if wanted is None:
        series = find_series(node, study_uid, ["SeriesInstanceUID"])
        for s in series:
            yield from _series(node, c, study_uid, str(s.SeriesInstanceUID), cancel)
        return
    for series_uid, sops in wanted.items():
        for sop in sops:
            if cancel is not None and cancel.cancelled:
                raise CancelledError()
            yield _call(node, "the retrieve", _retrieve_one(c, study_uid, series_uid, sop))


def _retrieve_one(c: Any, study: str, series: str, sop: str) -> Callable[[], Dataset]:
    return lambda: c.retrieve_instance(study, series, sop)


def _series(
    node: Node, c: Any, study_uid: str, series_uid: str, cancel: CancelToken | None
) -> Iterator[Dataset]:
    it: Iterator[Dataset] = _call(
        node, "the retrieve", lambda: iter(c.iter_series(study_uid, series_uid))
    )
    while True:
        if cancel is not None and cancel.cancelled:
            raise CancelledError()
        ds: Dataset | None = _call(node, "the retrieve", lambda: next(it, None))
        if ds is None:
            return
        yield ds


def _stow(c: Any, batch: list[Dataset]) -> Callable[[], Any]:
    return lambda: c.store_instances(batch)


def store(
    node: Node,
    datasets: Sequence[Dataset],
    on_batch: Callable[[int, list[str]], None],
    cancel: CancelToken | None = None,
) -> None:
    """STOW-RS in batches; ``on_batch(n_sent, failed_sop_uids)`` after each."""
    c = client(node)
    for i in range(0, len(datasets), STOW_BATCH):
        if cancel is not None and cancel.cancelled:
            raise CancelledError()
        batch = list(datasets[i : i + STOW_BATCH])
        rsp: Any = _call(node, "storing (STOW-RS)", _stow(c, batch))
        failed = [
            str(item.get("ReferencedSOPInstanceUID", "?"))
            for item in (rsp.get("FailedSOPSequence", []) if rsp is not None else [])
        ]
        on_batch(len(batch), failed)
