"""Protocol: order, blinding, resume, crossover washout, progress; simulated study;
crash harness; two processes writing at once."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.readerstudy.analysis import analyze, time_saving
from fetal_viewer.core.readerstudy.export import long_rows
from fetal_viewer.core.readerstudy.protocol import (
    AIOutput,
    ReadingSession,
    case_order,
    study_progress,
)
from fetal_viewer.core.readerstudy.simulate import simulate_study
from fetal_viewer.core.store import CaseSpec, Store, open_store, utcnow
from fetal_viewer.errors import ProtocolError

REPO = Path(__file__).resolve().parents[2]
AI = AIOutput("sha256-of-model", {"normal": 0.2, "x": 0.8})


def _study(tmp_path: Path, design: str = "sequential", n: int = 6) -> Store:
    store = open_store(tmp_path / "s.db")
    store.create_study(
        "s",
        design=design,
        labels=["normal", "x"],
        seed=11,
        washout_days=14,
        cases=[CaseSpec(f"/p/{i}.dcm", "x" if i % 2 else "normal") for i in range(n)],
    )
    for r in ("R1", "R2"):
        store.add_reader(r, "radiologist", 3)
        store.enrol("s", r)
    return store


def test_order_is_seeded_per_reader_and_reproducible(tmp_path: Path) -> None:
    store = _study(tmp_path, n=12)
    seeds = {e.reader: e.order_seed for e in store.enrolments("s")}
    cases = store.list_cases("s")
    a1 = [c.id for c in case_order(cases, seeds["R1"])]
    assert a1 == [c.id for c in case_order(list(reversed(cases)), seeds["R1"])]
    assert a1 != [c.id for c in case_order(cases, seeds["R2"])]
    first = ReadingSession(store, "s", "R1").current()
    assert first is not None and first.case.case_id == a1[0]


def test_blinding_and_sequential_flow(tmp_path: Path) -> None:
    store = _study(tmp_path)
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    step = rs.begin()
    assert step is not None and step.condition == "unaided"
    assert not hasattr(step.case, "reference_label")
    with pytest.raises(ProtocolError, match="blinded"):
        rs.get_ai()
    other = next(c for c in store.list_cases("s") if c.id != step.case.case_id)
    with pytest.raises(ProtocolError):
        rs.get_ai(other.pseudonym)
    unaided = rs.submit("normal", 70, 30)
    step2 = rs.current()
    assert step2 is not None and step2.condition == "aided"
    assert step2.case == step.case and step2.unaided == unaided
    with pytest.raises(ProtocolError, match="Reveal the AI"):
        rs.submit("x", 80, 90)
    assert rs.get_ai() == AI
    aided = rs.submit("x", 80, 90, heatmap_visible=True)
    assert aided.ai_model_sha == "sha256-of-model" and aided.ai_probs == AI.probabilities
    assert aided.changed_from_unaided is True and aided.ai_heatmap_visible is True
    # reader 2 is still blinded for that case
    rs2 = ReadingSession(store, "s", "R2", ai_provider=lambda c: AI)
    with pytest.raises(ProtocolError):
        rs2.get_ai(step.case.pseudonym)
    with pytest.raises(ProtocolError):
        rs.submit("maybe", 1, 1)


def test_resume_at_exact_position(tmp_path: Path) -> None:
    store = _study(tmp_path)
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    rs.submit("normal", 50, 10)
    rs.get_ai()
    rs.submit("normal", 50, 10)
    rs.submit("x", 50, 90)
    expected = rs.current()
    store.close()
    store2 = open_store(tmp_path / "s.db")
    again = ReadingSession(store2, "s", "R1", ai_provider=lambda c: AI)
    got = again.current()
    assert got is not None and expected is not None
    assert (got.case, got.condition, got.index) == (expected.case, "aided", 3)
    prog = study_progress(store2, "s")
    assert {r.reader: r.done for r in prog.readers} == {"R1": 3, "R2": 0}
    assert prog.total == 2 * 2 * 6 and prog.done == 3


def test_crossover_washout_and_each_case_once_per_condition(tmp_path: Path) -> None:
    store = _study(tmp_path, design="crossover", n=6)
    now = [utcnow()]
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI, clock=lambda: now[0])
    conds = []
    while (step := rs.begin()) is not None:
        conds.append(step.condition)
        if step.condition == "aided":
            rs.get_ai()
        else:
            with pytest.raises(ProtocolError):
                rs.get_ai()
        rs.submit("normal", 50, 50)
    assert sorted(conds) == ["aided"] * 3 + ["unaided"] * 3
    now[0] += timedelta(days=13)
    with pytest.raises(ProtocolError, match="washout"):
        ReadingSession(store, "s", "R1", ai_provider=lambda c: AI, clock=lambda: now[0])
    now[0] += timedelta(days=2)
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI, clock=lambda: now[0])
    assert rs.arm == 2
    while (step := rs.begin()) is not None:
        if step.condition == "aided":
            rs.get_ai()
        rs.submit("x", 50, 50)
    reads = store.reads(store.get_study("s").id)
    pairs = {(r.case_id, r.condition) for r in reads}
    assert len(pairs) == len(reads) == 12
    assert study_progress(store, "s").readers[0].finished


def test_simulated_study_recovers_known_effect(tmp_path: Path) -> None:
    store = open_store(tmp_path / "sim.db")
    truth = simulate_study(store, n_readers=4, n_cases=50, seed=2)
    rows = long_rows(store, "sim")
    a = analyze(rows)
    assert a.auc_mrmc is not None and a.accuracy_mrmc is not None
    lo, hi = a.auc_mrmc.ci
    assert lo <= truth.auc_effect <= hi, (truth, a.auc_mrmc.ci)
    assert a.auc_mrmc.p < 0.05 and a.accuracy_mrmc.diff > 0
    saving = time_saving(rows)["saving_s"]
    assert abs(saving - (truth.median_time_unaided_s - truth.median_time_aided_s)) < 4


def test_a_class_no_case_has_averages_to_nan_quietly(tmp_path: Path) -> None:
    store = open_store(tmp_path / "sim.db")
    simulate_study(store, n_readers=2, n_cases=12, seed=3)
    rows = long_rows(store, "sim")
    labels = store.get_study("sim").labels
    unseen = sorted(set(labels) - {r.reference for r in rows})
    assert unseen  # 12 cases of this seed have no anencephaly
    a = analyze(rows, labels)  # pytest turns numpy's empty-slice warning into an error
    for cond in ("unaided", "aided"):
        for lab in unseen:
            assert np.isnan(a.average[cond][f"sensitivity[{lab}]"])
            assert 0.0 <= a.average[cond][f"specificity[{lab}]"] <= 1.0


def test_crash_harness_short(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.harness.crash_sessions",
            "--db",
            str(tmp_path / "c.db"),
            "--kills",
            "6",
            "--cases",
            "15",
            "--seed",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.returncode == 0 and summary["ok"], (summary, res.stderr[-2000:])
    assert summary["kills"] == 6


WRITER = """
import sys
from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
from fetal_viewer.core.store import open_store
store = open_store(sys.argv[1])
rs = ReadingSession(store, "s", sys.argv[2],
                    ai_provider=lambda c: AIOutput("sha", {"normal": .5, "x": .5}))
