"""Request ids, structured request logs and security headers for every response; form fields and query
arguments without NUL characters."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from flask import Flask, Request, abort, g, request
from werkzeug.datastructures import ImmutableMultiDict, iter_multi_items

log = logging.getLogger("webapp.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class Fields(ImmutableMultiDict):
    """Form fields and query arguments without NUL characters. No text a person types has one, and
    PostgreSQL cannot store one: a comment, a reason or an inbox filter with it failed the request."""

    def __init__(self, mapping=None):
        if mapping is not None:
            mapping = [(_without_nul(key), _without_nul(value)) for key, value in iter_multi_items(mapping)]
        super().__init__(mapping)


def _without_nul(value):
    return value.replace("\x00", "") if isinstance(value, str) else value


class CleanRequest(Request):
    parameter_storage_class = Fields


def request_id() -> str:
    return g.get("request_id", "-")


def _start() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _headers(response):
    headers = response.headers
    headers["X-Request-ID"] = request_id()
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if request.endpoint != "static":
        # case data must not stay in shared or browser caches
        headers["Cache-Control"] = "no-store"
    from flask import current_app

    if current_app.config.get("SESSION_COOKIE_SECURE"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _log(response):
    started = g.get("request_started")
    duration = round((time.perf_counter() - started) * 1000, 2) if started else None
    # the user as the request loaded it: a request that never asked (a static file) opens no transaction
    loaded = g.get("_login_user")  # where Flask-Login keeps it
    user = loaded.row.username if loaded is not None and loaded.is_authenticated else None
    log.info("%s %s %s", request.method, request.path, response.status_code, extra={
        "request_id": request_id(), "method": request.method, "path": request.path,
        "endpoint": request.endpoint, "status": response.status_code, "duration_ms": duration, "user": user,
    })
    return response


def _no_nul_in_path() -> None:
    """A path with a NUL character names nothing (and PostgreSQL could not even compare it with an id)."""
    if "\x00" in request.path:
        abort(404)


def init_app(app: Flask) -> None:
    # first of all hooks, so that what answers early (CSRF, a too large body) has the request id too
    app.before_request_funcs.setdefault(None, [])[:0] = [_start, _no_nul_in_path]
    app.after_request(_log)
    app.after_request(_headers)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the `extra=` fields of the record."""

    _standard = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
    _encoder = json.JSONEncoder(ensure_ascii=False, default=str)  # json.dumps builds one per call

    def format(self, record: logging.LogRecord) -> str:
        payload = {"at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                   "logger": record.name, "message": record.getMessage()}
        payload.update({k: v for k, v in vars(record).items() if k not in self._standard})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return self._encoder.encode(payload)


def configure_logging(level: str = "INFO") -> None:
    """For the processes that serve the app (dev server, gunicorn): JSON lines on stderr."""
    # What no line shows is not gathered either: the caller's file and line (found by walking the stack
    # for every record), the thread and the process (the logging HOWTO's "Optimization")
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
