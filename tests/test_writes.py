"""Queued writes (engine.writes): sent before anything else touches the connection, in order, with the
answers callers ask for; lost with a rollback, never half-sent; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine import writes
from engine.models import AuditEvent, Unit

INSERT_UNIT = insert(Unit.__table__)
RENAME_UNIT = update(Unit.__table__).where(Unit.id == bindparam("unit_id")).values(name=bindparam("name"))
INSERT_EVENT = insert(AuditEvent.__table__).returning(AuditEvent.id, AuditEvent.at)


def _unit(unit_id: str, name: str | None = None) -> dict:
    return {"id": unit_id, "name": name or unit_id, "kind": "landkreis", "territories": ""}


def _names(db) -> dict[str, str]:
    with db.transaction() as s:
        return dict(s.execute(select(Unit.id, Unit.name)).all())


def test_queued_writes_go_out_in_order_before_the_next_statement(db):
    answers = []
    with db.transaction() as s:
        conn = s.connection()
        writes.add(conn, INSERT_UNIT, [_unit("u1"), _unit("u2")])
        writes.add(conn, RENAME_UNIT, {"unit_id": "u1", "name": "Eins"},
                   then=lambda rowcount, rows: answers.append(("rename", rowcount, rows)))
        writes.add(conn, RENAME_UNIT, {"unit_id": "nobody", "name": "x"},
                   then=lambda rowcount, rows: answers.append(("none", rowcount, rows)))
        assert answers == []  # nothing sent yet
        assert dict(s.execute(select(Unit.id, Unit.name)).all()) == {"u1": "Eins", "u2": "u2"}  # sent first
        assert answers == [("rename", 1, []), ("none", 0, [])]
    assert _names(db) == {"u1": "Eins", "u2": "u2"}


def test_the_commit_sends_what_is_queued_and_returning_rows_reach_the_callback(db):
    at = datetime(2026, 11, 26, 23, 30, 15, 123456, tzinfo=UTC)
    returned = []
    with db.transaction() as s:
        writes.add(s.connection(), INSERT_EVENT, [
            {"at": at, "actor": "alice", "action": "test", "changed_keys": "", "detail": ""},
            {"at": at, "actor": "bob", "action": "test", "changed_keys": "", "detail": ""},
        ], then=lambda _rowcount, rows: returned.extend(rows))
    assert len(returned) == 2 and returned[0][0] < returned[1][0]
    with db.transaction() as s:
        stored = s.execute(select(AuditEvent.actor, AuditEvent.at).order_by(AuditEvent.id)).all()
    assert stored == [("alice", at), ("bob", at)]  # the UTC instant survives SQLite's naive storage


def test_a_rollback_drops_the_queue_and_the_pooled_connection_does_not_send_it_later(db):
    with pytest.raises(RuntimeError), db.transaction() as s:
        writes.add(s.connection(), INSERT_UNIT, _unit("lost"))
        raise RuntimeError("the change fails")
    with db.transaction() as s:
        s.connection()
        writes.add(s.connection(), INSERT_UNIT, _unit("kept"))
    assert _names(db) == {"kept": "kept"}


def test_a_failing_write_surfaces_as_sqlalchemy_error_and_nothing_of_the_change_stays(db):
    with db.transaction() as s:
        writes.add(s.connection(), INSERT_UNIT, _unit("u1"))
    with pytest.raises(IntegrityError), db.transaction() as s:
        conn = s.connection()
        writes.add(conn, RENAME_UNIT, {"unit_id": "u1", "name": "renamed"})
        writes.add(conn, INSERT_UNIT, _unit("u2"))
        writes.add(conn, INSERT_UNIT, _unit("u1"))  # the key exists
        writes.send(conn)
    assert _names(db) == {"u1": "u1"}


def test_a_failing_callback_stops_the_change(db):
    def refuse(rowcount, _rows):
        raise LookupError(f"{rowcount} rows")

    with pytest.raises(LookupError), db.transaction() as s:
        writes.add(s.connection(), INSERT_UNIT, _unit("u1"), then=refuse)
        s.execute(select(func.count()).select_from(Unit))
    assert _names(db) == {}


def test_work_given_up_is_discarded_from_the_queue(db):
    with db.transaction() as s:
        conn = s.connection()
        writes.add(conn, INSERT_UNIT, _unit("u1"))
        position = writes.mark(conn)
        writes.add(conn, INSERT_UNIT, _unit("u2"))
        writes.discard(conn, position)
    assert _names(db) == {"u1": "u1"}


def test_on_an_engine_without_the_events_a_write_goes_out_at_once(db):
    from sqlalchemy import create_engine

    plain = create_engine(db.url)
    try:
        with plain.begin() as conn:
            writes.add(conn, INSERT_UNIT, _unit("u1"))
            assert writes.mark(conn) == 0
    finally:
        plain.dispose()
    assert _names(db) == {"u1": "u1"}


def test_statements_with_expanding_parameters_are_refused(db):
    statement = update(Unit.__table__).where(Unit.id.in_(bindparam("ids", expanding=True))).values(name="x")
    with db.transaction() as s, pytest.raises(ValueError, match="expanding"):
        writes.add(s.connection(), statement, {"ids": ["a"]})
        writes.send(s.connection())


def test_a_savepoint_keeps_the_order_what_its_rollback_undoes_is_gone(db):
    with db.transaction() as s:
        writes.add(s.connection(), INSERT_UNIT, _unit("before"))
        savepoint = s.begin_nested()
        writes.add(s.connection(), INSERT_UNIT, _unit("inside"))
        savepoint.rollback()
        writes.add(s.connection(), INSERT_UNIT, _unit("after"))
    assert _names(db) == {"before": "before", "after": "after"}
