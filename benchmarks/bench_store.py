"""Store benchmark: durable submit latency vs a bare sqlite3 INSERT+COMMIT with the same
pragmas (WAL, synchronous=FULL), measured in the same run; and the time to export and
analyse 100,000 reads. The last line printed is one JSON object."""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_SUBMIT = 300


def baseline(db: Path) -> list[float]:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, uid TEXT, label TEXT, c INT, p INT)")
    out = []
    for i in range(N_SUBMIT):
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t (uid, label, c, p) VALUES (?, ?, ?, ?)", (str(i), "x", 1, 2))
        con.execute("COMMIT")
        out.append(time.perf_counter() - t0)
    con.close()
    return out


def submits(db: Path) -> list[float]:
    from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
    from fetal_viewer.core.store import CaseSpec, open_store

    store = open_store(db)
    store.create_study(
        "b",
        design="sequential",
        labels=["normal", "x"],
        seed=1,
        cases=[CaseSpec(f"/c/{i}", "x") for i in range(N_SUBMIT // 2)],
    )
    store.add_reader("R")
    store.enrol("b", "R")
    rs = ReadingSession(store, "b", "R", ai_provider=lambda c: AIOutput("s", {"x": 1.0}))
    out = []
    while (step := rs.begin()) is not None:
        if step.condition == "aided":
            rs.get_ai()
        t0 = time.perf_counter()
        rs.submit("x", 50, 50, active_ms=1)
        out.append(time.perf_counter() - t0)
    store.close()
    return out


def big_export_analyse(tmp: Path) -> dict[str, float]:
    from fetal_viewer.core.readerstudy.analysis import analyze
    from fetal_viewer.core.readerstudy.export import LongRow, load_long_csv, write_long_csv

    rng = np.random.default_rng(0)
    n_readers, n_cases = 10, 5000  # 10 x 5000 x 2 = 100,000 reads
    truth = rng.random(n_cases) < 0.5
    rows = []
    for j in range(n_readers):
        for cond, d in (("unaided", 1.0), ("aided", 1.6)):
            z = d * truth + rng.normal(size=n_cases)
            for k in range(n_cases):
                ref = "anencephaly" if truth[k] else "normal"
                lab = "anencephaly" if z[k] > d / 2 else "normal"
                rows.append(
                    LongRow(
                        "b",
                        "sequential",
                        f"R{j}",
                        "r",
                        1.0,
                        1,
                        cond,
                        f"C{k}",
                        ref,
                        None,
                        None,
                        lab,
                        lab == ref,
                        50,
                        int(np.clip(50 + 20 * (z[k] - d / 2), 0, 100)),
                        "",
                        "",
                        int(rng.integers(5000, 60000)),
                        k,
                        "",
                        "",
                        "",
                        "",
                        "",
                        f"u{j}{cond}{k}",
                    )
                )
    t0 = time.perf_counter()
    path = write_long_csv(rows, tmp / "reads.csv")
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = load_long_csv(path)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = analyze(back)
    t_analyse = time.perf_counter() - t0
    assert res.auc_mrmc is not None
    return {
        "reads": len(rows),
        "export_csv_s": t_export,
        "load_csv_s": t_load,
        "analyse_s": t_analyse,
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = np.array(baseline(tmp / "base.db")) * 1000
        ours = np.array(submits(tmp / "store.db")) * 1000
        big = big_export_analyse(tmp)
    res = {
        "submit_median_ms": round(float(np.median(ours)), 3),
        "submit_p99_ms": round(float(np.percentile(ours, 99)), 3),
        "baseline_median_ms": round(float(np.median(base)), 3),
        "baseline_p99_ms": round(float(np.percentile(base, 99)), 3),
        "submit_vs_baseline_median": round(float(np.median(ours) / np.median(base)), 2),
        **{k: round(v, 3) for k, v in big.items()},
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
