"""The AI result as DICOM: a TID 1500 Comprehensive SR and heatmap secondary captures,
checked by dciodvfy, read back by pydicom, highdicom and this app, and sent to Orthanc and
retrieved again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydicom import dcmread

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.io import open_path
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.core.net import pacs, retrieve
from fetal_viewer.core.net.storage import StudyStore
from fetal_viewer.core.report_dicom.analysis import (
    FrameResult,
    KeyFrame,
    StudyAnalysis,
    analyse_study,
)
from fetal_viewer.core.report_dicom.objects import build_results, read_sources, write_results
from fetal_viewer.core.report_dicom.sr import build_sr, read_sr
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
    analysis = analyse_study(study, predictor, max_key_frames=2)
    n = len(study.series[0])
    assert len(analysis.frames) == n and len(analysis.key_frames) == 1  # one series
    assert analysis.weights_sha256 == predictor.card.weights_sha256 != ""
    sources = read_sources([source])
    objects = build_results(analysis, sources)
    files = write_results(objects, tmp_path / "out")
    for f in files:
        assert dciodvfy_errors(f) == [], f.name

    sr = dcmread(files[0])
    src = dcmread(source, stop_before_pixels=True)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert (sr.StudyInstanceUID, sr.PatientID) == (src.StudyInstanceUID, src.PatientID)
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    back = read_sr(files[0])
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
    # ... and never reads its own capture as a scan, nor counts it for the patient
    assert series.header_modality == "FV-AI"
    own = predictor.predict(series.frames(), modality=series.header_modality)
    assert own.foreign_modality is not None and "own AI result" in own.foreign_modality
    assert not own.assessable().any()

    # to the PACS and back: the same objects in new series of the study
    sent = pacs.send(orthanc.node(), orthanc.local(), files)
    assert sent.sent == len(files) and not sent.failed
    store = StudyStore(tmp_path / "cache")
    got = retrieve.retrieve_study(orthanc.node(), orthanc.local(), uid, store=store)
    assert got.complete
    back_sr = store.path_for(uid, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    assert read_sr(back_sr) == back
    modalities = {s.modality for s in pacs.find_series(orthanc.node(), orthanc.local(), uid)}
    assert {"US", "SR", "OT"} <= modalities


def _guarded(
    predictor: Predictor, folder: Path, frames: list[np.ndarray], percentile: float
) -> Predictor:
    """The tiny model with a domain guard fitted on ``frames`` themselves: about
    ``percentile`` % of them fall inside its threshold (none with 0)."""
    import shutil

    from fetal_viewer.core.model.guard import DomainGuard, fit_guard
    from fetal_viewer.core.training.guard_fit import store_guard

    card = shutil.copytree(predictor.loaded.card_path.parent, folder) / "card.json"
    feats = predictor.predict(frames, with_features=True).features
    assert feats is not None
    guard = fit_guard(feats, np.arange(len(frames)) % 2, feats, percentile=max(percentile, 50))
    if percentile == 0:  # nothing passes
        guard = DomainGuard(guard.means, guard.precision, -1.0, 0.0, guard.n_train, guard.n_val)
    store_guard(SimpleNamespace(card_path=card), guard)  # type: ignore[arg-type]  # needs only the card
    return Predictor(load_checkpoint(card), backend="torch")


def test_the_domain_guard_withholds_frames_outside_it(
    phantoms: Phantoms, predictor: Predictor, tmp_path: Path
) -> None:
    from fetal_viewer.core.model.aggregation import NO_ASSESSABLE, aggregate_assessable

    (patient,) = open_path(phantoms.studies[phantoms.cine_study()][0]).patients
    study = patient.studies[0]
    series = study.series[0]
    frames = [series.frame(i) for i in range(len(series))]
    sources = read_sources([series.source])

    guarded = _guarded(predictor, tmp_path / "half", frames, 50)
    analysis = analyse_study(study, guarded)
    inside = [f.in_domain for f in analysis.frames]
    assert True in inside and False in inside and analysis.domain_threshold is not None
    probs = np.array([f.probs for f in analysis.frames])
    want = aggregate_assessable(probs, np.array(inside), guarded.card.aggregation)
    assert want is not None and analysis.study_probs is not None
    np.testing.assert_allclose(analysis.study_probs, want, atol=1e-5)
    (key,) = analysis.key_frames
    assert analysis.frames[key.frame_number - 1].in_domain
    files = write_results(build_results(analysis, sources), tmp_path / "a")
    assert all(dciodvfy_errors(f) == [] for f in files)
    back = read_sr(files[0])
    for got, frame in zip(back.frames, analysis.frames):
        assert got[3] is frame.in_domain and got[4] == pytest.approx(frame.domain_score)
        assert bool(got[2]) is frame.in_domain  # the class output of a flagged frame is withheld
    assert f"domain guard threshold {analysis.domain_threshold:.6g}" in back.algorithm_parameters
    assert "cine rule: over 50% of a file's frames out, all out" in back.algorithm_parameters
    assert "header rule: Modality other than OT, SC, US, all out" in back.algorithm_parameters

    nobody = analyse_study(study, _guarded(predictor, tmp_path / "none", frames, 0))
    assert nobody.study_probs is None and nobody.top is None and nobody.key_frames == ()
    files = write_results(build_results(nobody, sources), tmp_path / "b")
    assert len(files) == 1 and dciodvfy_errors(files[0]) == []
    back = read_sr(files[0])
    assert back.study_probs == {} and NO_ASSESSABLE in back.text


def test_domain_guard_fields_and_multi_series_study(phantoms: Phantoms, tmp_path: Path) -> None:
    """Analysis values given by hand (a model with a domain guard), on a study of stills."""
    uid = phantoms.still_study()
    sources = read_sources(phantoms.studies[uid])
    uids = list(sources)
    classes = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")
    frames = tuple(
        FrameResult(u, 1, (0.1, 0.6, 0.1, 0.1, 0.1), in_domain=i != 1, domain_score=3.0 + i)
        for i, u in enumerate(uids)
    )
    image = dcmread(phantoms.studies[uid][0]).pixel_array
    heat = np.zeros(image.shape[:2], np.float32)
    heat[20:60, 30:90] = 1.0
    analysis = StudyAnalysis(
        model_name="guarded",
        model_version="2",
        weights_sha256="ab" * 32,
        classes=classes,
        aggregation="mean",
        study_probs=(0.1, 0.6, 0.1, 0.1, 0.1),
        frames=frames,
        key_frames=(KeyFrame(uids[0], 1, "anencephaly", 0.6, image, heat),),
        domain_threshold=4.5,
        logit_offsets=(("normal", 1.75),),
        second_look="head-closeup",
    )
    files = write_results(build_results(analysis, sources), tmp_path)
    assert all(dciodvfy_errors(f) == [] for f in files)
    back = read_sr(files[0])
    assert [(f[3], f[4]) for f in back.frames] == [(i != 1, 3.0 + i) for i in range(len(uids))]
    assert "domain guard threshold 4.5" in back.algorithm_parameters
    assert "normal logit offset +1.75" in back.algorithm_parameters  # the operating point
    assert any(p.startswith("second look head-closeup") for p in back.algorithm_parameters)
    assert [f[1] for f in back.frames] == [None] * len(uids)  # single-frame sources
    sc = dcmread(files[1])
    assert "ReferencedFrameNumber" not in sc.SourceImageSequence[0]
    with pytest.raises(StudyLoadError, match="exists already"):
        write_results(build_results(analysis, sources), tmp_path)
    other = dict(sources)
    other["9.9.9"] = dcmread(phantoms.studies[phantoms.cine_study()][0], stop_before_pixels=True)
    with pytest.raises(StudyLoadError, match="one study"):
        build_sr(analysis, other)
