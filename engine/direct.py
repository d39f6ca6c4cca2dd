"""Reads straight from the driver, for the few queries that run on every request or completion.

SQLAlchemy's processing of a result (column descriptions, the ORM's loading, the identity map) costs
more than a small indexed query itself. `fetch` runs a statement built once on the DBAPI cursor, with
SQLAlchemy's compiled SQL and its value conversions both ways, and returns plain rows; `adopt` makes a
row the session's object, as an ORM query with `populate_existing` would. Both stay within the
session's transaction: what `engine.writes` has queued goes out first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, exc, inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql import Select

from . import writes


def loaded_columns(model) -> list[tuple[str, Any]]:
    """(attribute, column) of what an ORM query loads of `model`: its columns that are not deferred, the
    primary key first."""
    primary_key = list(inspect(model).primary_key)
    columns = [(prop.key, prop.columns[0]) for prop in inspect(model).column_attrs if not prop.deferred]
    assert [column for _, column in columns[:len(primary_key)]] == primary_key
    return columns


def fetch(conn: Connection, statement: Select, params: dict) -> list[list]:
    """The rows of `statement` (a module constant) on `conn`, each a list of values converted as
    SQLAlchemy converts them. A database error is raised as SQLAlchemy's exception."""
    writes.send(conn)
    form = writes.compiled_for(statement, conn.dialect)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(form.sql, form.parameters(params))
        found = cursor.fetchall()
    except conn.dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(form.sql, None, error, conn.dialect.loaded_dbapi.Error,
                                      dialect=conn.dialect) from error
    finally:
        cursor.close()
    processors = form.result_processors
    return [[value if process is None else process(value) for process, value in zip(processors, row, strict=True)]
            for row in found]


def split(row: list, *groups: list[tuple[str, Any]]) -> list[list]:
    """A row of `fetch` cut into the (attribute, value) pairs of each group of `loaded_columns`, in order,
    and last the values that follow them."""
    parts, start = [], 0
    for columns in groups:
        parts.append([(key, value) for (key, _), value in zip(columns, row[start:start + len(columns)], strict=True)])
        start += len(columns)
    return [*parts, row[start:]]


def adopt(session: Session, model, values: list[tuple[str, Any]], *, key_length: int = 1):
    """The session's object for a row read straight from the driver (`values`: (attribute, value), the
    primary key's `key_length` columns first), as an ORM query with `populate_existing` would give it: a
    loaded one gets the values, else a new one joins the session's identity map the way a query's loading
    puts it there (a third of the cost of `session.add`, which cascades and checks what a loaded row
    needs not)."""
    ident = values[0][1] if key_length == 1 else tuple(value for _, value in values[:key_length])
    key = identity_key(model, ident)
    found = session.identity_map.get(key)
    if found is not None:
        for name, value in values:
            set_committed_value(found, name, value)
        return found
    obj = manager_of_class(model).new_instance()  # no __init__, no change events
    obj.__dict__.update(values)
    state = instance_state(obj)
    state.key, state.identity_token, state.session_id = key, None, session.hash_key
    session.identity_map._add_unpresent(state, key)  # as loading.py puts a loaded row there
    return obj
