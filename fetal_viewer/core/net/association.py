"""Opening a DIMSE association with pynetdicom, and what went wrong when one fails.

When an association cannot be opened, :func:`associate` says exactly why: the A-ASSOCIATE-RJ
reason (called AE title not recognised, calling AE title not recognised, no reason), no
acceptable presentation context, or, from a plain TCP probe, connection refused, no route
to the host, unknown host name or a timeout.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from fetal_viewer.core.net.nodes import LocalAE, Node
from fetal_viewer.core.progress import CancelToken
from fetal_viewer.errors import CancelledError, NetworkError

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.presentation import PresentationContext


def probe(host: str, port: int, timeout: float) -> str | None:
    """``None`` when a TCP connection opens, else a sentence saying why it does not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"the host name {host!r} is unknown ({exc.strerror})"
    except ConnectionRefusedError:
        return f"connection refused: nothing listens on {host} port {port}"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g} s (timeout)"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"host unreachable: no route to {host} ({exc.strerror})"
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def _uid_name(uid: Any) -> str:
    from pydicom.uid import UID

    return str(UID(str(uid)).name)


def _rejection(assoc: Association, node: Node, local: LocalAE) -> NetworkError:
    rsp = assoc.acceptor.primitive
    reason = str(getattr(rsp, "reason_str", "") or "no reason given")
    result = str(getattr(rsp, "result_str", "") or "")
    source = str(getattr(rsp, "source_str", "") or "")
    diag = getattr(rsp, "diagnostic", None)
    why = f"{result}; source: {source}; reason: {reason}"
    if diag == 0x07 and "Service User" in source:
        fix = (
            f"The node does not know itself as {node.ae_title!r}: check the AE title of "
            f"node {node.name} against the node's own configuration."
        )
        what = f"{node.address} rejected the association: unknown called AE title."
    elif diag == 0x03 and "Service User" in source:
        fix = (
            f"Ask the node's administrator to add our AE title {local.ae_title!r} (this "
            f"computer's address, listener port {local.port}) to its known modalities, or "
            "change our AE title to one it knows."
        )
        what = f"{node.address} rejected the association: it does not accept our AE title."
    else:
        what = f"{node.address} rejected the association."
        fix = (
            "Transient rejections clear up: try again later. Otherwise ask the node's "
            "administrator why it refuses this computer."
        )
    return NetworkError(what, why=why, fix=fix)


def _not_established(assoc: Association, node: Node, local: LocalAE) -> NetworkError:
    if assoc.is_rejected:
        return _rejection(assoc, node, local)
    tcp = probe(node.host, node.port, min(node.timeout_s, 5.0))
    if tcp is not None:
        return NetworkError(
            f"Cannot reach {node.address}.",
            why=tcp,
            fix="Check the host and port of the node, that it is running, and that no "
            "firewall blocks the port.",
        )
    if assoc.accepted_contexts == [] and assoc.rejected_contexts:
        return NetworkError(
            f"{node.address} accepted none of the services asked for.",
            why="every presentation context was rejected: "
            + ", ".join(sorted({_uid_name(cx.abstract_syntax) for cx in assoc.rejected_contexts})),
            fix="The node does not offer this service (e.g. C-GET); try C-MOVE (--move) or "
            "ask its administrator.",
        )
    return NetworkError(
        f"{node.address} did not complete the association.",
        why="the TCP connection opened, but the peer sent no valid DICOM association answer "
        f"within {node.timeout_s:g} s (it aborted, closed the connection or sent something "
        "that is not DICOM)",
        fix="Check that the port belongs to a DICOM service (not a web port), and the AE "
        "titles on both sides.",
    )


def close_failed_sockets() -> None:
    """Make pynetdicom close a socket whose ``shutdown()`` fails.

    pynetdicom 3.0's ``AssociationSocket._shutdown_socket`` calls ``close()`` only after a
    successful ``shutdown()``; a connection that was refused was never connected, its
    shutdown fails, and the socket is left to the garbage collector (a ResourceWarning for
    every refused association). Upstream still has it (pynetdicom commit 81e5319); this
    wraps the method so the socket is closed either way. Idempotent."""
    from pynetdicom import transport

    cls: Any = transport.AssociationSocket
    if getattr(cls._shutdown_socket, "_closes_always", False):
        return

    def _shutdown_socket(self: Any) -> None:
        sock = self.socket
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()

    _shutdown_socket._closes_always = True  # type: ignore[attr-defined]
    cls._shutdown_socket = _shutdown_socket


def _drop_socket(assoc: Any) -> None:
    """Close the association's TCP socket if pynetdicom left it open: after an abort in
    the middle of association (a peer that sent garbage), its state machine waits for the
    peer to close while the association is already killed, and the socket would leak."""
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def associate(
    node: Node,
    local: LocalAE,
    contexts: Sequence[PresentationContext],
    *,
    ext_neg: list[Any] | None = None,
    evt_handlers: list[Any] | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[Association]:
    """An established association with ``node``; released (or aborted) on exit.

    With ``cancel``, a watcher aborts the association as soon as the token is set, so a
    transfer waiting on the network stops at once."""
    from pynetdicom import AE

    if node.kind != "dimse":
        raise NetworkError(f"{node.address} is a DICOMweb node, not a DIMSE one.")
    close_failed_sockets()
    ae = AE(ae_title=local.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = node.timeout_s
    ae.connection_timeout = node.timeout_s
    ae.requested_contexts = list(contexts)
    try:
        assoc = ae.associate(
            node.host,
            node.port,
            ae_title=node.ae_title,
            max_pdu=0,  # no limit on what the peer may send us in one PDU: fewer, larger reads
            ext_neg=ext_neg,
            evt_handlers=evt_handlers,
        )
    except OSError as exc:  # the host name does not resolve
        ae.shutdown()
        raise NetworkError(
            f"Cannot reach {node.address}.",
            why=probe(node.host, node.port, 1.0) or f"{type(exc).__name__}: {exc}",
            fix="Check the host name of the node (or use its IP address).",
        ) from exc
    if not assoc.is_established:
        error = _not_established(assoc, node, local)
        ae.shutdown()
        _drop_socket(assoc)
        raise error
    stop = threading.Event()
    watcher = None
    if cancel is not None:

        def watch() -> None:
            while not stop.wait(0.05):
                if cancel.cancelled:
                    assoc.abort()
                    # a peer's abort wakes a DIMSE wait with (None, None); our own does
                    # not, so the waiting request would sit out dimse_timeout
                    assoc.dimse.msg_queue.put((None, None))
                    return

        watcher = threading.Thread(target=watch, name="dimse-cancel", daemon=True)
        watcher.start()
    try:
        yield assoc
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
        _drop_socket(assoc)


def association_lost(
    node: Node, what: str, cancel: CancelToken | None = None, local: LocalAE | None = None
) -> NetworkError:
    """The error for an association that ended during ``what`` before the node's final
    answer; raises :class:`CancelledError` instead when ``cancel`` is set."""
    if cancel is not None and cancel.cancelled:
        raise CancelledError()
    ours = f" ({local.ae_title})" if local is not None else ""
    return NetworkError(
        f"The association with {node.address} ended during {what}.",
        why="the node aborted it or the connection was lost before the node's final answer: "
        "the node went down or restarted, a network device cut the connection, or the node "
        f"refused the request (a PACS aborts requests from an AE title it does not know{ours})",
        fix="Check that the node is running and knows our AE title, then try again.",
    )
