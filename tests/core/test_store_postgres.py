"""The store on a real PostgreSQL server: migrations, a full sequential study with blinding,
exports identical to SQLite's, several processes at once, serialization failures retried.

A throwaway server is started for the session (``initdb`` + ``pg_ctl``, Unix socket only,
in a temporary folder; as the ``postgres`` user when the tests run as root, since initdb
refuses root) and always stopped. Every test gets its own database. The tests skip, saying
why, when psycopg or the server binaries are missing; ``FETAL_VIEWER_PG_BIN`` names the
folder of ``initdb``/``pg_ctl`` when they are somewhere else.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import make_url

from fetal_viewer.core.readerstudy.export import export_all
from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession, study_progress
from fetal_viewer.core.store import CaseSpec, Store, head_revision, open_store
from fetal_viewer.core.store import repository as repo
from fetal_viewer.core.store.engine import make_engine, to_url, upgrade_to, upgrade_to_head
from fetal_viewer.core.store.models import Base
from fetal_viewer.errors import ProtocolError, StoreError

REPO = Path(__file__).resolve().parents[2]
PORT = 5432  # names the socket file only: the server listens on no TCP address
AI = AIOutput("a" * 64, {"normal": 0.3, "x": 0.7})


@dataclass(frozen=True)
class PgServer:
    socket_dir: Path
    port: int
    names: Iterator[int]

    def connect(self, dbname: str = "postgres", **kw: Any) -> Any:
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname, **kw
        )

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={self.port}"


def _pg_bin() -> Path | None:
    candidates = [os.environ.get("FETAL_VIEWER_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(str(Path(which).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    pytest.importorskip(
        "psycopg", reason='psycopg is not installed (pip install "psycopg[binary]")'
    )
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin "
            "or on PATH; set FETAL_VIEWER_PG_BIN to their folder"
        )
    as_user: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        import pwd

        runuser = shutil.which("runuser")
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = None
        if pw is None or runuser is None:
            pytest.skip(
                "running as root, and there is no 'postgres' user or runuser to run "
                "initdb as (it refuses root)"
            )
        as_user = [runuser, "-u", "postgres", "--"]
        owner = (pw.pw_uid, pw.pw_gid)
    root = Path(tempfile.mkdtemp(prefix="fv-pg-"))
    if owner is not None:
        os.chown(root, *owner)
    data = root / "data"

    def run(*args: str | Path) -> None:
        res = subprocess.run(
            [*as_user, *map(str, args)], cwd=root, capture_output=True, text=True, timeout=120
        )
        if res.returncode != 0:
            log = root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {res.stdout}{res.stderr}\n{tail}")

    started = False
    try:
        run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--no-sync")  # fmt: skip
        run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "-o",
            f"-k {root} -p {PORT} -c listen_addresses='' -c fsync=off -c max_connections=40",
            "start")  # fmt: skip
        started = True
        yield PgServer(root, PORT, itertools.count())
    finally:
        if started:
            run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    name = f"fv_{next(pg_server.names)}"
    with pg_server.connect(autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server.url(name)
    with pg_server.connect(autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# -- without a server ------------------------------------------------------------------


def test_postgres_url_without_psycopg_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    for url in ("postgresql://u@/db?host=/nonexistent", "postgres://u@localhost/db"):
        with pytest.raises(StoreError, match="PostgreSQL support is not installed") as info:
            open_store(url)
        assert info.value.fix is not None and 'pip install "psycopg[binary]"' in info.value.fix
    assert to_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


# -- on the server ---------------------------------------------------------------------


def test_migrations_to_head_with_data_intact_and_models_match(pg_url: str) -> None:
    engine = make_engine(to_url(pg_url))
    upgrade_to(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO readers VALUES (1,'R1','radiologist',5,'2024-01-01 00:00:00+00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO studies VALUES (1,'old','sequential','[\"normal\",\"x\"]',"
            "'{\"min\":0,\"max\":100}',7,0,NULL,NULL,'2024-01-01 00:00:00+00')"
        )
        conn.exec_driver_sql("INSERT INTO cases VALUES (1,1,'C1','/a.dcm',0,'x','ref',20.5,'A')")
        conn.exec_driver_sql(
            "INSERT INTO reading_sessions VALUES (1,'s-uid',1,1,1,'sequential',99,"
            "'2024-01-01 00:00:00+00',NULL)"
        )
        conn.exec_driver_sql(
            "INSERT INTO reads VALUES (1,'r-uid',1,1,1,1,'unaided','x',80,90,"
            "'2024-01-01 00:00:00+00','2024-01-01 00:01:00+00',60000,0,NULL,NULL,NULL,NULL,"
            "NULL)"
        )
    engine.dispose()
    store = open_store(pg_url)
    assert store.backup_path is None  # no file to copy; the upgrade is one transaction
    assert _revision(store) == head_revision()
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    (read,) = store.reads(store.get_study("old").id)
    assert (read.uid, read.label, read.anomaly_prob, read.free_text) == ("r-uid", "x", 90, None)
    assert read.submitted_at == datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    assert store.list_cases("old")[0].ga_weeks == 20.5
    store.close()
    again = open_store(pg_url)  # already at head: nothing to do
    assert _revision(again) == head_revision()
    again.close()


def test_workstations_opening_a_new_database_at_once_migrate_it_once(pg_url: str) -> None:
    import threading

    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def first_open() -> None:
        engine = make_engine(to_url(pg_url))
        try:
            barrier.wait()
            upgrade_to_head(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=first_open) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    store = open_store(pg_url)
    assert _revision(store) == head_revision()
    store.close()


def test_sequential_study_blinding_and_resume(pg_url: str) -> None:
    store = open_store(pg_url)
    store.create_study(
        "s",
        design="sequential",
        labels=["normal", "x"],
        seed=5,
        cases=[
            CaseSpec(f"/p/{i}.dcm", "x" if i % 2 else "normal", ga_weeks=20.0 + i) for i in range(4)
        ],
    )
    for r in ("R1", "R2"):
        store.add_reader(r, "radiologist", 4)
        store.enrol("s", r)
    with pytest.raises(StoreError, match="already exists"):
        store.add_reader("R1")
    with pytest.raises(StoreError, match="already exists"):
        store.create_study(
            "s", design="sequential", labels=["x"], cases=[CaseSpec("/a", "x")], seed=1
        )
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    first = rs.begin()
    assert first is not None and first.condition == "unaided"
    with pytest.raises(ProtocolError, match="blinded"):
        rs.get_ai()
    unaided = rs.submit("normal", 60, 20, active_ms=1500)
    rs2 = ReadingSession(store, "s", "R2", ai_provider=lambda c: AI)
    with pytest.raises(ProtocolError, match="blinded"):  # R2 has not read it unaided
        rs2.get_ai(first.case.pseudonym)
    step = rs.current()
    assert step is not None and step.condition == "aided" and step.unaided == unaided
    assert rs.get_ai() == AI
    aided = rs.submit("x", 80, 85, heatmap_visible=False, free_text="ventricles")
    assert aided.changed_from_unaided is True and aided.ai_probs == AI.probabilities
    assert aided.ai_model_sha == AI.model_sha and aided.free_text == "ventricles"
    rs.submit("x", 70, 75, active_ms=900)
    expected = rs.current()
    store.close()

    store = open_store(pg_url)  # "crash" and come back: same position
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    got = rs.current()
    assert expected is not None and got is not None
    assert (got.case, got.condition, got.index) == (expected.case, "aided", 3)
    with pytest.raises(ProtocolError, match="Reveal the AI"):
        rs.submit("x", 80, 90)
    while (step := rs.begin()) is not None:
        if step.condition == "aided":
            rs.get_ai()
        rs.submit("x", 50, 50, active_ms=10)
    st = store.get_study("s")
    reads = store.reads(st.id, store.get_reader("R1").id)
    assert len(reads) == 8 and len({(r.case_id, r.condition) for r in reads}) == 8
    assert [r.position for r in reads] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert store.sessions(st.id, store.get_reader("R1").id)[0].ended_at is not None
    fixed = store.correct_read(unaided.id, reason="wrong key", label="x")
    assert fixed.supersedes_id == unaided.id and fixed.label == "x"
    assert len(store.reads(st.id, include_superseded=True)) == 9
    prog = {r.reader: (r.done, r.finished) for r in study_progress(store, "s").readers}
    assert prog == {"R1": (8, True), "R2": (0, False)}
    assert {"create_study", "enrol", "start_session", "end_session", "correct_read"} <= {
        a.action for a in store.audit_log(st.id)
    }
    store.close()


def _scripted_study(store: Store) -> None:
    """The same inputs, deterministically (ids, clock), whatever the back end."""
    t = [datetime(2025, 3, 1, 9, 0, tzinfo=UTC)]

    def clock() -> datetime:
        t[0] += timedelta(seconds=7, microseconds=123457)
        return t[0]

    store.create_study(
        "exp",
        design="sequential",
        labels=["normal", "anencephaly", "encephalocele"],
        seed=42,
        washout_days=0.5,
        model_card={"name": "demo", "classes": ["normal", "anencephaly", "encephalocele"]},
        model_sha256="b" * 64,
        cases=[
            CaseSpec(
                f"/data/p{i}.dcm",
                ("normal", "anencephaly", "encephalocele")[i % 3],
                "histology",
                frame=i % 2,
                ga_weeks=18.25 + i / 3,
                center=f"site{i % 2}",
            )
            for i in range(6)
        ],
    )
    for k, r in enumerate(("Ana", "Ben")):
        store.add_reader(r, "sonographer" if k else "radiologist", 2.5 + k)
        store.enrol("exp", r)

    def ai(case: Any) -> AIOutput:
        p = (case.case_id % 5) / 10
        return AIOutput("c" * 64, {"normal": 0.1 + p, "anencephaly": 0.6 - p, "encephalocele": 0.3})

    for reader, n_steps in (("Ana", 12), ("Ben", 7)):
        rs = ReadingSession(store, "exp", reader, ai_provider=ai, clock=clock)
        for i in range(n_steps):
            step = rs.begin()
            assert step is not None
            if step.condition == "aided":
                rs.get_ai()
            label = ("normal", "anencephaly", "encephalocele")[(i * 7 + len(reader)) % 3]
            rs.submit(label, (i * 13) % 101, (i * 29) % 101, active_ms=1000 + 37 * i,
                      heatmap_visible=bool(i % 2), free_text=f"note {i}" if i % 4 == 0 else None)  # fmt: skip


def test_export_equals_sqlite_export(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = {}
    for name, url in (("sqlite", str(tmp_path / "s.db")), ("postgresql", pg_url)):
        counter = itertools.count()
        monkeypatch.setattr(uuid, "uuid4", lambda c=counter: uuid.UUID(int=next(c)))
        stamp = [datetime(2025, 1, 1, tzinfo=UTC)]

        def fixed_now(stamp: list[datetime] = stamp) -> datetime:
            stamp[0] += timedelta(milliseconds=1)
            return stamp[0]

        monkeypatch.setattr(repo, "utcnow", fixed_now)
        store = open_store(url)
        _scripted_study(store)
        paths = export_all(store, "exp", tmp_path / name)
        store.close()
        exports[name] = {k: p.read_bytes() for k, p in paths.items()}
    assert set(exports["sqlite"]) == {"long_csv", "json", "imrmc", "imrmc_ids", "mrmcaov"}
    assert exports["sqlite"]["long_csv"].count(b"\n") == 1 + 12 + 7
    for kind, content in exports["sqlite"].items():
        assert exports["postgresql"][kind] == content, kind


WRITER = """
import sys
from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession
from fetal_viewer.core.store import open_store
from fetal_viewer.errors import ProtocolError, StoreError
import time
url, reader = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()  # all processes open the store at the same moment
store = open_store(url)  # the schema may not exist yet: three processes migrate at once
deadline = time.monotonic() + 60
while True:  # wait for the coordinator to create the study and enrol this reader
    try:
        rs = ReadingSession(store, "s", reader,
                            ai_provider=lambda c: AIOutput("sha", {"normal": .5, "x": .5}))
        break
    except (StoreError, ProtocolError):
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
n = dup = 0
while (step := rs.begin()) is not None:
    try:
        if step.condition == "aided":
            rs.get_ai()
        rs.submit("x", 50, 50, active_ms=5)
        n += 1
    except ProtocolError:  # the same reader in another process stored this step first
        dup += 1
        rs.reload()
