"""A real PACS for the network tests: Debian's Orthanc (with its DICOMweb plugin) on free
loopback ports, with a temporary storage folder and a generated configuration that knows
our listener's AE title (so C-MOVE and pushes reach it), filled with phantom studies.

The tests skip, saying why, when Orthanc is not installed (``packaging/system-deps.sh``
installs it). Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.net.orthanc import (
    DICOMWEB_PLUGIN,
    ORTHANC,
    ORTHANC_AE,
    OUR_AE,
    OrthancServer,
    free_port,
)

__all__ = ["DICOMWEB_PLUGIN", "ORTHANC_AE", "OUR_AE", "OrthancServer", "free_port"]


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


# the main window factory of the GUI tests, for the PACS dock's test
from tests.gui.conftest import make_main_window  # noqa: E402, F401
