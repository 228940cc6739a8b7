"""The storage SCP: receives what an ultrasound machine or a PACS pushes (C-STORE), and what
a C-MOVE sends to the app.

A pynetdicom AE serves in its own threads (one per association, up to
:data:`MAX_ASSOCIATIONS` at once). Each instance is written by
:func:`fetal_viewer.core.net.dimse.store_handler` into the inbox
(:class:`~fetal_viewer.core.net.storage.StudyStore`, fsync'd before the peer hears
success), unless a running retrieve claimed its study with :meth:`Listener.route`. Only
the configured calling AE titles are accepted unless the listener is told to accept any;
the called AE title must be the app's own. Owners hear about arrivals through
``on_received`` (the GUI turns it into a signal), called from the association's thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fetal_viewer.core.net.association import close_failed_sockets
from fetal_viewer.core.net.dimse import VERIFICATION, Tally, store_handler
from fetal_viewer.core.net.nodes import LocalAE
from fetal_viewer.core.net.storage import StoredInstance, StudyStore
from fetal_viewer.errors import NetworkError

log = logging.getLogger("fetal_viewer.core.net")

MAX_ASSOCIATIONS = 16


@dataclass(frozen=True)
class Received:
    """One instance the listener took in."""

    item: StoredInstance
    calling_ae: str
    routed: bool  # True when a retrieve (C-MOVE) claimed it


#: how long stop() waits for associations to close
STOP_TIMEOUT_S = 10.0


class Listener:
    """A storage SCP on ``local.bind_address:local.port`` as ``local.ae_title``.

    ``allowed_callers`` lists the calling AE titles accepted; ``None`` accepts any.
    ``store`` is the inbox; ``None`` refuses whatever no :meth:`route` claims."""

    def __init__(
        self,
        local: LocalAE,
        store: StudyStore | None,
        allowed_callers: Iterable[str] | None,
        on_received: Callable[[Received], None] | None = None,
    ) -> None:
        self.local = local
        self.store = store
        self.allowed_callers = None if allowed_callers is None else sorted(set(allowed_callers))
        self.on_received = on_received
        self.tally = Tally()
        self._routes: dict[str, tuple[StudyStore, Callable[[StoredInstance], None] | None]] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._ae: Any = None
        self._open: set[int] = set()
        #: most associations open at once since start
        self.peak_active = 0

    # ---- lifecycle ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port listened on (the real one when started on port 0)."""
        if self._server is None:
            return self.local.port
        return int(self._server.server_address[1])

    def start(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        if self._server is not None:
            return
        if self.store is not None:
            self.store.check_writable()
        close_failed_sockets()
        ae = AE(ae_title=self.local.ae_title)
        ae.maximum_associations = MAX_ASSOCIATIONS
        ae.network_timeout = 60
        ae.acse_timeout = ae.dimse_timeout = 30
        ae.maximum_pdu_size = 0
        ae.require_called_aet = True
        if self.allowed_callers is not None:
            ae.require_calling_aet = list(self.allowed_callers)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(VERIFICATION)
        handler = store_handler(self._route, self.tally, self._stored)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, handler),
            (evt.EVT_ESTABLISHED, self._opened),
            (evt.EVT_RELEASED, self._closed),
            (evt.EVT_ABORTED, self._closed),
        ]
        try:
            server = ae.start_server(
                (self.local.bind_address, self.local.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            ae.shutdown()
            raise self._bind_error(exc) from exc
        self._ae, self._server = ae, server
        log.info("listening as %s on port %d", self.local.ae_title, self.port)

    def _bind_error(self, exc: OSError) -> NetworkError:
        where = f"{self.local.bind_address}:{self.local.port}"
        if exc.errno == errno.EADDRINUSE:
            why = f"port {self.local.port} is in use by another program (another listener?)"
            fix = "Stop that program, or choose another port (and tell the PACS)."
        elif exc.errno == errno.EACCES:
            why = f"ports below 1024 need administrator rights (port {self.local.port})"
            fix = "Use a port of 1024 or above, e.g. 11112, and configure the PACS with it."
        else:
            why = f"{exc.strerror or exc}"
            fix = "Check the listener's address and port in the node settings."
        return NetworkError(f"The DICOM listener cannot listen on {where}.", why=why, fix=fix)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop listening: abort open associations, close the port. Waits at most
        ``timeout`` seconds for a peer that does not let go; whatever was stored stays
        stored (each instance is written before its C-STORE is acknowledged)."""
        if self._server is None:
            return
        ae, self._server, self._ae = self._ae, None, None
        # the AE aborts its open associations first, then shuts its servers down
        stopper = threading.Thread(target=ae.shutdown, name="listener-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            log.warning(
                "listener: an association did not close within %g s; stopped anyway", timeout
            )

    def __enter__(self) -> Listener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- routing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def route(
        self,
        study_uid: str,
        store: StudyStore,
        on_stored: Callable[[StoredInstance], None] | None = None,
    ) -> Iterator[None]:
        """While inside, instances of ``study_uid`` go to ``store`` (a C-MOVE's target)."""
        with self._lock:
            if study_uid in self._routes:
                raise NetworkError(
                    "This study is already being retrieved.",
                    fix="Wait for the running retrieve to finish or cancel it.",
                )
            self._routes[study_uid] = (store, on_stored)
        try:
            yield
        finally:
            with self._lock:
                self._routes.pop(study_uid, None)

    def _route(self, study_uid: str) -> StudyStore | None:
        with self._lock:
            routed = self._routes.get(study_uid)
        return routed[0] if routed is not None else self.store

    def _stored(self, item: StoredInstance, event: Any) -> None:
        with self._lock:
            routed = self._routes.get(item.study_uid)
        if routed is not None and routed[1] is not None:
            routed[1](item)
        if self.on_received is not None:
            calling = str(event.assoc.requestor.ae_title)
            self.on_received(Received(item, calling, routed is not None))

    @property
    def active(self) -> int:
        """Associations open now."""
        with self._lock:
            return len(self._open)

    def _opened(self, event: Any) -> None:
        with self._lock:
            self._open.add(id(event.assoc))
            self.peak_active = max(self.peak_active, len(self._open))

    def _closed(self, event: Any) -> None:
        with self._lock:
            self._open.discard(id(event.assoc))