n = 0
while (step := rs.begin()) is not None:
    if step.condition == "aided":
        rs.get_ai()
    rs.submit("x", 50, 50, active_ms=5)
    n += 1
print(n)
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    store = _study(tmp_path, n=25)
    store.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "s.db"), r],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ("R1", "R2")
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    assert [int(o[0]) for o in outs] == [50, 50]
    store = open_store(tmp_path / "s.db")
    reads = store.reads(store.get_study("s").id, include_superseded=True)
    assert len(reads) == 100 and len({r.uid for r in reads}) == 100
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_submits_do_not_reload_all_reads_and_failures_resync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session keeps its reads in memory: a submit does not load the reader's reads
    again; a failed submit, a read stored by another window and a reopen all resync from
    the store, and nothing is lost or stored twice."""
    store = _study(tmp_path, n=5)
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    calls = []
    real_reads = store.reads
    monkeypatch.setattr(store, "reads", lambda *a, **k: calls.append(a) or real_reads(*a, **k))
    for _ in range(4):
        step = rs.begin()
        assert step is not None
        if step.condition == "aided":
            rs.get_ai()
        rs.submit("x", 50, 50, active_ms=1)
    assert calls == []
    # the same reader in a second window stores the next step first
    other = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    step = rs.current()
    assert step is not None and other.current() == step
    other.submit("normal", 10, 10, active_ms=1)
    with pytest.raises(ProtocolError, match="already stored"):
        rs.submit("x", 60, 60, active_ms=1)
    after = rs.current()  # resynced from the store
    assert after is not None and after == other.current() and after.index == step.index + 1
    # a submit that fails in the store does not advance the session
    from fetal_viewer.errors import StoreError

    def broken(*a: object, **k: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(store, "add_read", broken)
    rs.get_ai()
    with pytest.raises(StoreError):
        rs.submit("x", 70, 70, active_ms=1)
    monkeypatch.undo()
    again = rs.current()
    assert again is not None and (again.case, again.condition) == (after.case, after.condition)
    rs.get_ai()
    rs.submit("x", 70, 70, active_ms=1)
    st = store.get_study("s")
    reads = store.reads(st.id, store.get_reader("R1").id, include_superseded=True)
    assert len(reads) == 6 and len({(r.case_id, r.condition) for r in reads}) == 6
    reopened = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    assert reopened.current() == rs.current()


def test_a_study_needs_a_name_a_washout_of_zero_or_more_and_each_image_once(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from fetal_viewer.core.readerstudy.coordination import NewStudy, create_study
    from fetal_viewer.errors import DataError
    from tests.factories import write_rgb_cine

    folder = tmp_path / "cases"
    folder.mkdir()
    for i in range(2):
        write_rgb_cine(folder / f"c{i}.dcm", np.full((1, 32, 32, 3), i, np.uint8))
    ref = tmp_path / "ref.csv"
    ref.write_text("path,label\nc0.dcm,normal\nc1.dcm,anencephaly\nc0.dcm,anencephaly\n")
    store = open_store(tmp_path / "s.db")
    req = NewStudy(
        name="s", design="sequential", seed=1, washout_days=0.0, labels=(),
        folder=str(folder), manifest=None, reference_csv=str(ref), model_card=None,
        require_ratings=False, show_ga=False,
    )  # fmt: skip
    with pytest.raises(DataError, match="same image 1 more time") as err:
        create_study(store, req)
    assert "c0.dcm frame 0 (normal, anencephaly)" in err.value.why
    ref.write_text("path,label\nc0.dcm,normal\nc1.dcm,anencephaly\n")
    with pytest.raises(DataError, match="needs a name"):
        create_study(store, replace(req, name="  "))
    with pytest.raises(DataError, match="0 days or more"):
        create_study(store, replace(req, washout_days=-3.0))
    # a model card whose weights do not verify is refused now, not when a reader meets it
    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34
    from fetal_viewer.errors import ModelLoadError

    card = save_checkpoint(build_resnet34(5), ModelCard(name="t", version="1"), tmp_path / "m")
    with open(card.parent / "weights.safetensors", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelLoadError, match="sha256"):
        create_study(store, replace(req, model_card=str(card)))
    assert store.list_studies() == []
    assert create_study(store, replace(req, name=" s ")).name == "s"
    store.close()


def test_enrolling_a_reader_twice_says_what_was_kept(tmp_path: Path) -> None:
    from fetal_viewer.core.readerstudy.coordination import enrol_reader
    from fetal_viewer.errors import DataError

    store = _study(tmp_path)
    first = enrol_reader(store, "s", "RA", "radiologist", 12)
    assert first.note == "" and "Reader RA enrolled in s" in first.words()
    again = enrol_reader(store, "s", "RA", "radiologist", 0)
    assert "already enrolled in s (radiologist, 12 years; the radiologist, 0 years" in again.words()
    assert [r.years_experience for r in store.list_readers() if r.pseudonym == "RA"] == [12]
    with pytest.raises(DataError, match="0 or more"):
        enrol_reader(store, "s", "RB", "radiologist", -3)
    with pytest.raises(DataError, match="needs a pseudonym"):
        enrol_reader(store, "s", " ", "radiologist", 1)
    store.close()
