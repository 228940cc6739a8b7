"""`fetal-viewer pacs` in subprocesses against Orthanc: nodes, verify, find, get (and a
full disk), listen, report --send."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from fetal_viewer.core.net.nodes import NodeConfig, save_config
from tests.net.conftest import OUR_AE, OrthancServer, Phantoms, free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["FETAL_VIEWER_CONFIG_DIR"] = str(tmp_path / "config")
    e["FETAL_VIEWER_CACHE_DIR"] = str(tmp_path / "cache")
    e["FETAL_VIEWER_DATA_DIR"] = str(tmp_path / "data")
    return e


def cli(env: dict[str, str], *args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "pacs", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        **kw,  # type: ignore[call-overload]
    )


def configure(env: dict[str, str], orthanc: OrthancServer) -> None:
    """The settings `nodes add` and `nodes local` write (written here directly: each CLI
    call costs a second of start-up)."""
    cfg = (
        NodeConfig(local=orthanc.local())
        .with_node(orthanc.node())
        .with_node(orthanc.web_node(name="web"))
    )
    save_config(cfg, Path(env["FETAL_VIEWER_CONFIG_DIR"]) / "dicom-nodes.json")


def test_nodes_verify_find_get(
    env: dict[str, str], orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    r = cli(
        env,
        "nodes",
        "add",
        "orthanc",
        "--ae",
        "ORTHANC",
        "--host",
        "127.0.0.1",
        "--port",
        orthanc.dicom_port,
    )
    assert r.returncode == 0, r.stderr
    bad = cli(env, "nodes", "add", "x", "--ae", "A" * 17, "--host", "h", "--port", "104")
    assert bad.returncode == 1 and "17 characters" in bad.stderr and "Traceback" not in bad.stderr
    configure(env, orthanc)
    r = cli(env, "verify", "orthanc")
    assert r.returncode == 0 and "C-ECHO OK" in r.stdout
    assert (
        cli(
            env, "nodes", "add", "dead", "--ae", "X", "--host", "127.0.0.1", "--port", free_port()
        ).returncode
        == 0
    )
    r = cli(env, "verify", "dead")
    assert r.returncode == 1 and "connection refused" in r.stderr and "Traceback" not in r.stderr
    assert "ERROR" not in r.stderr  # pynetdicom's own log lines stay quiet
    assert cli(env, "nodes", "remove", "dead").returncode == 0
    listed = json.loads(cli(env, "nodes", "list", "--json").stdout)
    assert [n["name"] for n in listed["nodes"]] == ["orthanc", "web"]

    uid = phantoms.still_study()
    pid = phantoms.patients[uid]
    found = json.loads(cli(env, "find", "orthanc", "--patient-id", pid, "--json").stdout)
    assert [s["study_uid"] for s in found["studies"]] == [uid]
    text = cli(env, "find", "web", "--patient-id", pid).stdout
    assert uid in text and pid not in text  # pseudonyms unless --show-phi

    r = cli(env, "get", "orthanc", uid, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["complete"] and got["held"] == len(phantoms.studies[uid])
    assert Path(got["folder"]).parent == tmp_path / "cache" / "pacs"


def test_full_disk_keeps_what_arrived_and_the_next_get_completes(
    env: dict[str, str], orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes the disk refuse the second instance, as a
    full disk would; the cine (the biggest file) is over it."""
    configure(env, orthanc)
    uid = phantoms.still_study()
    sizes = sorted(p.stat().st_size for p in phantoms.studies[uid])
    limit = sizes[0] + 4096  # one still fits, two do not (state files are small)
    out = tmp_path / "full"
    uid_cine = phantoms.cine_study()
    big = phantoms.studies[uid_cine][0].stat().st_size
    assert big > limit

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = cli(env, "get", "orthanc", uid_cine, "--out", out, "--no-progress", preexec_fn=limited)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "disk is full" in r.stderr and "Traceback" not in r.stderr
    state = json.loads((out / uid_cine / ".transfer.json").read_text())
    assert not state["complete"] and "disk" in state["error"]
    assert not list((out / ".partial").iterdir())  # no half-written file left behind
    r = cli(env, "get", "orthanc", uid_cine, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    (path,) = (out / uid_cine).glob("*/*.dcm")
    assert (
        dcmread(path).pixel_array.shape[0] == dcmread(phantoms.studies[uid_cine][0]).NumberOfFrames
    )


@pytest.mark.parametrize("stop_with", ["SIGINT", "SIGTERM"])
def test_listen_receives_a_push_until_interrupted(
    env: dict[str, str], orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path, stop_with: str
) -> None:
    configure(env, orthanc)
    # as a background job of a non-interactive shell starts it: with SIGINT ignored,
    # so Python raises no KeyboardInterrupt; Ctrl-C and a service manager's SIGTERM must
    # still stop it, with the tally
    launcher = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            launcher,
            "-m",
            "fetal_viewer",
            "pacs",
            "listen",
            "--inbox",
            str(tmp_path / "inbox"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"listening as {OUR_AE}" in first and "ORTHANC" in first
        uid = phantoms.still_study()
        orthanc.rest(
            "POST",
            "/modalities/fetalviewer/store",
            json={"Resources": [orthanc.study_id(uid)], "Synchronous": True},
        )
        n = len(phantoms.studies[uid])
        lines = [proc.stdout.readline() for _ in range(n)]
        assert all(line.startswith("from ORTHANC:") and "(stored)" in line for line in lines)
    finally:
        proc.send_signal(getattr(signal, stop_with))
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"stopped: {n} stored" in rest
    assert len(list((tmp_path / "inbox" / uid).glob("*/*.dcm"))) == n
