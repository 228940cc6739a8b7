"""Engine, session factory and schema upgrades of the reader-study store.

:func:`make_engine` builds one SQLAlchemy engine per database. For SQLite it turns on WAL,
``synchronous=FULL`` (a commit is on disk before it returns), foreign keys and a busy
timeout, and starts every transaction with ``BEGIN IMMEDIATE`` so that two processes
writing at once wait for each other instead of failing half-way. For PostgreSQL (optional,
needs ``psycopg``) every transaction is SERIALIZABLE; :func:`is_retryable` tells the
serialization failures and deadlocks that the repository retries. :func:`upgrade_to_head`
brings a database to the newest Alembic revision, after a backup copy when it held data
(SQLite) or under an advisory lock, so that workstations starting at once migrate only once
(PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from fetal_viewer.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_BUSY_TIMEOUT_S = 30.0
#: SQLSTATEs of errors a SERIALIZABLE transaction may meet and that succeed when retried
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock
#: key of the PostgreSQL advisory lock held while migrating ("fetalvw" in ASCII)
MIGRATION_LOCK_KEY = 0x666574616C7677


def default_db_path() -> Path:
    """``reader_studies.sqlite`` in the user data folder (platformdirs)."""
    from fetal_viewer.core.appdirs import data_dir

    return data_dir() / "reader_studies.sqlite"


def to_url(url_or_path: str | Path | None) -> str:
    """A SQLAlchemy URL for a path, a ``sqlite:///`` or ``postgresql://`` URL, or None."""
    if url_or_path is None:
        url_or_path = default_db_path()
    text = str(url_or_path)
    if "://" in text:
        for prefix in ("postgresql://", "postgres://"):
            if text.startswith(prefix):
                text = "postgresql+psycopg://" + text[len(prefix) :]
        return text
    path = Path(text).expanduser().resolve()
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other back ends or in-memory)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    db = u.database
    if db.startswith("file:"):
        db = db[len("file:") :].split("?", 1)[0]
    return Path(db)


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if engine is not None:
        # ConfigParser interpolates "%": escape it (percent-encoded socket paths, passwords)
        url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def make_engine(url: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    """An engine with the store's connection settings (see the module docstring)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is not None and not path.parent.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    "Cannot create the folder of the database.",
                    why=str(exc),
                    fix="Choose another location with --db PATH.",
                    path=path.parent,
                ) from exc
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
        )
        timeout_ms = int(busy_timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout={timeout_ms}")
                cur.execute("PRAGMA foreign_keys=ON")
                mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal" and not _read_only(dbapi_conn):
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        _require_psycopg(url)
        return create_engine(url, pool_pre_ping=True, isolation_level="SERIALIZABLE")
    return create_engine(url)


def _require_psycopg(url: str) -> None:
    driver = make_url(url).get_driver_name()
    module = {"psycopg": "psycopg", "psycopg2": "psycopg2"}.get(driver, driver)
    try:
        __import__(module)
    except ImportError as exc:
        package = '"psycopg[binary]"' if module == "psycopg" else module
        raise StoreError(
            "PostgreSQL support is not installed.",
            why=f"A PostgreSQL URL was given, but the Python driver {module!r} cannot be "
            f"imported ({exc}).",
            fix=f"Install it into fetal-viewer's environment: pip install {package}; or use a "
            "SQLite file with --db PATH.",
        ) from exc


def is_retryable(exc: BaseException) -> bool:
    """True for a serialization failure or deadlock (PostgreSQL SQLSTATE 40001 / 40P01),
    also when wrapped in a SQLAlchemy error or in the :class:`StoreError` made from one."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        code = getattr(cur, "sqlstate", None) or getattr(cur, "pgcode", None)
        if code in RETRYABLE_SQLSTATES:
            return True
        orig = getattr(cur, "orig", None)
        cur = orig if isinstance(orig, BaseException) else cur.__cause__
    return False


def _read_only(dbapi_conn: Any) -> bool:
    try:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA query_only")
        return False
    except sqlite3.Error:  # pragma: no cover
        return True


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())


