"""Writes that need no answer at once, sent to the database together.

Saving a change to an instance writes six to eight rows: the completed task, its candidate entries,
the audit entry, the new tasks and theirs, the instance. Sent one at a time through SQLAlchemy,
each costs its statement overhead and, on PostgreSQL, a round trip (two process wake-ups, the
larger part of a completion's time there). Queued here instead, they go out together just before
their connection is used for anything else (any statement, the commit), or when `send` is called:
on PostgreSQL in one round trip (psycopg's pipeline mode), on SQLite one after another. Both go
straight to the DBAPI connection; each statement is compiled once per dialect and its parameters
are converted as SQLAlchemy converts them.

Answers come back only where a caller asks for them, through a `then(rowcount, rows)` callback that
runs after the send (the rows of an INSERT ... RETURNING, an UPDATE's row count). A callback may
raise, and so may the database: the error surfaces at the send, as SQLAlchemy's exception, and the
transaction is rolled back as usual. A rollback discards what is queued.

Only statements built once (module constants) may be queued: the compiled form is cached by the
statement's identity. `compiled_for` gives the same compiled form to the reads that go straight to
the driver (`engine.direct`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event, exc
from sqlalchemy.sql import ClauseElement

Then = Callable[[int, list[tuple]], None]

_KEY = "fallwerk.writes"
_INSTALLED: weakref.WeakSet[Engine] = weakref.WeakSet()


@dataclass(frozen=True)
class _Compiled:
    compiled: Any  # SQLAlchemy's compiled statement
    statement: ClauseElement  # kept alive, so that its id (the cache key) is not reused
    names: tuple[str, ...] | None  # positional parameter order (SQLite), or None (named: PostgreSQL)
    processors: Mapping[str, Callable[[Any], Any]]
    returns_rows: bool

    @property
    def sql(self) -> str:
        return self.compiled.string

    @functools.cached_property
    def result_processors(self) -> list:
        """For a read: per column, what SQLAlchemy does to the value the driver returns (or None)."""
        return [column.type._cached_result_processor(self.compiled.dialect, None)
                for column in self.statement.selected_columns]

    def parameters(self, values: Mapping) -> Sequence | Mapping:
        params = self.compiled.construct_params(values, escape_names=False)
        for name, process in self.processors.items():
            if name in params:
                params[name] = process(params[name])
        return params if self.names is None else [params[name] for name in self.names]


_CACHE: dict[tuple[int, str, tuple[str, ...]], _Compiled] = {}  # by (id of statement, dialect, parameter names)


def compiled_for(statement: ClauseElement, dialect) -> _Compiled:
    """`statement` (a module constant) compiled for `dialect`, to run straight on the driver: its SQL, and
    `parameters(values)` converted as SQLAlchemy converts them."""
    return _compile(statement, dialect, ())


def _compile(statement: ClauseElement, dialect, keys: tuple[str, ...]) -> _Compiled:
    cache_key = (id(statement), dialect.name, keys)
    found = _CACHE.get(cache_key)
    if found is None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("statements with expanding parameters cannot be queued")
        found = _CACHE[cache_key] = _Compiled(
            compiled, statement, tuple(compiled.positiontup) if compiled.positional else None,
            dict(compiled._bind_processors), bool(getattr(statement, "_returning", ())))
    return found


@dataclass
class _Write:
    statement: ClauseElement
    rows: list[Mapping]
    then: Then | None


def add(conn: Connection, statement: ClauseElement, params: Mapping | Sequence[Mapping],
        then: Then | None = None) -> None:
    """Queue `statement` with one parameter set or several (executemany) on `conn`'s transaction."""
    rows = [params] if isinstance(params, Mapping) else list(params)
    if not rows:
        return
    conn.info.setdefault(_KEY, []).append(_Write(statement, rows, then))
    if conn.engine not in _INSTALLED:  # nobody would send it later
        send(conn)


def mark(conn: Connection) -> int:
    """A position in the queue, for `discard`."""
    return len(conn.info.get(_KEY, ()))


def discard(conn: Connection, position: int) -> None:
    """Forget what was queued after `mark` returned `position` (its work was abandoned)."""
    del conn.info.get(_KEY, [])[position:]


def send(conn: Connection) -> None:
    """Send what is queued on `conn`, then run the callbacks."""
    queued = conn.info.pop(_KEY, None)
    if queued:
        _send(conn.connection.driver_connection, conn.dialect, queued)


def _send(dbapi_connection, dialect, queued: list[_Write]) -> None:
    prepared = []
    for write in queued:
        form = _compile(write.statement, dialect, tuple(write.rows[0]))
        prepared.append((write, form, [form.parameters(row) for row in write.rows]))
    if dialect.name == "postgresql":
        answers = _send_pipelined(dbapi_connection, dialect, prepared)
    else:
        answers = _send_one_by_one(dbapi_connection, dialect, prepared)
    for (write, _form, _params), (rowcount, rows) in zip(prepared, answers, strict=True):
        if write.then is not None:
            write.then(rowcount, rows)


def _send_pipelined(dbapi_connection, dialect, prepared) -> list[tuple[int, list[tuple]]]:
    cursors = []
    try:
        with dbapi_connection.pipeline():
            for _write, form, params in prepared:
                cursor = dbapi_connection.cursor()
                if len(params) == 1:
                    cursor.execute(form.sql, params[0])
                else:
                    cursor.executemany(form.sql, params, returning=form.returns_rows)
                cursors.append((cursor, form))
        answers = []
        for cursor, form in cursors:
            rows = []
            if form.returns_rows:
                rows += cursor.fetchall()
                while cursor.nextset():
                    rows += cursor.fetchall()
            answers.append((cursor.rowcount, rows))
            cursor.close()
        return answers
    except dialect.loaded_dbapi.Error as error:  # the server names the failing statement in its message
        statements = ";\n".join(form.sql for _write, form, _params in prepared)
        raise exc.DBAPIError.instance(statements, None, error, dialect.loaded_dbapi.Error, dialect=dialect) from error


def _send_one_by_one(dbapi_connection, dialect, prepared) -> list[tuple[int, list[tuple]]]:
    cursor = dbapi_connection.cursor()
    answers = []
    try:
        for _write, form, params in prepared:
            rowcount, rows = 0, []
            for values in params:
                cursor.execute(form.sql, values)
                if form.returns_rows:
                    rows += cursor.fetchall()
                rowcount += max(cursor.rowcount, 0)
            answers.append((rowcount, rows))
        return answers
    except dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(form.sql, values, error, dialect.loaded_dbapi.Error, dialect=dialect) from error
    finally:
        cursor.close()


def install(engine: Engine) -> None:
    """Send queued writes before any other statement and before the commit; drop them on rollback
    and when the connection goes back to the pool."""

    @event.listens_for(engine, "before_execute")
    def _before_execute(conn, *_args):
        if _KEY in conn.info:
            send(conn)

    @event.listens_for(engine, "commit")
    def _before_commit(conn):
        if _KEY in conn.info:
            send(conn)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn):
        if not conn.invalidated:  # an invalidated one has no `info` now; its checkin clears it
            conn.info.pop(_KEY, None)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info.pop(_KEY, None)

    _INSTALLED.add(engine)
