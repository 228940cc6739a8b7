"""The AI result as DICOM: a TID 1500 Comprehensive SR and heatmap secondary captures,
checked by dciodvfy, read back by pydicom, highdicom and this app, and sent to Orthanc and
retrieved again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.io import open_path
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.core.net import pacs, results
from fetal_viewer.core.net.storage import StudyStore
from fetal_viewer.errors import StudyLoadError
from tests.net.conftest import OrthancServer, Phantoms, copies_of

DCIODVFY = shutil.which("dciodvfy")


def dciodvfy_errors(path: Path) -> list[str]:
    if DCIODVFY is None:
        pytest.skip("dciodvfy is not installed (packaging/system-deps.sh installs dicom3tools)")
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def predictor(tiny_model: Path) -> Predictor:
    return Predictor(load_checkpoint(tiny_model), backend="torch")


def test_cine_result_round_trip(
    phantoms: Phantoms, predictor: Predictor, tmp_path: Path, orthanc: OrthancServer
) -> None:
    # a study of its own on the PACS, which this test adds results to
    (source,) = copies_of(phantoms.studies[phantoms.cine_study()][0], 1, tmp_path / "src")
    orthanc.upload([source])
    (patient,) = open_path(source).patients
    (study,) = patient.studies
    uid = study.uid
    analysis = results.analyse_study(study, predictor, max_key_frames=2)
    n = len(study.series[0])
    assert len(analysis.frames) == n and len(analysis.key_frames) == 1  # one series
    assert analysis.weights_sha256 == predictor.card.weights_sha256 != ""
    sources = results.read_sources([source])
    objects = results.build_results(analysis, sources)
    files = results.write_results(objects, tmp_path / "out")
    for f in files:
        assert dciodvfy_errors(f) == [], f.name

    sr = dcmread(files[0])
    src = dcmread(source, stop_before_pixels=True)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert (sr.StudyInstanceUID, sr.PatientID) == (src.StudyInstanceUID, src.PatientID)
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    back = results.read_sr(files[0])
    assert back.model == "tiny-random 0.0.1"
    assert f"weights sha256 {predictor.card.weights_sha256}" in back.algorithm_parameters
    assert back.study_probs == dict(zip(analysis.classes, analysis.study_probs))
    assert [(f[0], f[1]) for f in back.frames] == [(src.SOPInstanceUID, i + 1) for i in range(n)]
    for got, want in zip(back.frames, analysis.frames):
        assert got[2] == dict(zip(analysis.classes, want.probs))
        assert got[3] is None and got[4] is None  # this model has no domain guard
    assert INTENDED_USE in back.text

    sc = dcmread(files[1])
    key = analysis.key_frames[0]
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"]
    ref = sc.SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert ref.ReferencedFrameNumber == key.frame_number
    pixels = sc.pixel_array
    rows, cols = src.Rows, src.Columns
    assert pixels.shape[1] == cols and pixels.shape[0] > rows  # the frame and a caption below
    assert not np.array_equal(pixels[:rows], key.image)  # the heatmap is on it

    # this app opens the captures as a series of the same patient and study
    opened = open_path(tmp_path / "out")
    (patient,) = opened.patients
    assert patient.identity.patient_id == src.PatientID
    (series,) = patient.studies[0].series
    assert patient.studies[0].uid == uid and series.frame(0).shape == pixels.shape
    assert any("Comprehensive SR" in p.why for p in opened.problems)  # listed, not shown

    # to the PACS and back: the same objects in new series of the study
    sent = pacs.send(orthanc.node(), orthanc.local(), files)
    assert sent.sent == len(files) and not sent.failed
    store = StudyStore(tmp_path / "cache")
    got = pacs.retrieve_study(orthanc.node(), orthanc.local(), uid, store=store)
    assert got.complete
    back_sr = store.path_for(uid, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    assert results.read_sr(back_sr) == back
    modalities = {s.modality for s in pacs.find_series(orthanc.node(), orthanc.local(), uid)}
    assert {"US", "SR", "OT"} <= modalities


def test_domain_guard_fields_and_multi_series_study(phantoms: Phantoms, tmp_path: Path) -> None:
    """Analysis values given by hand (a model with a domain guard), on a study of stills."""
    uid = phantoms.still_study()
    sources = results.read_sources(phantoms.studies[uid])
    uids = list(sources)
    classes = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")
    frames = tuple(
        results.FrameResult(u, 1, (0.1, 0.6, 0.1, 0.1, 0.1), in_domain=i != 1, domain_score=3.0 + i)
        for i, u in enumerate(uids)
    )
    image = dcmread(phantoms.studies[uid][0]).pixel_array
    heat = np.zeros(image.shape[:2], np.float32)
    heat[20:60, 30:90] = 1.0
    analysis = results.StudyAnalysis(
        model_name="guarded",
        model_version="2",
        weights_sha256="ab" * 32,
        classes=classes,
        aggregation="mean",
        study_probs=(0.1, 0.6, 0.1, 0.1, 0.1),
        frames=frames,
        key_frames=(results.KeyFrame(uids[0], 1, "anencephaly", 0.6, image, heat),),
        domain_threshold=4.5,
    )
    files = results.write_results(results.build_results(analysis, sources), tmp_path)
    assert all(dciodvfy_errors(f) == [] for f in files)
    back = results.read_sr(files[0])
    assert [(f[3], f[4]) for f in back.frames] == [(i != 1, 3.0 + i) for i in range(len(uids))]
    assert "domain guard threshold 4.5" in back.algorithm_parameters
    assert [f[1] for f in back.frames] == [None] * len(uids)  # single-frame sources
    sc = dcmread(files[1])
    assert "ReferencedFrameNumber" not in sc.SourceImageSequence[0]
    with pytest.raises(StudyLoadError, match="exists already"):
        results.write_results(results.build_results(analysis, sources), tmp_path)
    other = dict(sources)
    other["9.9.9"] = dcmread(phantoms.studies[phantoms.cine_study()][0], stop_before_pixels=True)
    with pytest.raises(StudyLoadError, match="one study"):
        results.build_sr(analysis, other)
