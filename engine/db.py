"""Database access: the SQLAlchemy engine, sessions and the declarative base.

Services take a `Session`, flush, and never commit: the CLI command or the web request owns the
transaction (`transaction()` below).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from sqlalchemy import DateTime, Engine, MetaData, Text, TypeDecorator, create_engine, event, exc
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from . import checkpoints, config, writes
from .errors import Conflict

#: PostgreSQL's INTEGER, the type of ids, versions and priorities: a number outside it names no row
INTEGER_RANGE = (-2**31, 2**31 - 1)
MAX_ID = INTEGER_RANGE[1]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


# Reusable column shapes.
intpk = Annotated[int, mapped_column(primary_key=True, autoincrement=True)]
# Serialised workflow state is TEXT on every backend, never jsonb: jsonb reorders keys (DESIGN.md).
text = Annotated[str, mapped_column(Text)]


def make_engine(url: str | None = None, *, background_checkpoints: bool = False, **kwargs) -> Engine:
    """`background_checkpoints`: on a SQLite file, checkpoint its WAL in a thread rather than in the
    commits (see `engine.checkpoints`), for a process that serves requests."""
    url = url or config.database_url()
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # Let SQLAlchemy emit BEGIN itself, so that a write transaction takes the lock early
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # on the driver: through SQLAlchemy's execution it cost more than the statement (every request)
            driver = conn.connection.driver_connection
            try:
                driver.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:  # as SQLAlchemy raises it ("database is locked" after the timeout)
                raise exc.DBAPIError.instance("BEGIN IMMEDIATE", None, error, sqlite3.Error,
                                              dialect=conn.dialect) from error

        path = engine.url.database
        if background_checkpoints and path and path != ":memory:" and "mode=memory" not in str(engine.url):
            checkpoints.install(engine, path)

    else:
        engine = create_engine(url, **kwargs)
        _ping_idle_connections(engine)
    writes.install(engine)
    return engine


#: a pooled connection unused for longer than this is tested before it is handed out
IDLE_PING_SECONDS = 10.0


def _ping_idle_connections(engine: Engine) -> None:
    """Test a pooled connection before use if it has been idle (the database may have restarted or
    dropped it meanwhile); a dead one is replaced. Unlike `pool_pre_ping`, a connection that was in
    use a moment ago is not pinged: that round trip would cost every transaction ~0.1 ms."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _used(_dbapi_connection, record):
        record.info["used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("used", 0.0) < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("the pooled connection does not answer")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise Conflict("the case was changed by someone else at the same time; please try again") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
