"""The storage listener: pushes from Orthanc, duplicates, unknown callers, four
associations at once, garbage on the socket, a data set without UIDs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from fetal_viewer.core.net import pacs
from fetal_viewer.core.net.listener import Listener, Received
from fetal_viewer.core.net.nodes import LocalAE, Node
from fetal_viewer.core.net.storage import Outcome, StudyStore
from fetal_viewer.errors import NetworkError
from tests.net.conftest import OUR_AE, OrthancServer, Phantoms, free_port


@pytest.fixture
def listener(orthanc: OrthancServer, tmp_path: Path) -> Iterator[tuple[Listener, list[Received]]]:
    """Our listener on the port Orthanc knows, accepting Orthanc and US_ROOM_1."""
    got: list[Received] = []
    lst = Listener(
        orthanc.local(),
        StudyStore(tmp_path / "inbox", durable=True),
        ["ORTHANC", "US_ROOM_1"],
        got.append,
    )
    lst.start()
    yield lst, got
    lst.stop()


def _as_node(lst: Listener) -> Node:
    return Node("me", OUR_AE, "127.0.0.1", lst.port, timeout_s=5)


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_orthanc_pushes_a_study_into_the_inbox(
    orthanc: OrthancServer, phantoms: Phantoms, listener: tuple[Listener, list[Received]]
) -> None:
    lst, got = listener
    uid = phantoms.still_study()
    orthanc.rest(
        "POST",
        "/modalities/fetalviewer/store",
        json={"Resources": [orthanc.study_id(uid)], "Synchronous": True},
    )
    n = len(phantoms.studies[uid])
    _wait(lambda: len(got) == n)
    assert {r.calling_ae for r in got} == {"ORTHANC"}
    assert all(r.item.outcome is Outcome.STORED and not r.routed for r in got)
    assert lst.store is not None and len(lst.store.held(uid)) == n
    for r in got:
        assert dcmread(r.item.path).StudyInstanceUID == uid
    # pushed again: every instance is a duplicate, nothing is rewritten
    mtimes = {r.item.path: r.item.path.stat().st_mtime_ns for r in got}
    orthanc.rest(
        "POST",
        "/modalities/fetalviewer/store",
        json={"Resources": [orthanc.study_id(uid)], "Synchronous": True},
    )
    _wait(lambda: len(got) == 2 * n)
    assert all(r.item.outcome is Outcome.DUPLICATE for r in got[n:])
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert lst.tally.stored == n and lst.tally.duplicates == n


def test_a_changed_copy_is_kept_aside_never_over_the_held_one(
    orthanc: OrthancServer,
    phantoms: Phantoms,
    listener: tuple[Listener, list[Received]],
    tmp_path: Path,
) -> None:
    lst, got = listener
    src = phantoms.studies[phantoms.cine_study()][0]
    node, local = _as_node(lst), LocalAE("US_ROOM_1")
    assert pacs.send(node, local, [src]).sent == 1
    changed = dcmread(src)
    changed.SeriesDescription = "edited after the first send"
    path = tmp_path / "changed.dcm"
    changed.save_as(path, enforce_file_format=True)
    result = pacs.send(node, local, [path])
    assert result.sent == 1 and not result.failed
    first, second = got
    assert first.item.outcome is Outcome.STORED and second.item.outcome is Outcome.CONFLICT
    assert dcmread(first.item.path).SeriesDescription != "edited after the first send"
    assert dcmread(second.item.path).SeriesDescription == "edited after the first send"


def test_only_configured_callers_unless_any_caller(
    orthanc: OrthancServer,
    phantoms: Phantoms,
    listener: tuple[Listener, list[Received]],
    tmp_path: Path,
) -> None:
    lst, _ = listener
    with pytest.raises(NetworkError, match="does not accept our AE title") as exc:
        pacs.verify(_as_node(lst), LocalAE("STRANGER"))
    assert "Calling AE title not recognised" in exc.value.why
    with pytest.raises(NetworkError, match="unknown called AE title"):
        pacs.verify(Node("me", "NOT_US", "127.0.0.1", lst.port), LocalAE("US_ROOM_1"))
    pacs.verify(_as_node(lst), LocalAE("US_ROOM_1"))
    anyone = Listener(LocalAE(OUR_AE, free_port(), "127.0.0.1"), StudyStore(tmp_path / "any"), None)
    with anyone:
        pacs.verify(_as_node(anyone), LocalAE("STRANGER"))
    with pytest.raises(NetworkError, match="cannot listen") as busy:
        Listener(LocalAE(OUR_AE, lst.port, "127.0.0.1"), None, None).start()
    assert "in use" in busy.value.why


def test_four_associations_at_once(phantoms: Phantoms, tmp_path: Path) -> None:
    from pynetdicom import AE

    files = [p for u in phantoms.studies for p in phantoms.studies[u]][:4]
    got: list[Received] = []
    lst = Listener(
        LocalAE(OUR_AE, free_port(), "127.0.0.1"), StudyStore(tmp_path), None, got.append
    )
    barrier = threading.Barrier(4, timeout=20)
    errors: list[BaseException] = []

    def push(path: Path, k: int) -> None:
        try:
            ds = dcmread(path)
            ae = AE(ae_title=f"US_ROOM_{k}")
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", lst.port, ae_title=OUR_AE)
            assert assoc.is_established
            barrier.wait()  # all four are open at this point
            assert assoc.send_c_store(ds).Status == 0
            barrier.wait()
            assoc.release()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with lst:
        threads = [threading.Thread(target=push, args=(p, k)) for k, p in enumerate(files)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert lst.peak_active >= 4
        _wait(lambda: lst.active == 0)
    assert len(got) == 4 and {r.calling_ae for r in got} == {f"US_ROOM_{k}" for k in range(4)}


def test_garbage_on_the_socket_and_data_sets_without_uids(
    phantoms: Phantoms, tmp_path: Path
) -> None:
    from pynetdicom import AE

    store = StudyStore(tmp_path)
    lst = Listener(LocalAE(OUR_AE, free_port(), "127.0.0.1"), store, None)
    with lst:
        junk_peers = []
        for junk in (b"\x00" * 10, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 64):
            s = socket.create_connection(("127.0.0.1", lst.port), timeout=5)
            s.sendall(junk)
            junk_peers.append(s)
        # while those peers hang on, the listener serves others
        pacs.verify(_as_node(lst), LocalAE("US_ROOM_1"))
        for s in junk_peers:
            s.close()
        # a C-STORE whose data set lacks its UIDs is refused with a failure status
        ds = dcmread(phantoms.studies[phantoms.still_study()][0])
        del ds.StudyInstanceUID
        ae = AE(ae_title="US_ROOM_1")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", lst.port, ae_title=OUR_AE)
        status = assoc.send_c_store(ds)
        assoc.release()
        assert status.Status >= 0xA000
        # still serving
        pacs.verify(_as_node(lst), LocalAE("US_ROOM_1"))
    assert store.studies() == [] and lst.tally.refused == 1


def test_an_inbox_that_cannot_be_written_stops_the_listener_at_its_start(
    tmp_path: Path,
) -> None:
    """Not a listener that answers every image with a refusal: it does not start, and
    says why and what to do."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    listener = Listener(
        LocalAE(OUR_AE, free_port(), "127.0.0.1"), StudyStore(blocker / "inbox"), None
    )
    with pytest.raises(NetworkError, match="inbox folder cannot be written") as err:
        listener.start()
    assert "Choose a folder" in err.value.fix and not listener.running
