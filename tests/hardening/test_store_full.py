"""A reading session on a full disk: submit raises StoreError, nothing unstored is
acknowledged, and reading resumes once there is room (public store/protocol API only)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
from fetal_viewer.core.store import CaseSpec, open_store
from fetal_viewer.errors import StoreError


def test_submit_on_full_disk_acknowledges_nothing(tmp_path: Path) -> None:
    from sqlalchemy import event

    db = tmp_path / "s.db"
    store = open_store(db)
    cases = [CaseSpec(f"/c/{i}", "normal") for i in range(6)]
    store.create_study("s", design="sequential", labels=["normal", "x"], seed=1, cases=cases)
    store.add_reader("R1")
    store.enrol("s", "R1")
    rs = ReadingSession(
        store, "s", "R1", ai_provider=lambda c: AIOutput("sha", {"normal": 0.4, "x": 0.6})
    )

    def submit(text: str | None = None) -> str:
        step = rs.begin()
        assert step is not None
        if step.condition == "aided":
            rs.get_ai()
        return rs.submit("normal", 50, 10, active_ms=5, free_text=text).uid

    acked = []
    acked.append(submit())

    full = {"on": True}

    @event.listens_for(store.engine, "connect")
    def _cap(dbapi_conn: object, _rec: object) -> None:
        if full["on"]:
            cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
            n = cur.execute("PRAGMA page_count").fetchone()[0]
            cur.execute(f"PRAGMA max_page_count={n}")

    store.engine.dispose()
    failures = 0
    for _ in range(50):  # fill the last free pages, then every submit must fail cleanly
        try:
            acked.append(submit("y" * 3000))
        except StoreError as exc:
            assert "full" in exc.message.lower() and exc.fix
            failures += 1
            break
    assert failures == 1
    stored = {u for (u,) in sqlite3.connect(db).execute("SELECT uid FROM reads")}
    assert set(acked) <= stored and len(stored) == len(acked)

    full["on"] = False
    store.engine.dispose()
    acked.append(submit())
    con = sqlite3.connect(db)
    stored = [u for (u,) in con.execute("SELECT uid FROM reads")]
    assert sorted(stored) == sorted(acked) and len(set(stored)) == len(stored)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()
