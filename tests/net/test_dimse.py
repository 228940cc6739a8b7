"""DIMSE against a real Orthanc: echo and what fails, C-FIND, C-GET, C-MOVE to our
listener, resuming a partial study, a node killed mid-transfer, cancel."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from fetal_viewer.core.io import open_path
from fetal_viewer.core.net import pacs, retrieve
from fetal_viewer.core.net.listener import Listener
from fetal_viewer.core.net.nodes import LocalAE, Node
from fetal_viewer.core.net.storage import StoredInstance, StudyStore
from fetal_viewer.core.progress import CancelToken
from fetal_viewer.errors import CancelledError, NetworkError
from tests.net.conftest import OUR_AE, OrthancServer, Phantoms, copies_of, free_port


def test_echo_and_each_way_it_fails(orthanc: OrthancServer) -> None:
    local = orthanc.local()
    assert pacs.verify(orthanc.node(), local) < 5
    with pytest.raises(NetworkError, match="unknown called AE title") as exc:
        pacs.verify(Node("o", "NOT_ORTHANC", "127.0.0.1", orthanc.dicom_port), local)
    assert "Called AE title not recognised" in exc.value.why
    assert "NOT_ORTHANC" in exc.value.fix
    with pytest.raises(NetworkError, match="Cannot reach") as exc:
        pacs.verify(Node("o", "ORTHANC", "127.0.0.1", free_port(), timeout_s=3), local)
    assert "connection refused" in exc.value.why
    with pytest.raises(NetworkError, match="Cannot reach") as exc:
        pacs.verify(Node("o", "ORTHANC", "no-such-host.invalid", 104, timeout_s=3), local)
    assert "unknown" in exc.value.why
    # the web port answers HTTP, not DICOM
    with pytest.raises(NetworkError, match="did not complete the association") as exc:
        pacs.verify(Node("o", "ORTHANC", "127.0.0.1", orthanc.http_port, timeout_s=3), local)
    assert "not DICOM" in exc.value.why


@pytest.fixture
def garbage_peer() -> Iterator[int]:
    """A TCP server that answers every connection with bytes that are not DICOM."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(range(256)) * 8)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


def test_a_peer_sending_garbage_is_a_clear_error(garbage_peer: int, orthanc: OrthancServer) -> None:
    node = Node("junk", "JUNK", "127.0.0.1", garbage_peer, timeout_s=3)
    with pytest.raises(NetworkError, match="did not complete the association"):
        pacs.verify(node, orthanc.local())
    with pytest.raises(NetworkError):
        pacs.find_studies(node, orthanc.local(), pacs.StudyQuery())