def backup_sqlite(path: Path, revision: str | None) -> Path:
    """Copy a SQLite database (consistently, with the backup API) beside itself."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.backup-{revision or 'none'}-{stamp}")
    src = sqlite3.connect(str(path))
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return target


def upgrade_to_head(engine: Engine) -> Path | None:
    """Bring the database to the newest revision. Returns the backup path if one was made.

    Raises :class:`StoreError` for a database made by a newer (or unknown) version.
    """
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    rev = current_revision(engine)
    if rev is None and _has_tables(engine):
        # another process may have created the schema between the two reads; its tables
        # and its revision commit together, so now that the tables are seen, look again
        rev = current_revision(engine)
        if rev is None:
            raise StoreError(
                "The file is a database but not a fetal-viewer reader-study store.",
                why="It has tables but no schema revision.",
                fix="Choose another file with --db.",
                path=str(engine.url),
            )
    if rev == head:
        return None
    if rev is not None:
        try:
            script.get_revision(rev)
        except Exception as exc:
            raise StoreError(
                "The database was written by a newer or unknown version of fetal-viewer.",
                why=f"Its schema revision is {rev!r}; this version knows up to {head!r}.",
                fix="Open it with the newer fetal-viewer that made it, or choose another "
                "database with --db.",
                path=str(engine.url),
            ) from exc
    backup: Path | None = None
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    if rev is not None and path is not None and path.exists():
        backup = backup_sqlite(path, rev)
        log.warning("upgrading %s from %s to %s; backup at %s", path, rev, head, backup)
    if engine.dialect.name == "postgresql":
        # READ COMMITTED, so that after waiting for the lock the revision another process
        # has just committed is seen and Alembic has nothing left to do
        committed = engine.connect().execution_options(isolation_level="READ COMMITTED")
        with committed as conn, conn.begin():
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return None
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return backup


def upgrade_to(engine: Engine, revision: str) -> None:
    """Upgrade to a given revision (tests build old databases with it)."""
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def translate(exc: BaseException, where: str) -> StoreError:
    """A :class:`StoreError` with what/why/fix for a database error."""
    text = str(getattr(exc, "orig", exc) or exc)
    low = text.lower()
    if is_retryable(exc):
        return StoreError(
            "The database stayed too busy with other workstations' changes.",
            why=f"{text} (while {where}); the change was retried and conflicted every time. "
            "Nothing of it was saved.",
            fix="Try again; if it keeps happening, fewer workstations should write at once.",
        )
    if "locked" in low or "busy" in low:
        return StoreError(
            "The database is locked by another program.",
            why=f"{text} (while {where}); another fetal-viewer or a backup tool holds a lock "
            "longer than the wait time.",
            fix="Close the other program or wait and retry; for many workstations use one "
            "database file each and merge them, or a shared PostgreSQL server.",
        )
    if "readonly" in low or "read-only" in low or "read only" in low:
        return StoreError(
            "The database is read-only.",
            why=f"{text} (while {where}).",
            fix="Make the file and its folder writable, or copy it somewhere writable and use "
            "--db with the copy.",
        )
    if "full" in low or "no space" in low:
        return StoreError(
            "The disk holding the database is full.",
            why=f"{text} (while {where}); the last answer was NOT saved.",
            fix="Free disk space, then submit again; nothing stored before is lost.",
        )
    if "not a database" in low or "malformed" in low or "encrypted" in low:
        return StoreError(
            "The file is not a readable fetal-viewer database.",
            why=f"{text} (while {where}).",
            fix="Choose the right file with --db, or restore it from a backup copy.",
        )
    if "unable to open" in low or "could not connect" in low or "connection" in low:
        return StoreError(
            "Cannot open the database.",
            why=f"{text} (while {where}).",
            fix="Check the path or URL given to --db and that its folder exists and is "
            "writable (or that the server runs).",
        )
    return StoreError(f"Database error while {where}.", why=text, fix="See the log for details.")


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, DBAPIError, sqlite3.Error) as exc:
        raise translate(exc, where) from exc
