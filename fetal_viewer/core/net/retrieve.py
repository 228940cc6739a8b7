"""Retrieve a study into the local cache: C-GET, C-MOVE (to our listener) or WADO-RS,
with progress and cancel, raising :class:`~fetal_viewer.errors.NetworkError` with
what/why/fix.

A retrieve writes the study under ``<cache>/pacs/<StudyInstanceUID>/`` (see
:mod:`fetal_viewer.core.net.storage`) and keeps a small state file there: incomplete
until every instance the node listed is on disk. Retrieving an incomplete study again
fetches only the instances still missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fetal_viewer.core.net import dimse, web
from fetal_viewer.core.net.listener import Listener
from fetal_viewer.core.net.nodes import LocalAE, Node
from fetal_viewer.core.net.pacs import check_study_uid, find_instances, find_study
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

METHODS = ("get", "move")


def cache_root() -> Path:
    """Where retrieved studies go: ``<user cache>/pacs``."""
    from fetal_viewer.core.appdirs import cache_dir

    return cache_dir() / "pacs"


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
    check_study_uid(study_uid)
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

            def c_get(
                instances: dict[str, list[str]] | None, sop_classes: set[str]
            ) -> list[dimse.SubOps]:
                return dimse.c_get(
                    node,
                    local,
                    dimse.retrieve_query(study_uid, instances),
                    handler,
                    sop_classes=sop_classes,
                    on_total=announced,
                    cancel=cancel,
                )

            subops = c_get(wanted, classes)
            if any(s.failed for s in subops):
                # instances of classes we did not propose: ask for those, naming them
                remote = find_instances(node, local, study_uid)
                again, expected, classes = _missing(remote, store.held(study_uid))
                if again and classes:
                    subops = c_get(again, classes)
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
            exc.fix = (exc.fix + " " if exc.fix else "") + (
                "Retrieving the study again fetches only what is missing."
            )
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
