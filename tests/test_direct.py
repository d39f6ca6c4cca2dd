"""Reads straight from the driver (engine.direct) and the user loader built on them: the same values and
objects an ORM query gives, in the same session, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import DBAPIError

from engine import direct, identity, writes
from engine.models import Membership, Unit, User

USER_ROW = select(*(column for _, column in direct.loaded_columns(User))).where(User.username == bindparam("name"))
BROKEN = select(func.no_such_function(User.id)).where(User.id == bindparam("user_id"))
INSERT_UNIT = Unit.__table__.insert()


def _orm_values(user: User) -> dict:
    return {key: getattr(user, key) for key, _ in direct.loaded_columns(User)}


def test_fetch_converts_values_as_the_orm_does(org):
    with org.transaction() as s:
        s.get(User, 1).locked_until = org.clock.now()
    with org.transaction() as s:
        (row,) = direct.fetch(s.connection(), USER_ROW, {"name": "alice"})
        values = dict(zip((key for key, _ in direct.loaded_columns(User)), row, strict=True))
        assert values == _orm_values(s.scalar(select(User).where(User.username == "alice")))
        assert values["is_active"] is True and values["locked_until"].tzinfo is not None


def test_fetch_sends_queued_writes_first_and_raises_sqlalchemy_errors(org):
    with org.transaction() as s:
        conn = s.connection()
        writes.add(conn, INSERT_UNIT, {"id": "neu", "name": "Neu", "kind": "service", "territories": ""})
        rows = direct.fetch(conn, select(Unit.name).where(Unit.id == bindparam("unit_id")), {"unit_id": "neu"})
        assert rows == [["Neu"]]
    with org.transaction() as s, pytest.raises(DBAPIError, match="no_such_function"):
        direct.fetch(s.connection(), BROKEN, {"user_id": 1})


def test_an_adopted_row_is_the_session_object_and_its_changes_are_saved(org):
    with org.transaction() as s:
        (row,) = direct.fetch(s.connection(), USER_ROW, {"name": "bob"})
        user = direct.adopt(s, User, list(zip((key for key, _ in direct.loaded_columns(User)), row, strict=True)))
        assert s.scalar(select(User).where(User.username == "bob")) is user  # a query finds it, not a copy
        assert not s.dirty
        user.display_name = "Bob B."
    with org.transaction() as s:
        assert s.scalar(select(User.display_name).where(User.username == "bob")) == "Bob B."


def test_adopting_refreshes_an_object_the_session_has_loaded(org):
    with org.transaction() as s:
        loaded = s.scalar(select(User).where(User.username == "bob"))
        values = _orm_values(loaded) | {"display_name": "changed elsewhere"}
        assert direct.adopt(s, User, list(values.items())) is loaded
        assert loaded.display_name == "changed elsewhere" and not s.dirty


def test_load_user_gives_the_user_with_their_memberships(org):
    with org.transaction() as s:
        lena_id = s.scalar(select(User.id).where(User.username == "lena"))
        carla_id = s.scalar(select(User.id).where(User.username == "carla"))
        s.execute(Membership.__table__.delete().where(Membership.user_id == carla_id))
    with org.transaction() as s:
        lena = identity.load_user(s, lena_id)
        assert lena.username == "lena" and lena.is_active is True
        assert sorted((m.unit_id, m.role) for m in lena.memberships) == [("rz-west", "counsellor"), ("rz-west", "lead")]
        assert all(m.user is lena for m in lena.memberships)
        assert identity.groups_of(lena) >= {"rz-west", "rz-west:lead"}
        assert identity.load_user(s, carla_id).memberships == []
        assert identity.load_user(s, 999_999) is None
        identity.add_membership(s, lena, "lks", "coordinator")  # the adopted collection takes changes
    with org.transaction() as s:
        assert ("lks", "coordinator") in {(m.unit_id, m.role) for m in identity.load_user(s, lena_id).memberships}