def test_a_peer_that_never_answers_times_out_with_a_clear_error(orthanc: OrthancServer) -> None:
    """A host that takes the TCP connection and then says nothing (a hung PACS, a firewall
    that swallows the traffic) ends at the node's timeout with a message, not a hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stay_silent() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    try:
        node = Node("hung", "HUNG", "127.0.0.1", int(server.getsockname()[1]), timeout_s=2)
        start = time.monotonic()
        with pytest.raises(NetworkError, match="did not complete the association") as exc:
            pacs.verify(node, orthanc.local())
        assert "within 2 s" in exc.value.why
        assert time.monotonic() - start < 15
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_find_studies_then_series(orthanc: OrthancServer, phantoms: Phantoms) -> None:
    node, local = orthanc.node(), orthanc.local()
    everything = pacs.find_studies(node, local, pacs.StudyQuery())
    assert set(phantoms.studies) <= {m.study_uid for m in everything}
    dates = [m.study_date for m in everything]
    assert dates == sorted(dates, reverse=True)  # newest first
    uid = phantoms.still_study()
    pid = phantoms.patients[uid]
    (by_id,) = pacs.find_studies(node, local, pacs.StudyQuery(patient_id=pid))
    assert by_id.study_uid == uid
    assert by_id.n_instances == len(phantoms.studies[uid])
    assert by_id.modalities == ("US",)
    # names match anywhere, whatever the case, unless the user writes wildcards
    number = pid.split("-")[-1]
    assert [
        m.study_uid
        for m in pacs.find_studies(node, local, pacs.StudyQuery(patient_name=f"case{number}"))
    ] == [uid]
    assert pacs.find_studies(node, local, pacs.StudyQuery(patient_name="CASE*")) == []
    assert [
        m.study_uid
        for m in pacs.find_studies(node, local, pacs.StudyQuery(accession=by_id.accession))
    ] == [uid]
    day = by_id.study_date
    assert day is not None
    in_range = pacs.find_studies(
        node, local, pacs.StudyQuery(date_from=day, date_to=day + dt.timedelta(days=1))
    )
    assert uid in {m.study_uid for m in in_range}
    assert all(m.study_date is not None and day <= m.study_date for m in in_range)
    assert pacs.find_studies(node, local, pacs.StudyQuery(modality="CT")) == []
    (series,) = pacs.find_series(node, local, uid)
    assert series.modality == "US"
    assert series.n_instances == len(phantoms.studies[uid])
    # Orthanc answers echoes from anyone but aborts a search from an AE title it does not know
    with pytest.raises(NetworkError, match="ended during the search") as exc:
        pacs.find_studies(node, LocalAE("STRANGER"), pacs.StudyQuery())
    assert "does not know (STRANGER)" in exc.value.why


def _by_instance(store: StudyStore, uid: str) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in store.study_dir(uid).glob("*/*.dcm")}


def test_get_keeps_the_bytes_and_resumes_a_partial_study(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    store = StudyStore(tmp_path / "cache")
    uid = phantoms.still_study()
    seen: list[tuple[int, int]] = []
    result = retrieve.retrieve_study(
        orthanc.node(),
        orthanc.local(),
        uid,
        store=store,
        progress=lambda d, t, m="": seen.append((d, t)),
    )
    n = len(phantoms.studies[uid])
    assert result.complete and result.held == result.new == result.expected == n
    assert seen[-1] == (n, n) and len(seen) >= n
    files = _by_instance(store, uid)
    for src in phantoms.studies[uid]:  # what Orthanc sent is what was uploaded, data set
        ds = dcmread(src)  # for data set (Orthanc may add its own file meta)
        got = dcmread(store.study_dir(uid) / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm")
        assert got.PixelData == ds.PixelData and got.PatientID == ds.PatientID
    state = store.state(uid)
    assert state is not None and state.complete and state.received == n and state.method == "get"

    # a broken earlier transfer: two instances lost; retrieving again fetches only those
    lost = sorted(store.study_dir(uid).glob("*/*.dcm"))[:2]
    for p in lost:
        p.unlink()
    again = retrieve.retrieve_study(orthanc.node(), orthanc.local(), uid, store=store)
    assert again.complete and again.new == 2 and again.received == 2 and again.held == n
    assert _by_instance(store, uid) == files
    loaded = open_path(store.study_dir(uid))
    assert not loaded.problems
    (patient,) = loaded.patients
    assert patient.identity.patient_id == phantoms.patients[uid]
    assert sum(len(s) for s in patient.studies[0].series) == n


def test_get_asks_again_for_classes_it_did_not_propose(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    """A C-GET proposes the classes of an obstetric study; an object of another class (here
    one labelled CT) fails that sub-operation, and the retrieve asks again naming it."""
    us, other = copies_of(phantoms.studies[phantoms.still_study()][0], 2, tmp_path / "src")
    ds = dcmread(other)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.save_as(other, enforce_file_format=True)
    orthanc.upload([us, other])
    uid = str(ds.StudyInstanceUID)
    store = StudyStore(tmp_path / "cache")
    result = retrieve.retrieve_study(orthanc.node(), orthanc.local(), uid, store=store)
    assert result.complete and result.held == 2 and result.expected == 2
    classes = {
        str(dcmread(p, stop_before_pixels=True).SOPClassUID)
        for p in store.study_dir(uid).glob("*/*.dcm")
    }
    assert "1.2.840.10008.5.1.4.1.1.2" in classes


def test_get_brings_jpeg_as_jpeg(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    store = StudyStore(tmp_path)
    uid = phantoms.jpeg_study()
    result = retrieve.retrieve_study(orthanc.node(), orthanc.local(), uid, store=store)
    assert result.complete
    for p in store.study_dir(uid).glob("*/*.dcm"):
        assert (
            dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID
            == "1.2.840.10008.1.2.4.50"
        )
    frame = open_path(store.study_dir(uid)).patients[0].studies[0].series[0].frame(0)
    assert frame.shape == (96, 128, 3) and frame.max() > 0


def test_move_goes_to_our_listener_not_its_inbox(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    uid = phantoms.cine_study()
    inbox = StudyStore(tmp_path / "inbox")
    cache = StudyStore(tmp_path / "cache")
    arrived: list[StoredInstance] = []
    with Listener(orthanc.local(), inbox, allowed_callers=["ORTHANC"]) as listener:
        result = retrieve.retrieve_study(
            orthanc.node(),
            orthanc.local(),
            uid,
            store=cache,
            method="move",
            listener=listener,
            on_instance=arrived.append,
        )
    assert result.complete and result.method == "move"
    assert result.held == len(phantoms.studies[uid]) == len(arrived)
    assert cache.held(uid) and not inbox.studies()
    # without a running listener, a temporary one on our port receives
    other = StudyStore(tmp_path / "cache2")
    result = retrieve.retrieve_study(
        orthanc.node(), orthanc.local(), uid, store=other, method="move"
    )
    assert result.complete and other.held(uid) == cache.held(uid)


def test_unknown_study_and_move_to_an_unknown_port(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    store = StudyStore(tmp_path)
    with pytest.raises(NetworkError, match="has no study"):
        retrieve.retrieve_study(orthanc.node(), orthanc.local(), "1.2.3.4.5", store=store)
    with pytest.raises(NetworkError, match="not a Study Instance UID"):
        retrieve.retrieve_study(orthanc.node(), orthanc.local(), "../etc", store=store)
    # our AE title on a port Orthanc does not know: Orthanc cannot send
    local = LocalAE(OUR_AE, free_port(), "127.0.0.1")
    with pytest.raises(NetworkError, match="could not send it to us") as exc:
        retrieve.retrieve_study(
            orthanc.node(), local, phantoms.still_study(), store=store, method="move"
        )
    assert OUR_AE in exc.value.fix and "C-GET" in exc.value.fix
    state = store.state(phantoms.still_study())
    assert state is not None and not state.complete and state.error


def test_node_killed_mid_transfer_keeps_what_arrived_and_resumes(
    make_orthanc: object, phantoms: Phantoms, tmp_path: Path
) -> None:
    server: OrthancServer = make_orthanc()  # type: ignore[operator]
    still = phantoms.studies[phantoms.still_study()][0]
    copies = copies_of(still, 40, tmp_path / "src")
    server.upload(copies)
    uid = str(dcmread(copies[0], stop_before_pixels=True).StudyInstanceUID)
    store = StudyStore(tmp_path / "cache")

    def kill_after_first(item: StoredInstance) -> None:
        if server.proc is not None:
            server.stop(kill=True)

    with pytest.raises(NetworkError, match="ended during the retrieve") as exc:
        retrieve.retrieve_study(
            server.node(timeout=5), server.local(), uid, store=store, on_instance=kill_after_first
        )
    held = store.held(uid)
    assert 1 <= len(held) < 40
    assert "marked incomplete" in exc.value.why
    assert exc.value.fix.endswith("Retrieving the study again fetches only what is missing.")
    state = store.state(uid)
    assert state is not None and not state.complete and state.received == len(held)
    for p in store.study_dir(uid).glob("*/*.dcm"):  # what arrived is whole
        assert dcmread(p).pixel_array.shape == (96, 128, 3)
    with pytest.raises(NetworkError, match="Cannot reach"):
        retrieve.retrieve_study(server.node(timeout=2), server.local(), uid, store=store)

    server.start()
    result = retrieve.retrieve_study(server.node(), server.local(), uid, store=store)
    assert result.complete and result.held == 40 and result.new == 40 - len(held)
    state = store.state(uid)
    assert state is not None and state.complete and not state.error


def test_cancel_stops_the_transfer_and_marks_it_incomplete(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    store = StudyStore(tmp_path)
    uid = phantoms.still_study()
    cancel = CancelToken()
    with pytest.raises(CancelledError):
        retrieve.retrieve_study(
            orthanc.node(),
            orthanc.local(),
            uid,
            store=store,
            cancel=cancel,
            on_instance=lambda item: cancel.cancel(),
        )
    state = store.state(uid)
    assert state is not None and not state.complete and "Cancelled" in state.error
    assert 1 <= len(store.held(uid)) < len(phantoms.studies[uid])
