"""An Orthanc server on free loopback ports with a temporary storage folder and a generated
configuration (our listener's AE title among its modalities, the DICOMweb plugin when
installed). Used by tests/net and benchmarks/bench_pacs.py; no pytest here."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetal_viewer.core.net.nodes import LocalAE, Node

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
OUR_AE = "FETALVIEWER"
ORTHANC_AE = "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OrthancServer:
    """One Orthanc process; ``stop(kill=True)`` kills it as a crash would, ``start()``
    brings it back on the same ports and storage."""

    root: Path
    listener_port: int
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def node(self, timeout: float = 10.0, name: str = "orthanc") -> Node:
        return Node(name, ORTHANC_AE, "127.0.0.1", self.dicom_port, timeout_s=timeout)

    def web_node(self, timeout: float = 10.0, name: str = "orthanc-web") -> Node:
        return Node(name, url=self.dicomweb, timeout_s=timeout)

    def local(self, ae: str = OUR_AE) -> LocalAE:
        return LocalAE(ae_title=ae, port=self.listener_port, bind_address="127.0.0.1")

    def write_config(self) -> Path:
        cfg: dict[str, Any] = {
            "Name": "fetal-viewer-test",
            "StorageDirectory": str(self.root / "db"),
            "IndexDirectory": str(self.root / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AE,
            "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "StorageCompression": False,
            "DicomModalities": {"fetalviewer": [OUR_AE, "127.0.0.1", self.listener_port]},
            "DicomScuTimeout": 10,
            "ConcurrentJobs": 2,
            "HttpTimeout": 30,
        }
        if DICOMWEB_PLUGIN.is_file():
            cfg["Plugins"] = [str(DICOMWEB_PLUGIN)]
            cfg["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def start(self) -> None:
        import requests

        self.root.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited: {(self.root / 'orthanc.log').read_text()[-2000:]}"
                )
            try:
                requests.get(f"{self.url}/system", timeout=1).raise_for_status()
                with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1):
                    return
            except (requests.RequestException, OSError):
                time.sleep(0.05)
        raise RuntimeError("Orthanc did not start within 30 s")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def upload(self, paths: list[Path]) -> list[str]:
        """POST files to ``/instances``; their Orthanc ids."""
        import requests

        ids = []
        for p in paths:
            r = requests.post(f"{self.url}/instances", data=p.read_bytes(), timeout=30)
            r.raise_for_status()
            ids.append(str(r.json()["ID"]))
        return ids

    def rest(self, method: str, path: str, **kw: Any) -> Any:
        import requests

        r = requests.request(method, f"{self.url}{path}", timeout=60, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def study_id(self, study_uid: str) -> str:
        found = self.rest("POST", "/tools/lookup", data=study_uid)
        return next(str(f["ID"]) for f in found if f["Type"] == "Study")
