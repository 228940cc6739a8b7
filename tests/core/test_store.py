"""Store: migrations linear and matching the models, upgrades with data intact, errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from fetal_viewer.core.store import CaseSpec, head_revision, open_store
from fetal_viewer.core.store.engine import alembic_config, make_engine, to_url, upgrade_to
from fetal_viewer.core.store.models import Base
from fetal_viewer.errors import ProtocolError, StoreError


def test_revision_chain_is_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    revs = list(script.walk_revisions())
    assert [r.down_revision for r in revs][-1] is None
    for r in revs:
        assert not isinstance(r.down_revision, tuple | list), r.revision
    assert len(script.get_bases()) == 1


def test_models_match_migrations(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    store.close()


def test_pragmas_wal_fk_full(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.close()


def test_first_migration_db_upgraded_with_data_intact(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = make_engine(to_url(db))
    upgrade_to(engine, "0001")
    engine.dispose()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO readers VALUES (1,'R1','radiologist',5,'2024-01-01 00:00:00')")
    con.execute(
        "INSERT INTO studies VALUES (1,'old','sequential','[\"normal\",\"x\"]',"
        "'{\"min\":0,\"max\":100}',7,0,NULL,NULL,'2024-01-01 00:00:00')"
    )
    con.execute("INSERT INTO cases VALUES (1,1,'C1','/a.dcm',0,'x','ref',20.5,'A')")
    con.execute("INSERT INTO enrolments VALUES (1,1,1,99,'2024-01-01 00:00:00')")
    con.execute(
        "INSERT INTO reading_sessions VALUES (1,'s-uid',1,1,1,'sequential',99,"
        "'2024-01-01 00:00:00',NULL)"
    )
    con.execute(
        "INSERT INTO reads VALUES (1,'r-uid',1,1,1,1,'unaided','x',80,90,'2024-01-01 00:00:00',"
        "'2024-01-01 00:01:00',60000,0,NULL,NULL,NULL,NULL,NULL)"
    )
    con.commit()
    con.close()
    store = open_store(db)
    assert store.backup_path is not None and store.backup_path.exists()
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    st = store.get_study("old")
    (read,) = store.reads(st.id)
    assert (read.uid, read.label, read.confidence, read.anomaly_prob, read.active_ms) == (
        "r-uid",
        "x",
        80,
        90,
        60000,
    )
    assert read.free_text is None
    assert store.list_cases("old")[0].ga_weeks == 20.5
    # the backup still holds the old schema
    assert sqlite3.connect(store.backup_path).execute(
        "select version_num from alembic_version"
    ).fetchone() == ("0001",)
    store.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    open_store(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num='9999_future'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer or unknown") as info:
        open_store(db)
    assert info.value.fix


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable"):
        open_store(bad)


def test_read_only_and_locked_and_full(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = open_store(db)
    store.add_reader("R1")
    store.close()
    ro = open_store(f"sqlite:///file:{db}?mode=ro&uri=true")
    with pytest.raises(StoreError, match="read-only") as info:
        ro.add_reader("R2")
    assert info.value.why and info.value.fix
    ro.close()
    store = open_store(db, busy_timeout_s=0.2)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked"):
        store.add_reader("R3")
    with pytest.raises(StoreError, match="locked"):
        open_store(db, busy_timeout_s=0.2)
    locker.execute("ROLLBACK")
    locker.close()
    store.add_reader("R3")
    from sqlalchemy import event

    @event.listens_for(store.engine, "connect")
    def _tiny(dbapi_conn: object, _rec: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        n = cur.execute("PRAGMA page_count").fetchone()[0]
        cur.execute(f"PRAGMA max_page_count={n}")

    store.engine.dispose()
    with pytest.raises(StoreError, match="full"):
        store.create_study(
            "big",
            design="sequential",
            labels=["normal"],
            cases=[CaseSpec("x" * 4000, "normal")] * 200,
            seed=1,
        )
    store.close()


def test_reads_are_never_overwritten(tmp_path: Path) -> None:
    from fetal_viewer.core.readerstudy.protocol import ReadingSession

    store = open_store(tmp_path / "s.db")
    store.add_reader("R1")
    store.create_study(
        "s", design="sequential", labels=["normal", "x"], cases=[CaseSpec("/p/a", "x")], seed=1
    )
    store.enrol("s", "R1")
    rs = ReadingSession(store, "s", "R1")
    read = rs.submit("normal", 50, 20, active_ms=1000)
    fixed = store.correct_read(read.id, reason="clicked the wrong button", label="x")
    st = store.get_study("s")
    assert [r.id for r in store.reads(st.id)] == [fixed.id]
    assert len(store.reads(st.id, include_superseded=True)) == 2
    assert fixed.supersedes_id == read.id
    with pytest.raises(StoreError):
        store.correct_read(read.id, reason="again")
    with pytest.raises(ProtocolError):  # no second unaided read of the same case
        from fetal_viewer.core.store import NewRead

        store.add_read(
            NewRead(
                rs.session.id,
                read.case_id,
                "unaided",
                "x",
                1,
                1,
                read.started_at,
                read.submitted_at,
                1,
                0,
            )
        )
    assert any(a.action == "correct_read" for a in store.audit_log(st.id))
    store.close()
