"""Crash harness: SIGKILL a reading process at random moments, many times.

Usage: python -m tests.harness.crash_sessions --db PATH [--kills N] [--seed S]

A child process reads cases through the core API and prints ``ACK <uid>`` after every
submit returns. The parent kills it with SIGKILL after a random delay, restarts it, and
finally checks that every acknowledged read is stored exactly once, no (reader, case,
condition) has two effective reads, and ``PRAGMA integrity_check`` is ok. Exit code 0 on
success; the last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

STUDY = "crash"


def child(db: str, reader: str) -> None:
    from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
    from fetal_viewer.core.store import open_store

    store = open_store(db)
    rs = ReadingSession(
        store, STUDY, reader, ai_provider=lambda c: AIOutput("sha", {"normal": 0.4, "x": 0.6})
    )
    print("READY", flush=True)
    while (step := rs.begin()) is not None:
        if step.condition == "aided":
            rs.get_ai()
        read = rs.submit(
            "x" if step.position % 2 else "normal", 50, step.position % 101, active_ms=10
        )
        print(f"ACK {read.uid}", flush=True)
    print("DONE", flush=True)


def setup(db: str, n_cases: int) -> None:
    from fetal_viewer.core.store import CaseSpec, open_store

    store = open_store(db)
    store.create_study(
        STUDY,
        design="sequential",
        labels=["normal", "x"],
        seed=5,
        cases=[CaseSpec(f"/c/{i}", "x" if i % 2 else "normal") for i in range(n_cases)],
    )
    store.add_reader("R1")
    store.enrol(STUDY, "R1")
    store.close()


def run(db: str, kills: int, seed: int, n_cases: int) -> dict[str, object]:
    rng = random.Random(seed)
    setup(db, n_cases)
    acked: list[str] = []
    done = False
    killed = 0
    while not done:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.crash_sessions", "--child", "--db", db],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]  # READY (imports and open done)
        if killed < kills:
            # let it acknowledge a random number of reads, then kill at a random moment
            for _ in range(rng.randint(0, 3)):
                lines.append(proc.stdout.readline())
                if lines[-1].strip() in ("DONE", ""):
                    break
            time.sleep(rng.uniform(0.0, 0.01))
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        out, _ = proc.communicate()
        for ln in [*lines, *out.splitlines()]:
            if ln.startswith("ACK "):
                acked.append(ln.split()[1])
            done = done or ln.strip() == "DONE"
    con = sqlite3.connect(db)
    uids = [u for (u,) in con.execute("SELECT uid FROM reads")]
    keys = con.execute(
        "SELECT reader_id, case_id, condition, count(*) FROM reads "
        "WHERE id NOT IN (SELECT supersedes_id FROM reads WHERE supersedes_id IS NOT NULL) "
        "GROUP BY 1,2,3 HAVING count(*) > 1"
    ).fetchall()
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    return {
        "kills": killed,
        "acknowledged": len(acked),
        "stored": len(uids),
        "acked_missing": len(set(acked) - set(uids)),
        "acked_duplicated": len(acked) - len(set(acked)),
        "duplicate_keys": len(keys),
        "expected_reads": 2 * n_cases,
        "integrity": integrity,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--child", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        child(args.db, "R1")
        return 0
    res = run(args.db, args.kills, args.seed, args.cases)
    ok = (
        res["acked_missing"] == 0
        and res["acked_duplicated"] == 0
        and res["duplicate_keys"] == 0
        and res["integrity"] == "ok"
        and res["stored"] == res["expected_reads"]
    )
    print(json.dumps({**res, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