print(n, dup, store.retries)
"""


def test_processes_reading_at_once_lose_and_duplicate_nothing(pg_url: str) -> None:
    """R1 and R2 read at once, and R2 a second time in another process (two windows): every
    step is stored exactly once; the schema is created once although all start together."""
    n_cases = 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, pg_url, r],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ("R1", "R2", "R2")
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        store = open_store(pg_url)
        store.create_study(
            "s",
            design="sequential",
            labels=["normal", "x"],
            seed=3,
            cases=[CaseSpec(f"/p/{i}", "x") for i in range(n_cases)],
        )
        for r in ("R1", "R2"):
            store.add_reader(r)
            store.enrol("s", r)
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    counts = [tuple(map(int, o[0].split())) for o in outs]
    assert counts[0][:2] == (2 * n_cases, 0)
    assert counts[1][0] + counts[2][0] == 2 * n_cases  # each R2 step stored by one of them
    st = store.get_study("s")
    reads = store.reads(st.id, include_superseded=True)
    assert len(reads) == 4 * n_cases and len({r.uid for r in reads}) == 4 * n_cases
    assert len({(r.reader_id, r.case_id, r.condition) for r in reads}) == 4 * n_cases
    assert _revision(store) == head_revision()
    store.close()


def _conflicting_transaction(
    server: PgServer, dbname: str, session_id: int, times: int
) -> tuple[Callable[..., None], list[BaseException]]:
    """An ``after_cursor_execute`` hook: after the store inserts a read, another SERIALIZABLE
    transaction reads the reads table and writes the session row the store has read, and
    commits first. That is a read/write cycle, so PostgreSQL aborts the store's transaction
    with a serialization failure (SQLSTATE 40001): a real one, not a mock. The list returned
    collects failures of the other transaction (there must be none)."""
    import psycopg

    left = [times]
    failures: list[BaseException] = []

    def hook(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if left[0] <= 0 or not statement.lstrip().upper().startswith("INSERT INTO READS"):
            return
        left[0] -= 1
        try:
            with server.connect(dbname) as other:
                other.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
                other.execute("SELECT count(*) FROM reads").fetchone()
                other.execute(
                    "UPDATE reading_sessions SET ended_at = ended_at WHERE id = %s", (session_id,)
                )
                other.commit()
        except psycopg.Error as exc:
            failures.append(exc)

    return hook, failures


def test_serialization_failures_are_retried(
    pg_server: PgServer, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    dbname = make_url(pg_url).database
    assert dbname is not None
    store = open_store(pg_url)
    store.retry_base_delay_s = 0.001
    store.create_study(
        "s", design="sequential", labels=["normal", "x"], seed=1,
        cases=[CaseSpec(f"/p/{i}", "x") for i in range(3)],
    )  # fmt: skip
    store.add_reader("R1")
    store.enrol("s", "R1")
    rs = ReadingSession(store, "s", "R1", ai_provider=lambda c: AI)
    hook, failures = _conflicting_transaction(pg_server, dbname, rs.session.id, times=2)
    event.listen(store.engine, "after_cursor_execute", hook)
    with caplog.at_level("INFO", logger="fetal_viewer.core.store.repository"):
        read = rs.submit("normal", 40, 10, active_ms=100)
    assert failures == [] and store.retries == 2
    assert sum("serializ" in m for m in caplog.messages) == 2, caplog.messages
    st = store.get_study("s")
    assert [r.uid for r in store.reads(st.id)] == [read.uid]  # stored once

    # a conflict on every attempt: bounded, a clear error, nothing stored, no step lost
    store.max_retries = 3
    store.retries = 0
    event.remove(store.engine, "after_cursor_execute", hook)
    hook, failures = _conflicting_transaction(pg_server, dbname, rs.session.id, times=1000)
    event.listen(store.engine, "after_cursor_execute", hook)
    step = rs.current()
    assert step is not None and step.condition == "aided"
    rs.get_ai()
    with pytest.raises(StoreError, match="too busy") as info:
        rs.submit("x", 90, 90, active_ms=100)
    assert info.value.fix and store.retries == 3 and failures == []
    assert len(store.reads(st.id, include_superseded=True)) == 1
    event.remove(store.engine, "after_cursor_execute", hook)
    again = rs.current()
    assert again is not None and (again.case, again.condition) == (step.case, "aided")
    aided = rs.submit("x", 90, 90, active_ms=100)
    assert aided.changed_from_unaided is True
    assert len(store.reads(st.id)) == 2
    store.close()
