"""DICOMweb against Orthanc's plugin: QIDO-RS search, WADO-RS retrieve (and resume),
STOW-RS store, and the errors a wrong URL or a dead server give."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from fetal_viewer.core.net import pacs, retrieve
from fetal_viewer.core.net.nodes import Node
from fetal_viewer.core.net.storage import StudyStore
from fetal_viewer.errors import NetworkError
from tests.net.conftest import DICOMWEB_PLUGIN, OrthancServer, Phantoms, copies_of, free_port

pytestmark = pytest.mark.skipif(
    not DICOMWEB_PLUGIN.is_file(), reason="orthanc-dicomweb is not installed"
)


def test_search_retrieve_and_resume(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    node, local = orthanc.web_node(), orthanc.local()
    assert pacs.verify(node, local) < 5
    found = pacs.find_studies(node, local, pacs.StudyQuery())
    assert set(phantoms.studies) <= {m.study_uid for m in found}
    uid = phantoms.cine_study()
    (one,) = pacs.find_studies(node, local, pacs.StudyQuery(patient_id=phantoms.patients[uid]))
    assert one.study_uid == uid and one.modalities == ("US",)
    (series,) = pacs.find_series(node, local, uid)
    assert series.modality == "US"

    store = StudyStore(tmp_path)
    result = retrieve.retrieve_study(node, local, uid, store=store)
    assert result.complete and result.method == "wado" and result.held == len(phantoms.studies[uid])
    (path,) = list(store.study_dir(uid).glob("*/*.dcm"))
    src = dcmread(phantoms.studies[uid][0])
    got = dcmread(path)
    assert got.PixelData == src.PixelData and got.NumberOfFrames == src.NumberOfFrames
    path.unlink()
    again = retrieve.retrieve_study(node, local, uid, store=store)
    assert again.complete and again.new == 1


def test_stow_then_qido_finds_it(
    orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    node, local = orthanc.web_node(), orthanc.local()
    files = copies_of(phantoms.studies[phantoms.still_study()][0], 3, tmp_path)
    result = pacs.send(node, local, files)
    assert result.sent == 3 and not result.failed
    uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    series = {s.series_uid: s for s in pacs.find_series(node, local, uid)}
    new = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    assert series[new].n_instances == 3


def test_wrong_url_and_dead_server(orthanc: OrthancServer) -> None:
    local = orthanc.local()
    with pytest.raises(NetworkError, match="failed") as exc:
        pacs.verify(Node("w", url=f"{orthanc.url}/not-dicom-web"), local)
    assert "404" in exc.value.why and "DICOMweb root" in exc.value.fix
    with pytest.raises(NetworkError, match="cannot be reached") as exc:
        pacs.verify(Node("w", url=f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=3), local)
    assert "connection refused" in exc.value.why
    with pytest.raises(NetworkError, match="has no study"):
        retrieve.retrieve_study(
            orthanc.web_node(), local, "1.2.3.4.5.6", store=StudyStore(Path("/nonexistent"))
        )
