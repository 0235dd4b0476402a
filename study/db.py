"""Engine and session set-up for any SQLAlchemy URL (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateColumn

from colorizer.errors import UserError
from study import DEFAULT_DB_URL
from study.models import Base

# How long a SQLite writer waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000

# SQLite has one writer at a time, and a writer that finds the lock taken sleeps in steps of up to
# 100 ms before trying again. Queueing this process's writers on a Python lock instead wakes each
# one as soon as the previous commit is done, which is what keeps the vote p99 low under load.
_SQLITE_WRITE_LOCK = threading.Lock()

# Enough connections for the server's worker threads, so a request never waits for one.
POOL_SIZE, POOL_OVERFLOW = 10, 30


def _tune_sqlite(dbapi_connection, _record) -> None:
    # WAL lets the page's readers run while a vote is being written; synchronous=FULL keeps every
    # acknowledged vote on disk even if the machine (not only the server process) dies.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str = DEFAULT_DB_URL, pool_size: int = POOL_SIZE, max_overflow: int = POOL_OVERFLOW) -> Engine:
    """An engine for `url`, with SQLite's pragmas applied to every new connection."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(
                parsed,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                pool_size=pool_size,
                max_overflow=max_overflow,
            )
            event.listen(engine, "connect", _tune_sqlite)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise UserError(f"bad database URL {url!r}: {error}") from None
    return engine


def write_guard(session: Session) -> AbstractContextManager:
    """Hold this around a write transaction: it serializes SQLite writers in this process."""
    return _SQLITE_WRITE_LOCK if session.get_bind().dialect.name == "sqlite" else contextlib.nullcontext()


@dataclass(frozen=True)
class Database:
    """An open database: the engine (one connection pool) and the factory of sessions bound to it."""

    engine: Engine
    sessions: sessionmaker[Session]

    def session(self) -> Session:
        return self.sessions()

    def dispose(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()


def add_missing_columns(engine: Engine) -> None:
    """Add the nullable columns that later versions introduced to tables made by an earlier one.

    `create_all` creates missing tables but never alters existing ones, and a study database must
    stay usable across upgrades; new columns are nullable, so old rows stay valid (NULL = not recorded).
    """
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name not in existing_tables:
                continue
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    spec = CreateColumn(column).compile(dialect=engine.dialect)
                    connection.exec_driver_sql(f"ALTER TABLE {quote(table.name)} ADD COLUMN {spec}")


def add_missing_indexes(engine: Engine) -> None:
    """Create the indexes that later versions declared on tables an earlier one made (`create_all`
    only makes those of new tables). Their columns are new too, so existing rows (NULL) cannot collide."""
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            index.create(engine, checkfirst=True)


def open_database(url: str = DEFAULT_DB_URL, must_exist: bool = False) -> Database:
    """Connect, create any missing tables and columns, and return the open database.

    `must_exist` is for readers (export, analysis): a mistyped SQLite path must not quietly become a
    new empty database.
    """
    engine = make_engine(url)
    database = engine.url.database
    if (must_exist and engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
            and not Path(database).is_file()):
        engine.dispose()
        raise UserError(f"no database at {database}")
    try:
        add_missing_columns(engine)
        Base.metadata.create_all(engine)
        add_missing_indexes(engine)
    except OperationalError as error:
        engine.dispose()
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise UserError(f"cannot open database {engine.url.render_as_string()}: {reason}") from None
    return Database(engine, sessionmaker(engine, expire_on_commit=False))


@contextlib.contextmanager
def database_session(url: str = DEFAULT_DB_URL, must_exist: bool = False) -> Iterator[Session]:
    """One session for a one-off job (prepare, export); the connection pool is closed afterwards."""
    database = open_database(url, must_exist)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()
