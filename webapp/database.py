"""The request owns the transaction: one SQLAlchemy session per request, committed when the response
is a success (status below 400) and rolled back otherwise. Services only flush.

A view that must keep a change although it answers with an error status (a failed sign-in is counted)
calls `keep_changes()`.
"""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.db import make_engine, make_session_factory
from engine.runtime import Runtime


def init_app(app: Flask) -> None:
    engine = app.config.get("FALLWERK_ENGINE") or make_engine(app.config["DATABASE_URL"],
                                                                 background_checkpoints=True)
    app.extensions["fallwerk.engine"] = engine
    app.extensions["fallwerk.sessions"] = make_session_factory(engine)
    app.extensions["fallwerk.clock"] = app.config.get("FALLWERK_CLOCK") or Clock()
    app.after_request(_finish)
    app.teardown_request(_close)


def session() -> Session:
    try:
        return g.db_session
    except AttributeError:
        g.db_session = current_app.extensions["fallwerk.sessions"]()
        return g.db_session


def clock() -> Clock:
    return current_app.extensions["fallwerk.clock"]


def runtime() -> Runtime:
    return Runtime(session(), clock=clock())


def keep_changes() -> None:
    g.db_keep_changes = True


def rollback() -> None:
    """Throw away what this request changed so far (after an engine error), and go on reading."""
    if "db_session" in g:
        g.db_session.rollback()
        g.db_session.info.clear()


def _finish(response):
    s = g.get("db_session")
    if s is not None:
        if response.status_code < 400 or g.get("db_keep_changes"):
            s.commit()
        else:
            s.rollback()
    return response


def _close(exc: BaseException | None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        if exc is not None:
            s.rollback()
        else:  # the page is rendered: the workflows it read may serve the next change
            Runtime(s).hand_in()
        s.close()
