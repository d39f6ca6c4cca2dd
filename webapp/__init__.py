"""The Flask web application for staff: sign-in, inbox, task forms, cases, procedures.

    create_app()                       # configuration from the environment
    create_app({"TESTING": True, ...})  # tests pass settings (and FALLWERK_ENGINE, FALLWERK_CLOCK)

Views are thin: they ask `engine.policy`, call engine services and render. The request owns the
database transaction (webapp.database).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask
from werkzeug.routing import IntegerConverter

from engine import config as engine_config
from engine.db import MAX_ID

from .i18n import LanguageEnvironment
from .security import CleanRequest
from .sessions import SessionInterface

log = logging.getLogger(__name__)

ENV_SECRET_KEY = "FALLWERK_SECRET_KEY"  # noqa: S105 - the name of a variable
ENV_MODE = "FALLWERK_ENV"  # "production" (default) or "development"
ENV_SECURE_COOKIES = "FALLWERK_SECURE_COOKIES"
MAX_UPLOAD = 10 * 1024 * 1024


class ConfigurationError(RuntimeError):
    pass


def _settings() -> dict:
    mode = os.environ.get(ENV_MODE, "production")
    secure = os.environ.get(ENV_SECURE_COOKIES, "1" if mode == "production" else "0") not in ("0", "false", "no")
    return {
        "FALLWERK_MODE": mode,
        "DATABASE_URL": engine_config.database_url(),
        "SECRET_KEY": os.environ.get(ENV_SECRET_KEY),
        "UPLOAD_FOLDER": str(engine_config.instance_path() / "attachments"),
        "SESSION_COOKIE_SECURE": secure,
        "REMEMBER_COOKIE_SECURE": secure,
    }


class _IdConverter(IntegerConverter):
    """`<int:...>` with no value beyond the database's ids: such a path names nothing (404) rather than
    reaching a query that the database refuses."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits, min, max, signed)


class _App(Flask):
    jinja_environment = LanguageEnvironment
    session_interface = SessionInterface()
    request_class = CleanRequest

    @functools.cached_property
    def _synced(self) -> dict:
        return {}

    def ensure_sync(self, func):
        """Flask asks of every request hook and view, at every request, whether it is a coroutine function
        (a dozen inspections a request): the app has none, so plain functions are looked up once."""
        found = self._synced.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if found is func:
                self._synced[func] = func
        return found


def create_app(test_config: dict | None = None) -> Flask:
    app = _App(__name__, instance_path=str(engine_config.instance_path()))
    app.url_map.converters["int"] = _IdConverter
    app.config.from_mapping(
        SESSION_COOKIE_NAME="fallwerk_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        MAX_CONTENT_LENGTH=MAX_UPLOAD + 64 * 1024,  # the file plus the rest of the form
        MAX_ATTACHMENT_SIZE=MAX_UPLOAD,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        INBOX_PAGE_SIZE=25,
        DUE_SOON_DAYS=2,
    )
    if test_config is None:
        app.config.from_mapping(_settings())
    else:
        app.config.from_mapping({k: v for k, v in _settings().items() if k not in test_config})
        app.config.from_mapping(test_config)
    _secret_key(app)
    Path(app.config["UPLOAD_FOLDER"]).mkdir(parents=True, exist_ok=True)

    from . import auth, database, errors, i18n, security, templating
    from .extensions import csrf

    database.init_app(app)
    csrf.init_app(app)
    auth.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    templating.init_app(app)

    from .views import auth as auth_views
    from .views import cases, inbox, modeller, monitor, start, tasks

    for blueprint in (auth_views.bp, inbox.bp, tasks.bp, cases.bp, start.bp, modeller.bp, monitor.bp):
        app.register_blueprint(blueprint)
    return app


def _secret_key(app: Flask) -> None:
    if app.config.get("SECRET_KEY"):
        return
    if app.config.get("FALLWERK_MODE") == "production" and not app.config.get("TESTING"):
        raise ConfigurationError(f"{ENV_SECRET_KEY} is not set: refusing to start in production without a secret "
                                 f"key (set {ENV_MODE}=development for a generated one)")
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    log.warning("no %s set: using a generated secret key; sessions end when the server restarts", ENV_SECRET_KEY)
