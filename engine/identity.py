"""Users, units, memberships, and who is a candidate for what.

A candidate group in a model is a unit id ("lks": every member of that unit) or "unit:role"
("lks:coordinator": members of that unit with that role). A user's groups are therefore every unit
they belong to and every "unit:role" they hold.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from . import direct
from .errors import FallwerkError, NotFound
from .models import Membership, Territory, Unit, User

ROLES = ("counsellor", "lead", "coordinator", "supervisor", "admin")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    if not user.password_hash:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


#: the roles that work on cases; only they are candidates through a task's candidate groups (a unit's
#: supervisors and admins are members of it too, but never see a case's personal data: DOMAIN.md)
WORKING_ROLES = frozenset({"counsellor", "lead", "coordinator"})


def groups_of(user: User) -> set[str]:
    """The candidate groups the user belongs to: each unit they work in, and that unit with their role."""
    groups = set()
    for m in user.memberships:
        if m.role in WORKING_ROLES:
            groups.add(m.unit_id)
            groups.add(f"{m.unit_id}:{m.role}")
    return groups


def roles_of(user: User) -> set[str]:
    return {m.role for m in user.memberships}


def get_user(session: Session, username: str) -> User:
    user = session.scalars(
        select(User).where(User.username == username).options(joinedload(User.memberships))
    ).unique().first()
    if user is None:
        raise NotFound(f"Unknown user '{username}'")
    return user


_USER_COLUMNS = direct.loaded_columns(User)
#: the user's row, once per membership (or once with none)
_USER_WITH_MEMBERSHIPS = (select(*(column for _, column in _USER_COLUMNS), Membership.unit_id, Membership.role)
                          .outerjoin(Membership, Membership.user_id == User.id)
                          .where(User.id == bindparam("user_id")))


def load_user(session: Session, user_id: int) -> User | None:
    """The user with this id and their memberships, in one query read straight from the driver: every web
    request asks, and the ORM's loading of it cost several times the query."""
    rows = direct.fetch(session.connection(), _USER_WITH_MEMBERSHIPS, {"user_id": user_id})
    if not rows:
        return None
    user_values, _membership = direct.split(rows[0], _USER_COLUMNS)  # each row ends with a unit and role
    user = direct.adopt(session, User, user_values)
    memberships = [direct.adopt(session, Membership, [("user_id", user.id), ("unit_id", unit), ("role", role)],
                                key_length=3)
                   for *_, unit, role in rows if unit is not None]
    set_committed_value(user, "memberships", memberships)
    for membership in memberships:
        set_committed_value(membership, "user", user)
    return user


def add_unit(session: Session, unit_id: str, *, name: str | None = None, kind: str = "service",
             territories: list[str] | None = None) -> Unit:
    if not _NAME.match(unit_id):
        raise FallwerkError(f"Invalid unit id '{unit_id}': use lower-case letters, digits, '-', '.' or '_'")
    unit = session.get(Unit, unit_id)
    if unit is None:
        unit = Unit(id=unit_id, name=name or unit_id, kind=kind, territories="")
        session.add(unit)
    if name:
        unit.name = name
    unit.kind = kind
    if territories is not None:
        unit.territories = ",".join(territories)
    session.flush()
    return unit


def add_user(session: Session, username: str, *, now: datetime, display_name: str = "",
             email: str | None = None, password: str | None = None,
             memberships: list[tuple[str, str]] = ()) -> User:
    """Create a user, or update an existing one; memberships are (unit id, role) pairs to add."""
    if not _NAME.match(username):
        raise FallwerkError(f"Invalid user name '{username}': use lower-case letters, digits, '-', '.' or '_'")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, display_name=display_name or username, email=email, created_at=now,
                    is_active=True, locale="de", failed_logins=0)
        session.add(user)
    elif display_name:
        user.display_name = display_name
    if password is not None:
        user.password_hash = hash_password(password)
    for unit_id, role in memberships:
        add_membership(session, user, unit_id, role)
    session.flush()
    return user


def add_membership(session: Session, user: User, unit_id: str, role: str) -> None:
    if role not in ROLES:
        raise FallwerkError(f"Unknown role '{role}'; roles are: {', '.join(ROLES)}")
    if session.get(Unit, unit_id) is None:
        raise NotFound(f"Unknown unit '{unit_id}'")
    if not any(m.unit_id == unit_id and m.role == role for m in user.memberships):
        user.memberships.append(Membership(unit_id=unit_id, role=role))


def load_organisation(session: Session, path: Path) -> dict:
    """Load territories and units from the organisation data file (data/organisation.json)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FallwerkError(f"Cannot read organisation file {path}: {exc}") from exc
    for t in data.get("territorial_units", data.get("territories", [])):
        territory = session.get(Territory, t["id"]) or Territory(id=t["id"])
        territory.name = t.get("name", t["id"])
        territory.kind = t.get("kind", "landkreis")
        session.add(territory)
    for u in data.get("units", []):
        add_unit(session, u["id"], name=u.get("name"), kind=u.get("kind", "service"),
                 territories=u.get("territories", []))
    session.flush()
    return data
