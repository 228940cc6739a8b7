"""Summary tables, CIs, localisation and the written report on a fixed prediction table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.model.aggregation import AGGREGATION_RULES
from fetal_viewer.core.training import metrics as M  # noqa: N812
from fetal_viewer.core.training.manifest import Record
from fetal_viewer.core.training.report import ReportInputs, write_report
from fetal_viewer.core.training.summary import PredictionTable, summarise
from fetal_viewer.core.training.train import cap_frames

CLASSES = ("normal", "anencephaly", "encephalocele")


@pytest.fixture(scope="module")
def table() -> PredictionTable:
    rng = np.random.default_rng(3)
    pids, centers, ga, y, probs, pointing, energy, reachable, distance = ([] for _ in range(9))
    for p in range(30):
        label = p % 3
        n_frames = 1 + p % 3
        for _ in range(n_frames):
            pids.append(f"P{p:02d}")
            centers.append("A" if p < 15 else "B")
            ga.append(16.0 + p)  # 16..45 weeks: all three bands
            y.append(label)
            z = rng.normal(size=3)
            z[label] += 2.0 if p != 0 else -3.0  # patient P00 is misclassified
            e = np.exp(z)
            probs.append(e / e.sum())
            empty = p % 6 == 2  # five encephaloceles whose map has no heat
            pointing.append(None if label == 0 else bool(p % 2) and not empty)
            energy.append(None if label == 0 else 0.0 if empty else 0.25)
            reachable.append(None if label == 0 else p % 5 != 1)
            far = float("inf") if empty else 4.0 * (p % 7) + 1.0
            distance.append(None if label == 0 else (0.0 if p % 2 and not empty else far))
    return PredictionTable(
        classes=CLASSES,
        paths=[f"{i}.png" for i in range(len(pids))],
        frames=[0] * len(pids),
        patient_ids=pids,
        centers=centers,
        ga_weeks=ga,
        folds=["center=" + c for c in centers],
        y=np.array(y),
        probs=np.array(probs),
        pointing=pointing,
        energy=energy,
        reachable=reachable,
        distance=distance,
    )


def test_summary_figures(table: PredictionTable) -> None:
    m, curves = summarise(table, n_boot=200, seed=1)
    assert m["patients"] == 30 and m["images"] == len(table)
    p = m["patient_level"]
    patient_pred = {}
    for pid, prob in zip(table.patient_ids, table.probs):
        patient_pred.setdefault(pid, []).append(prob)
    truth = {pid: int(t) for pid, t in zip(table.patient_ids, table.y)}
    manual = np.mean([np.mean(v, axis=0).argmax() == truth[k] for k, v in patient_pred.items()])
    assert p["accuracy"] == pytest.approx(manual, abs=1e-6)
    lo, hi = p["accuracy_ci95"]
    assert lo <= p["accuracy"] <= hi and hi - lo > 0
    assert p["macro_auroc_ci95"][0] <= p["macro_auroc"] <= p["macro_auroc_ci95"][1]
    assert sum(p["per_class"][c]["support"] for c in CLASSES) == 30
    assert m["by_center"]["A"]["patients"] == 15 and m["by_center"]["B"]["patients"] == 15
    assert {k: v["patients"] for k, v in m["by_ga_band"].items()} == {
        "<20": 4,
        "20-28": 9,
        ">28": 17,
    }
    loc = m["localisation"]
    assert "normal" not in loc  # no masks for that class
    hits = [bool(h) for h, t in zip(table.pointing, table.y) if t == 1]
    assert loc["anencephaly"]["pointing_game"] == pytest.approx(np.mean(hits))
    empty = [np.isinf(d) for d, t in zip(table.distance, table.y) if t == 2]
    assert 0 < loc["encephalocele"]["empty_heatmap"] == pytest.approx(np.mean(empty))
    assert loc["anencephaly"]["empty_heatmap"] == 0.0
    # an empty map counts as no heat inside, not as a frame left out
    assert loc["anencephaly"]["energy_inside_mask"] == pytest.approx(0.25)
    assert loc["encephalocele"]["energy_inside_mask"] == pytest.approx(0.25 * (1 - np.mean(empty)))
    can = [bool(r) for r, t in zip(table.reachable, table.y) if t == 2]
    assert 0 < np.mean(can) < 1
    assert loc["encephalocele"]["pointing_ceiling"] == pytest.approx(np.mean(can))
    near = [d <= 15 for d, t in zip(table.distance, table.y) if t == 1]
    assert loc["anencephaly"]["pointing_game_15px"] == pytest.approx(np.mean(near))
    assert loc["anencephaly"]["pointing_game"] < loc["anencephaly"]["pointing_game_15px"] < 1
    assert curves["patient"].auroc["macro"] == pytest.approx(p["macro_auroc"], abs=1e-6)


def test_patient_level_follows_the_rule(table: PredictionTable, tmp_path: Path) -> None:
    mean, _ = summarise(table, n_boot=20)
    vote, curves = summarise(table, rule="vote", n_boot=20)
    pt = M.by_patient(table.patient_ids, table.y, table.probs, "vote")
    expected = M.auroc_summary(pt.y, pt.probs)["macro_auroc"]
    assert vote["patient_level"]["macro_auroc"] == pytest.approx(expected)
    assert vote["patient_level"]["macro_auroc"] != pytest.approx(
        mean["patient_level"]["macro_auroc"]
    )
    assert vote["image_level"]["macro_auroc"] == mean["image_level"]["macro_auroc"]
    setup = {"patient_aggregation": "vote"}
    write_report(ReportInputs("vote", table, vote, curves, setup=setup), tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert f"Patient level: {AGGREGATION_RULES['vote']}." in html


def test_report_files_and_csv_round_trip(table: PredictionTable, tmp_path: Path) -> None:
    m, curves = summarise(table, n_boot=50)
    report = write_report(
        ReportInputs("test report", table, m, curves, setup={"protocol": "x"}),
        tmp_path,
        figure_dir=tmp_path / "figs",
    )
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 3  # confusion, ROC, PR
    assert "By gestational age" in html and "Research use only" in html
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "confusion.png",
        "pr.png",
        "roc.png",
    ]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["patient_level"]["accuracy"] == m["patient_level"]["accuracy"]
    back = PredictionTable.read_csv(tmp_path / "predictions.csv", CLASSES)
    np.testing.assert_allclose(back.probs, table.probs, atol=1e-6)
    assert back.pointing == table.pointing and back.patient_ids == table.patient_ids
    assert back.distance == table.distance
    assert back.reachable == table.reachable


def test_cap_frames_keeps_evenly_spaced_frames_per_patient() -> None:
    recs = [
        Record(Path(f"{i}.png"), 0, f"p{i // 5}", "A", "normal", None, None, i) for i in range(12)
    ]
    # p0: rows 0-4, p1: rows 5-9, p2: rows 10-11
    assert cap_frames(recs, range(12), 2).tolist() == [0, 4, 5, 9, 10, 11]
    assert cap_frames(recs, range(12), 0).tolist() == list(range(12))
    assert cap_frames(recs, [11, 3, 2], 1).tolist() == [2, 11]
