"""Engine errors and HTTP errors become German pages in exactly one place; never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from flask_babel import gettext, lazy_gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, InternalServerError

from engine.errors import FallwerkError
from engine.models import Task

from . import database

log = logging.getLogger(__name__)

#: engine error code -> (HTTP status, German message)
ENGINE_ERRORS = {
    "not_found": (404, lazy_gettext("Diese Seite gibt es nicht, oder Sie haben keinen Zugriff darauf.")),
    "permission_denied": (403, lazy_gettext("Dazu sind Sie nicht berechtigt.")),
    "stale_task": (409, lazy_gettext("Diese Aufgabe ist nicht mehr offen.")),
    "validation_failed": (422, lazy_gettext("Bitte prüfen Sie Ihre Eingaben.")),
    "conflict": (409, lazy_gettext("Der Fall wurde gerade von jemand anderem geändert. Bitte versuchen Sie es "
                                   "noch einmal.")),
}
INCIDENT = (500, lazy_gettext("Beim Ausführen des Verfahrens ist eine Störung aufgetreten. Die Landeskoordinierungs"
                              "stelle wurde benachrichtigt; Ihre Eingaben sind nicht verloren."))

TITLES = {
    400: lazy_gettext("Anfrage ungültig"),
    403: lazy_gettext("Kein Zugriff"),
    404: lazy_gettext("Seite nicht gefunden"),
    405: lazy_gettext("Aktion nicht möglich"),
    409: lazy_gettext("Nicht mehr aktuell"),
    413: lazy_gettext("Datei zu groß"),
    422: lazy_gettext("Eingaben unvollständig"),
    500: lazy_gettext("Störung"),
}
DETAILS = {
    400: lazy_gettext("Die Anfrage konnte nicht verarbeitet werden."),
    403: lazy_gettext("Dazu sind Sie nicht berechtigt."),
    404: lazy_gettext("Diese Seite gibt es nicht, oder Sie haben keinen Zugriff darauf."),
    405: lazy_gettext("Diese Aktion ist hier nicht möglich."),
    413: lazy_gettext("Die Datei ist zu groß. Erlaubt sind höchstens 10 MB."),
    500: lazy_gettext("Es ist ein unerwarteter Fehler aufgetreten. Bitte versuchen Sie es später noch einmal."),
}


def engine_message(exc: FallwerkError) -> str:
    """The German message for an engine error (the engine's own messages are for logs and scripts)."""
    return str(ENGINE_ERRORS.get(exc.code, INCIDENT)[1])


def engine_status(exc: FallwerkError) -> int:
    return ENGINE_ERRORS.get(exc.code, INCIDENT)[0]


def stale_reason(task: Task | None, username: str) -> str:
    """Why a task can no longer be completed by this user, in a German sentence."""
    if task is None:
        return gettext("Diese Aufgabe gibt es nicht mehr.")
    if task.state == "completed":
        if task.completed_by == username:
            return gettext("Sie haben diese Aufgabe bereits erledigt.")
        return gettext("Diese Aufgabe wurde inzwischen von %(name)s erledigt.", name=_name(task, task.completed_by))
    if task.state == "withdrawn":
        return gettext("Diese Aufgabe wurde zurückgezogen: Ihre Frist ist abgelaufen oder der Fall ist "
                       "weitergegangen.")
    if task.assignee and task.assignee != username:
        return gettext("Diese Aufgabe bearbeitet inzwischen %(name)s.", name=_name(task, task.assignee))
    from sqlalchemy.orm import object_session

    from engine.models import ProcessInstance

    session = object_session(task)
    instance = session.get(ProcessInstance, task.instance_id) if session else None
    if instance is not None and instance.status != "running":
        return gettext("Der Fall ist beendet oder wurde abgebrochen.")
    # open, and mine or nobody's, yet refused by the engine: a deadline passed that the worker has
    # not processed yet
    return gettext("Diese Aufgabe wurde zurückgezogen: Ihre Frist ist abgelaufen oder der Fall ist "
                   "weitergegangen.")


def _name(task: Task, username: str | None) -> str:
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    from engine.models import User

    session = object_session(task)
    found = session.scalar(select(User.display_name).where(User.username == username)) if session else None
    return found or username or "?"


def _roll_back() -> None:
    """Throw away the request's changes before an error page is rendered: after a failed flush the session
    cannot load anything (not even the signed-in user the page shows) until it is rolled back."""
    try:
        database.rollback()
    except Exception:  # the database may be gone: the page is rendered all the same
        log.warning("rollback before the error page failed", exc_info=True)


def render_error(status: int, message: str | None = None, title: str | None = None):
    return render_template("error.html", status=status, title=title or TITLES.get(status, TITLES[500]),
                           message=message or DETAILS.get(status, DETAILS[500])), status


def init_app(app: Flask) -> None:
    @app.errorhandler(FallwerkError)
    def engine_error(exc: FallwerkError):
        status = engine_status(exc)
        if status >= 500:
            log.error("engine error", extra={"code": exc.code, "error": str(exc)})
            _roll_back()
        return render_error(status, engine_message(exc), TITLES.get(status))

    @app.errorhandler(StaleDataError)
    def conflict(exc):
        _roll_back()
        return render_error(409, str(ENGINE_ERRORS["conflict"][1]))

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_error(400, gettext("Das Formular ist abgelaufen oder unvollständig. Bitte laden Sie die "
                                         "Seite neu und senden Sie es noch einmal."))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        return render_error(status, str(DETAILS.get(status, DETAILS[400] if status < 500 else DETAILS[500])))

    @app.errorhandler(InternalServerError)
    def server_error(exc: InternalServerError):
        original = getattr(exc, "original_exception", None)
        if original is not None:
            log.error("unhandled error", exc_info=original)
        _roll_back()
        return render_error(500)
