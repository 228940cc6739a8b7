"""A real PACS for the network tests: Debian's Orthanc (with its DICOMweb plugin) on free
loopback ports, with a temporary storage folder and a generated configuration that knows
our listener's AE title (so C-MOVE and pushes reach it), filled with phantom studies.

The tests skip, saying why, when Orthanc is not installed (``packaging/system-deps.sh``
installs it). Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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


def _need_orthanc() -> None:
    if not (Path(ORTHANC).is_file() and os.access(ORTHANC, os.X_OK)):
        pytest.skip("Orthanc is not installed (packaging/system-deps.sh installs it)")


@dataclass(frozen=True)
class Phantoms:
    """The phantom data set uploaded into the session's Orthanc."""

    folder: Path
    studies: dict[str, list[Path]]  # study UID -> files
    patients: dict[str, str]  # study UID -> patient ID

    def cine_study(self) -> str:
        return next(uid for uid, files in self.studies.items() if files[0].name == "cine.dcm")

    def still_study(self) -> str:
        """The uncompressed study with the most still images."""
        stills = {
            u: f
            for u, f in self.studies.items()
            if f[0].name.startswith("still") and self.patients[u] != "PHANTOM-JPEG"
        }
        return max(stills, key=lambda u: len(stills[u]))

    def jpeg_study(self) -> str:
        return next(u for u, p in self.patients.items() if p == "PHANTOM-JPEG")


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Phantoms:
    """Five phantom patients (one per class, center A, 128 x 96 frames) as DICOM."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from fetal_viewer.core.phantoms import generate_dataset

    folder = tmp_path_factory.mktemp("phantoms")
    generate_dataset(folder, patients_per_class=1, centers=1, seed=7, fmt="dicom", size=(128, 96))
    # one JPEG Baseline study, as many scanners send: it must arrive without transcoding
    jpeg = tmp_path_factory.mktemp("phantoms-jpeg")
    generate_dataset(jpeg, 1, ["B"], seed=8, fmt="dicom", size=(128, 96), jpeg_quality=90)
    study_uid = generate_uid()
    (folder / "jpeg").mkdir()
    for i, src in enumerate(sorted(jpeg.rglob("*.dcm"))[:3]):
        ds = dcmread(src)
        ds.PatientID, ds.PatientName = "PHANTOM-JPEG", "PHANTOM^JPEG"
        ds.AccessionNumber = ds.StudyID = "PHJPEG"
        ds.StudyInstanceUID = study_uid
        ds.save_as(folder / "jpeg" / f"jpeg{i}.dcm", enforce_file_format=True)
    studies: dict[str, list[Path]] = {}
    patients: dict[str, str] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = dcmread(path, stop_before_pixels=True)
        studies.setdefault(str(ds.StudyInstanceUID), []).append(path)
        patients[str(ds.StudyInstanceUID)] = str(ds.PatientID)
    return Phantoms(folder, studies, patients)


@pytest.fixture(scope="session")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, phantoms: Phantoms
) -> Iterator[OrthancServer]:
    """The session's Orthanc, holding every phantom study."""
    _need_orthanc()
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"), listener_port=free_port())
    server.start()
    try:
        server.upload([p for files in phantoms.studies.values() for p in files])
        yield server
    finally:
        server.stop(kill=True)  # its storage is thrown away: no need to wait for a clean stop


@pytest.fixture
def make_orthanc(tmp_path: Path) -> Iterator[Any]:
    """A factory of private Orthanc servers (for tests that kill them), stopped at the end."""
    _need_orthanc()
    servers: list[OrthancServer] = []

    def make() -> OrthancServer:
        server = OrthancServer(tmp_path / f"orthanc{len(servers)}", listener_port=free_port())
        server.start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop(kill=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Card of a randomly initialised ResNet34 at 64 px input (fixed seed)."""
    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    card = ModelCard(name="tiny-random", version="0.0.1", input_size=64)
    return save_checkpoint(build_resnet34(5), card, tmp_path_factory.mktemp("tiny-model"))


def copies_of(path: Path, n: int, folder: Path) -> list[Path]:
    """``n`` copies of one DICOM file as the instances of one series of a new study of a
    new patient (tests that add to the session's Orthanc never change what others count)."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    patient = f"COPY-{study[-8:]}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        ds = dcmread(path)
        ds.StudyInstanceUID = study
        ds.PatientID, ds.PatientName = patient, f"COPY^{study[-8:]}"
        ds.AccessionNumber = ds.StudyID = study[-8:]
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        p = folder / f"copy{i:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append(p)
    return out
