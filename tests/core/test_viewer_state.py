"""The viewer's and the reading window's headless state, without Qt: selection, frames
wanted and decoded, AI requests and stale results, the heatmap class and layer, the AI
panel's rendering, the reading page's step, image, AI and decision, and Help > About."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.cam.overlay import HEATMAP_FLOOR, echo_mask, heatmap_layer
from fetal_viewer.core.io import open_path
from fetal_viewer.core.io.study import Patient, Series
from fetal_viewer.core.model.preprocess import PreprocessSpec, preprocess
from fetal_viewer.core.viewer.ai import AIStatus, AIView
from fetal_viewer.core.viewer.overlay import HeatmapOverlay, OverlaySettings
from fetal_viewer.core.viewer.results import FrameResult, ModelInfo, series_key
from fetal_viewer.core.viewer.state import ViewerState
from fetal_viewer.errors import DataError

CLASSES = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")


def fan(rows: int = 64, cols: int = 80, seed: int = 0) -> np.ndarray:
    """(rows, cols, 3) uint8: speckle inside a fan, black around it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    inside = np.abs(xx - cols / 2) < (yy + 4) * 0.7
    grey = np.where(inside, rng.integers(40, 220, (rows, cols)), 0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def patients(tmp_path: Path) -> list[Patient]:
    """Two patients (one folder each) of two plain images, through the study loader."""
    for p in ("a", "b"):
        for i in range(2):
            write_png(tmp_path / p / f"{i}.png", fan(seed=10 * ord(p) + i))
    out = [open_path(tmp_path / p).patients for p in ("a", "b")]
    return [patient for found in out for patient in found]


def model(input_size: int = 64) -> ModelInfo:
    return ModelInfo("tiny", "1", "ab" * 32, CLASSES, "research use only", "card.json", "mean", 64)


def result_for(frame: np.ndarray, top: int, empty: int | None = None) -> FrameResult:
    """A result whose class ``c`` map is hot in cell ``c % 4`` (cells of a 2x2 grid)."""
    probs = np.full(5, 0.05, np.float32)
    probs[top] = 0.8
    cams = np.zeros((5, 2, 2), np.float32)
    for c in range(5):
        if c != empty:
            cams[c].flat[c % 4] = 1.0
    geometry = preprocess(frame, PreprocessSpec(input_size=64)).geometry
    return FrameResult(probs, cams, geometry)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def on(self, name: str):  # type: ignore[no-untyped-def]
        return lambda value: self.seen.append((name, value))

    def names(self) -> list[str]:
        return [n for n, _ in self.seen]


def first_series(patient: Patient) -> Series:
    return patient.studies[0].series[0]


def test_frames_wanted_then_decoded_and_stale_decodes_ignored(patients) -> None:
    state = ViewerState()
    rec = Recorder()
    state.selection_changed.connect(rec.on("selection"))
    state.frame_shown.connect(rec.on("frame"))
    p = patients[0]
    series = first_series(p)
    state.select(p, p.studies[0], series)
    assert rec.names() == ["selection"] and state.series is series and state.index == 0
    assert not state.want_frame(0, None)  # not decoded yet: pending
    assert state.pending == (series_key(series), 0)
    other = first_series(patients[1])
    assert not state.frame_decoded(series_key(other), 0, series.frame(0))  # another series
    assert not state.frame_decoded(series_key(series), 1, series.frame(0))  # another frame
    assert state.frame is None and "frame" not in rec.names()
    frame = series.frame(0)
    assert state.frame_decoded(series_key(series), 0, frame)
    assert state.frame is frame and state.pending is None and rec.seen[-1] == ("frame", 0)
    assert state.want_frame(0, frame)  # a cached frame is shown at once


def test_results_stale_by_request_series_or_frame_are_dropped(patients) -> None:
    state = ViewerState()
    views: list[AIView] = []
    state.ai_changed.connect(views.append)
    p = patients[0]
    series = first_series(p)
    state.select(p, p.studies[0], series)
    assert state.ai_wanted() is None  # no model yet
    state.set_model(model())
    assert views[-1].status is AIStatus.PENDING and "2×2 grid" in views[-1].notes[0]
    frame = series.frame(0)
    state.want_frame(0, frame)
    want = state.ai_wanted()
    assert want is not None and (want.series, want.index, want.method) == (series, 0, "gradcam")
    state.request_sent(7)
    res = result_for(frame, top=2)
    key = series_key(series)
    assert not state.offer_result(6, key, 0, res)  # an older request
    assert not state.offer_result(7, ("elsewhere", "uid"), 0, res)  # another series
    assert not state.offer_result(7, key, 1, res)  # another frame
    assert state.result is None and state.overlay.layer is None
    assert state.offer_result(7, key, 0, res)
    view = views[-1]
    assert view.shown and view.top_label == "encephalocele" and view.caption == "Frame 1"
    assert view.heat_class == 2 and not view.heat_empty
    # the layer is the top class's map, coloured over echo content only
    layer = state.overlay.layer
    expected = heatmap_layer(res.heatmap(2), "jet", HEATMAP_FLOOR, echo_mask(frame))
    assert layer is not None and np.array_equal(layer, expected)
    assert layer[..., 3].any() and not layer[..., 3][~echo_mask(frame)].any()


def test_heat_class_pick_cycle_and_empty_map(patients) -> None:
    state = ViewerState()
    p = patients[0]
    series = first_series(p)
    state.select(p, p.studies[0], series)
    state.set_model(model())
    frame = series.frame(0)
    state.want_frame(0, frame)
    state.set_result(0, result_for(frame, top=0, empty=3))
    top_layer = state.overlay.layer
    picks: list[int | None] = []
    state.heat_pick_changed.connect(picks.append)
    state.cycle_heat_class(1)  # top class -> normal (the same map here)
    state.cycle_heat_class(1)  # -> anencephaly
    assert picks == [0, 1] and state.heat_class() == 1
    assert state.overlay.layer is not None and not np.array_equal(state.overlay.layer, top_layer)
    state.set_heat_pick(3)
    view = state.ai_view()
    assert view.heat_class == 3 and view.heat_empty
    state.cycle_heat_class(-1)
    state.cycle_heat_class(3)  # 2 -> 3 -> 4 -> top class
    assert state.heat_pick is None
    state.set_heat_pick(99)  # no such class: the top class
    assert state.heat_pick is None


def test_heat_class_resets_to_the_top_class_when_the_study_changes(patients) -> None:
    """A class picked for one study says nothing about the next (a "normal" map shown on a
    study whose top class is rachischisis)."""
    state = ViewerState()
    state.set_model(model())
    first, second = patients
    state.select(first, first.studies[0], first_series(first))
    state.set_heat_pick(0)
    state.select(first, first.studies[0], first.studies[0].series[1])  # same study
    assert state.heat_pick == 0
    picks: list[int | None] = []
    state.heat_pick_changed.connect(picks.append)
    state.select(second, second.studies[0], first_series(second))
    assert state.heat_pick is None and picks == [None]


def test_method_note_patient_summary_and_job(patients) -> None:
    state = ViewerState()
    p = patients[0]
    state.select(p, p.studies[0], first_series(p))
    assert state.patient_summary(lambda s: None) == state.patient_summary(lambda s: None)
    state.set_model(model())
    views: list[AIView] = []
    state.ai_changed.connect(views.append)
    state.set_method("gradcam-stitch")
    assert "4×4 grid" in views[-1].notes[0]
    nothing = state.patient_summary(lambda s: None)
    assert nothing.probs is None and "Not analysed yet" in nothing.note
    rows = {
        series_key(s): np.eye(5, dtype=np.float32)[[i]] for i, s in enumerate(p.studies[0].series)
    }
    summary = state.patient_summary(lambda s: (rows[series_key(s)], [0], np.ones(1, bool)))
    assert summary.note == "2 of 2 frames, mean rule"
    np.testing.assert_allclose(summary.probs, [0.5, 0.5, 0, 0, 0])
    assert state.can_analyse
    jobs: list[int | None] = []
    state.job_changed.connect(jobs.append)
    state.set_job(4)
    assert not state.can_analyse
    state.set_job(None)
    assert jobs == [4, None]


def _frame_with_a_model(patients):  # type: ignore[no-untyped-def]
    """A viewer state on the first series with a model and frame 0 asked for; returns the
    state, the series, the frame, a result of it without a guard (top class rachischisis)
    and the list the state's AI views are appended to."""
    state = ViewerState()
    p = patients[0]
    series = first_series(p)
    state.select(p, p.studies[0], series)
    state.set_model(model())
    frame = fan()
    assert state.want_frame(0, frame)
    views: list[AIView] = []
    state.ai_changed.connect(views.append)
    return state, series, frame, result_for(frame, top=4), views


def test_a_frame_outside_the_domain_is_withheld_until_shown_anyway(patients, caplog) -> None:
    """The guard's verdict: no bars and no heat for a flagged frame, a deliberate and logged
    Show anyway; an in-domain frame says so; a model without a guard says it has none."""
    import logging

    from fetal_viewer.core.model.guard import WITHHELD_NOTE

    state, series, frame, base, views = _frame_with_a_model(patients)
    flagged = FrameResult(base.probs, base.cams, base.geometry, 9.5, 4.0)
    state.set_result(0, flagged)
    view = views[-1]
    assert view.status is AIStatus.WITHHELD and view.probs is None and not view.shown
    assert view.action == "Show anyway" and view.in_domain is False
    assert WITHHELD_NOTE in view.message and "9.50 > threshold 4.00" in view.domain
    assert state.overlay.layer is None  # no heat either
    with caplog.at_level(logging.INFO, logger="fetal_viewer.core.viewer.state"):
        state.reveal()
    assert views[-1].status is AIStatus.SHOWN and views[-1].top_label == "rachischisis"
    assert "shown anyway" in views[-1].caption and state.overlay.layer is not None
    assert any("although outside the model's domain" in r.message for r in caplog.records)
    assert str(series.source) not in caplog.text  # no file names in the log
    # another frame of the series is withheld again: showing one is not showing all
    state.want_frame(1, frame)
    state.set_result(1, flagged)
    assert views[-1].status is AIStatus.WITHHELD
    state.set_result(1, FrameResult(base.probs, base.cams, base.geometry, 1.0, 4.0))
    assert views[-1].shown and views[-1].domain.startswith("Inside what this model")
    state.set_result(1, base)  # a model without a guard
    assert views[-1].shown and views[-1].domain == "No domain check for this model."


def test_a_series_that_is_not_ultrasound_is_withheld_by_its_header(patients, caplog) -> None:
    """The header rule in the viewer: a frame of an MR series is withheld whatever the
    guard scores, and by a model without a guard too; the panel names the modality, and
    Show anyway is logged with the reason, no file name and no score it does not have."""
    import logging
    from dataclasses import replace

    state, series, frame, base, views = _frame_with_a_model(patients)  # base: no guard
    mr = replace(base, foreign_modality="MR (magnetic resonance)")
    state.set_result(0, mr)
    view = views[-1]
    assert view.status is AIStatus.WITHHELD and view.probs is None and view.in_domain is False
    assert view.message == (
        "Not ultrasound: the series is MR (magnetic resonance), and this model reads "
        "ultrasound only: its output is withheld."
    )
    assert state.overlay.layer is None
    with caplog.at_level(logging.INFO, logger="fetal_viewer.core.viewer.state"):
        state.reveal()
    assert views[-1].shown and views[-1].top_label == "rachischisis"
    assert "not ultrasound: MR (magnetic resonance)" in caplog.text
    assert str(series.source) not in caplog.text
    # inside the guard's domain, the header still withholds it
    state.want_frame(1, frame)
    state.set_result(1, replace(mr, domain_score=0.5, domain_threshold=1.0))
    assert views[-1].status is AIStatus.WITHHELD and "Not ultrasound" in views[-1].domain


def test_patient_level_aggregates_in_domain_frames_only(patients) -> None:
    state = ViewerState()
    p = patients[0]
    state.select(p, p.studies[0], first_series(p))
    state.set_model(model())
    probs = np.eye(5, dtype=np.float32)[[0, 4]]
    some = state.patient_summary(lambda s: (probs, [0, 1], np.array([False, True])))
    assert some.probs is not None and int(np.argmax(some.probs)) == 4
    assert "2 outside the model's domain left out" in some.note  # one per series
    none = state.patient_summary(lambda s: (probs, [0, 1], np.zeros(2, bool)))
    assert none.probs is None and none.note.startswith("No assessable frames")


def test_overlay_settings_recolour_and_refuse_unknown_colormaps() -> None:
    overlay = HeatmapOverlay(OverlaySettings(opacity=0.3))
    settings: list[OverlaySettings] = []
    layers: list[object] = []
    overlay.settings_changed.connect(settings.append)
    overlay.layer_changed.connect(layers.append)
    frame = fan()
    heat = np.zeros(frame.shape[:2], np.float32)
    heat[20:40, 30:50] = 0.9
    overlay.show(frame, heat)
    jet = overlay.layer
    assert jet is not None and len(layers) == 1
    overlay.update(colormap="inferno")
    assert len(layers) == 2 and not np.array_equal(overlay.layer, jet)
    overlay.step_opacity(0.9)
    overlay.toggle()
    assert settings[-1] == OverlaySettings(False, 1.0, "inferno")
    with pytest.raises(DataError, match="colour map"):
        overlay.update(colormap="rainbow")
    overlay.show(frame, np.zeros((3, 3), np.float32))  # not in the frame's geometry: none
    assert overlay.layer is None and layers[-1] is None


def test_about_names_version_model_and_components(tmp_path, monkeypatch) -> None:
    from fetal_viewer import INTENDED_USE, __version__
    from fetal_viewer.core.viewer.about import about

    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    info = about(model())
    assert (info.version, info.intended_use, info.model) == (__version__, INTENDED_USE, model())
    assert info.log_folder == tmp_path / "logs"
    assert {"numpy", "pydicom"} <= {c.name for c in info.components}
    assert about(None).model is None


def test_viewer_state_imports_no_qt() -> None:
    import subprocess

    code = (
        "import sys, fetal_viewer.core.viewer.state, fetal_viewer.core.viewer.reading;"
        "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken', 'superqt'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------
# the reading page
# ---------------------------------------------------------------------------------------
@pytest.fixture
def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real store with a 2-case sequential study of PNG cases; R1's reading session."""
    from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
    from fetal_viewer.core.store import CaseSpec, open_store

    paths = [write_png(tmp_path / "cases" / f"c{i}.png", fan(seed=i)) for i in range(2)]
    store = open_store(tmp_path / "s.db")
    store.create_study(
        "s",
        design="sequential",
        labels=list(CLASSES),
        seed=3,
        cases=[CaseSpec(str(p), "normal") for p in paths],
    )
    store.add_reader("R1")
    store.enrol("s", "R1")

    def provider(case):  # type: ignore[no-untyped-def]
        heat = np.zeros((64, 80), np.float32)
        heat[20:40, 30:50] = 0.9
        return AIOutput("cd" * 32, dict(zip(CLASSES, (0.1, 0.1, 0.6, 0.1, 0.1))), heat, 64)

    yield ReadingSession(store, "s", "R1", ai_provider=provider)
    store.close()


def test_reading_state_step_image_ai_and_decision(session) -> None:
    from fetal_viewer.core.readerstudy.coordination import load_case_image
    from fetal_viewer.core.viewer.reading import ReadingState, Submission

    state = ReadingState()
    state.start(session.study)
    ready: list[bool] = []
    views: list[AIView] = []
    state.ready_changed.connect(ready.append)
    state.ai_changed.connect(views.append)
    step = session.begin()
    assert state.show_step(step)  # a new case: its image must be loaded
    assert views[-1].status is AIStatus.NONE  # unaided: blinded, nothing to show
    assert not state.ready and not state.choose(0)  # no image yet: nothing can be chosen
    other = next(c for c in session._cases if c.pseudonym != step.case.pseudonym)
    stale = load_case_image(other.pseudonym, other.source_path, 0)
    assert not state.image_loaded(stale) and state.image is None
    image = load_case_image(step.case.pseudonym, step.case.source_path, 0)
    # the reader sees the field of view only, as the exports crop it
    from fetal_viewer.core.fov import find_fov

    full = fan(seed=int(Path(step.case.source_path).stem[1:]))
    x0, y0, x1, y1 = find_fov(full)
    assert image.box == (x0, y0, x1, y1) and image.full_shape == full.shape[:2]
    np.testing.assert_array_equal(image.frame, full[y0:y1, x0:x1])
    heat = np.arange(full.shape[0] * full.shape[1], dtype=np.float32).reshape(full.shape[:2])
    np.testing.assert_array_equal(image.crop(heat), heat[y0:y1, x0:x1])
    assert image.crop(np.zeros((3, 3), np.float32)) is None
    assert state.image_loaded(image) and state.ready and ready[-1]
    assert state.submission(True) == "Choose a label first (keys 1–5)."
    assert state.choose(2) and state.decision.label == "encephalocele"
    state.set_anomaly(80)
    sub = state.submission(True)
    assert sub == Submission("encephalocele", None, 80, None)  # confidence not set: None
    assert state.overlay.layer is None  # no AI, no heat
    session.submit(sub.label, sub.confidence, sub.anomaly)

    aided = session.begin()
    assert not state.show_step(aided)  # the same case: the image stays
    assert state.aided and not state.ready  # the AI is not shown yet
    assert views[-1].status is AIStatus.PENDING and views[-1].message == "Asking the AI…"
    state.ai_failed()
    assert views[-1].status is AIStatus.FAILED and views[-1].action == "Show the AI again"
    out = session.get_ai()
    assert not state.ai_arrived(other.pseudonym, out)  # for another case: stale
    assert state.ai_arrived(aided.case.pseudonym, out) and state.ready
    view = views[-1]
    assert view.shown and view.top_label == "encephalocele" and view.heat_class == 2
    assert "2×2 grid" in view.notes[0] and ("cd" * 6) in view.caption
    assert state.overlay.layer is not None and state.overlay.layer[..., 3].any()
    # the aided step starts with no label: the unaided one is only the reference
    assert state.decision.label is None and state.reference_label == "encephalocele"
    assert isinstance(state.submission(False), str)
    assert state.choose(0)
    sub = state.submission(False)
    assert isinstance(sub, Submission) and sub.heatmap_visible is False
    state.set_paused(True)
    assert not state.ready and ready[-1] is False
    # paused, the AI goes with the image: nothing to read while the clock is stopped
    assert not views[-1].shown and state.overlay.layer is None
    state.set_paused(False)
    assert views[-1].shown and state.overlay.layer is not None
    state.set_saving(True)
    assert not state.ready


def _aided_view(session, **ai_changes):  # type: ignore[no-untyped-def]
    """A reading state at the first case's aided step, the AI it is shown changed by
    ``ai_changes``; returns the state and the views it emitted."""
    from dataclasses import replace

    from fetal_viewer.core.readerstudy.coordination import load_case_image
    from fetal_viewer.core.viewer.reading import ReadingState

    plain = session.ai_provider
    session.ai_provider = lambda case: replace(plain(case), **ai_changes)
    state = ReadingState()
    state.start(session.study)
    views: list[AIView] = []
    state.ai_changed.connect(views.append)
    step = session.begin()
    state.show_step(step)
    state.image_loaded(load_case_image(step.case.pseudonym, step.case.source_path, 0))
    session.submit("normal", None, 10)
    aided = session.begin()
    state.show_step(aided)
    assert state.ai_arrived(aided.case.pseudonym, session.get_ai())
    return state, views


def test_aided_reveal_withholds_a_flagged_ai_as_the_viewer_does(session) -> None:
    """A flagged AI output: the reading page shows the guard's verdict and no bars or heat
    until the reader asks; the stored aided read says the AI shown was out of domain."""
    state, views = _aided_view(session, domain_score=7.0, domain_threshold=3.0)
    view = views[-1]
    assert view.status is AIStatus.WITHHELD and view.probs is None
    assert "7.00 > threshold 3.00" in view.domain and view.action == "Show anyway"
    assert state.ready  # the reader can answer: the AI said it cannot assess the frame
    assert state.overlay.layer is None
    state.reveal()
    assert views[-1].shown and views[-1].in_domain is False
    assert state.overlay.layer is not None
    assert state.choose(0)
    read = session.submit("normal", None, 10)
    assert read.ai_out_of_domain is True
    stored = session.store.reads(session.study.id)
    assert [r.ai_out_of_domain for r in stored] == [None, True]


def test_aided_read_of_a_case_that_is_not_ultrasound(session, tmp_path: Path) -> None:
    """The header rule in a reader study: the AI of a case whose header is MR is withheld
    (no guard needed), the page says why, and the stored aided read says it was out of
    domain; the headless AI JSON carries the reason."""
    import json

    from fetal_viewer.core.readerstudy.headless import read_ai_json

    state, views = _aided_view(session, foreign_modality="MR (magnetic resonance)")
    view = views[-1]
    assert view.status is AIStatus.WITHHELD and view.probs is None
    assert view.domain.startswith("Not ultrasound: the series is MR (magnetic resonance)")
    assert state.ready and state.choose(0)
    assert session.submit("normal", None, 10).ai_out_of_domain is True
    doc = {"C1": {"model_sha": "s", "probabilities": {"normal": 1.0}, "foreign_modality": "CT"}}
    target = tmp_path / "ai.json"
    target.write_text(json.dumps(doc), encoding="utf-8")
    (out,) = read_ai_json(target).values()
    assert out.foreign_modality == "CT" and out.in_domain is False
