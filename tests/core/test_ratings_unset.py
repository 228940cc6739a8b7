"""Ratings a reader did not set are stored as not set (NULL), a study can require them,
and the analysis treats them as missing, never as 50. Reads without active time (headless)
are stored without it and left out of the timing figures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.readerstudy.analysis import analyze, time_saving
from fetal_viewer.core.readerstudy.export import export_all, load_long_csv, long_rows
from fetal_viewer.core.readerstudy.mrmc import empirical_auc
from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
from fetal_viewer.core.store import CaseSpec, open_store
from fetal_viewer.errors import ProtocolError

LABELS = ["normal", "x"]
AI = AIOutput("m", {"normal": 0.4, "x": 0.6})


def _study(tmp_path: Path, require: bool = False, n: int = 8):  # type: ignore[no-untyped-def]
    store = open_store(tmp_path / "s.db")
    store.create_study(
        "s",
        design="sequential",
        labels=LABELS,
        seed=2,
        cases=[CaseSpec(f"/c/{i}.dcm", "x" if i % 2 else "normal") for i in range(n)],
        require_ratings=require,
    )
    for r in ("R1", "R2"):
        store.add_reader(r)
        store.enrol("s", r)
    return store


def test_unset_ratings_are_null_and_a_study_can_require_them(tmp_path: Path) -> None:
    store = _study(tmp_path)
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    rs.begin()
    read = rs.submit("normal", None, None, untimed=True)
    assert (read.confidence, read.anomaly_prob, read.active_ms) == (None, None, None)
    row = sqlite3.connect(tmp_path / "s.db").execute(
        "select confidence, anomaly_prob, active_ms from reads"
    )
    assert row.fetchall() == [(None, None, None)]
    assert store.get_study("s").require_ratings is False
    store.close()
    strict = _study(tmp_path / "strict", require=True)
    rs = ReadingSession(strict, "s", "R1", ai_provider=lambda c: AI)
    rs.begin()
    with pytest.raises(ProtocolError, match="requires both ratings"):
        rs.submit("normal", 70, None)
    assert rs.submit("normal", 70, 20).anomaly_prob == 20
    strict.close()


def test_analysis_treats_unset_ratings_as_missing_and_untimed_reads_as_untimed(
    tmp_path: Path,
) -> None:
    store = _study(tmp_path)
    rng = np.random.default_rng(0)
    for k, reader in enumerate(("R1", "R2")):
        rs = ReadingSession(store, "s", reader, ai_provider=lambda c: AI)
        while (step := rs.begin()) is not None:
            if step.condition == "aided":
                rs.get_ai()
            # R1 leaves the any-anomaly rating unset on every third step
            unset = reader == "R1" and step.index % 3 == 0
            score = None if unset else int(rng.integers(0, 100))
            rs.submit("x", 60, score, active_ms=None if k else 1500, untimed=bool(k))
    rows = long_rows(store, "s")
    out = export_all(store, "s", tmp_path / "out")
    store.close()
    assert any(r.anomaly_prob is None for r in rows)
    result = analyze(rows)
    for cond in ("unaided", "aided"):
        rated = [r for r in rows if r.reader == "R1" and r.condition == cond and r.anomaly_prob]
        rated = [r for r in rows if r.reader == "R1" and r.condition == cond]
        rated = [r for r in rated if r.anomaly_prob is not None]
        truth = np.array([r.reference == "x" for r in rated])
        expected = empirical_auc(np.array([r.anomaly_prob for r in rated], float), truth)
        got = next(p for p in result.per_reader if p.reader == "R1" and p.condition == cond)
        assert got.auc == pytest.approx(expected)  # from the set ratings only, never 50
    assert any("not set" in n for n in result.notes)
    # R2 read headless (no active time): out of the timing figures, and said so
    r2 = [p for p in result.per_reader if p.reader == "R2"]
    assert all(np.isnan(p.time_median_s) for p in r2)
    assert any("without active time" in n for n in result.notes)
    assert time_saving(rows)["unaided"] == pytest.approx(1.5)
    # the long CSV keeps unset as blank and reads it back as unset
    back = load_long_csv(out["long_csv"])
    assert [r.anomaly_prob for r in back] == [r.anomaly_prob for r in rows]
    assert [r.active_ms for r in back] == [r.active_ms for r in rows]
