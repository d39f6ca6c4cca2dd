"""Who is signed in: Flask-Login over the engine's users, and the one decorator that asks the policy."""

from __future__ import annotations

import contextlib
import functools
from datetime import timedelta

from flask import Flask, abort, g
from flask_babel import lazy_gettext
from flask_login import UserMixin, current_user, login_required
from sqlalchemy import select

from engine import policy
from engine.identity import load_user, verify_password
from engine.models import User

from . import database
from .extensions import login_manager

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)


class SignedIn(UserMixin):
    """The Flask-Login face of an engine `User` (the engine knows nothing about Flask)."""

    def __init__(self, row: User):
        self.row = row

    def get_id(self) -> str:
        # a changed password ends every other session
        return f"{self.row.id}:{(self.row.password_hash or '')[-16:]}"

    @property
    def is_active(self) -> bool:
        return bool(self.row.is_active)


@login_manager.user_loader
def _load(user_id: str):
    ident, _, fragment = user_id.partition(":")
    if not (ident.isascii() and ident.isdigit()):
        return None
    row = load_user(database.session(), int(ident))  # with the memberships every permission asks about
    if row is None or not row.is_active or (row.password_hash or "")[-16:] != fragment:
        return None
    return SignedIn(row)


def me() -> User | None:
    # where Flask-Login keeps the request's user once loaded (a page asks dozens of times)
    user = g.get("_login_user") or current_user._get_current_object()
    return user.row if user is not None and user.is_authenticated else None


def requires(permission: policy.Permission):
    """Sign-in required, and the permission (one without a resource) is checked; else 404."""

    def decorate(view):
        @functools.wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not policy.can(me(), permission):
                abort(404)
            return view(*args, **kwargs)

        wrapped.permission = permission
        return wrapped

    return decorate


def authenticate(username: str, password: str) -> User | None:
    """The user for these credentials, or None; counts failures and locks after MAX_FAILURES."""
    row = database.session().scalar(select(User).where(User.username == username.strip().lower()))
    if row is None or not row.is_active:
        _hasher_check(password)
        return None
    return row if password_matches(row, password) else None


def is_locked(row: User) -> bool:
    return row.locked_until is not None and row.locked_until > database.clock().now()


def password_matches(row: User, password: str) -> bool:
    """Whether `password` is the user's, counting a wrong one (also when it is asked again to change it,
    so that a taken-over session cannot guess it): MAX_FAILURES lock the account for LOCK_FOR."""
    if is_locked(row):
        _hasher_check(password)
        return False
    if not verify_password(row, password):
        row.failed_logins = (row.failed_logins or 0) + 1
        if row.failed_logins >= MAX_FAILURES:
            row.failed_logins, row.locked_until = 0, database.clock().now() + LOCK_FOR
        database.keep_changes()
        return False
    row.failed_logins, row.locked_until = 0, None
    return True


@functools.cache
def _dummy_hash() -> str:
    from engine.identity import hash_password

    return hash_password("fallwerk-dummy-password")


def _hasher_check(password: str) -> None:
    """Verifying against a real hash for unknown or locked users too keeps the answer time the same."""
    from argon2 import PasswordHasher
    from argon2.exceptions import VerificationError

    with contextlib.suppress(VerificationError):
        PasswordHasher().verify(_dummy_hash(), password)


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = lazy_gettext("Bitte melden Sie sich an.")
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
