"""Web test fixtures: an app on the test's database (the root `db`/`org` fixtures), a client, users of
every role, deployed test models, and helpers to sign in and to run cases forward."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from engine import identity
from engine.deploy import deploy
from engine.models import ProcessDefinition, ProcessInstance, Task
from tests.web import models
from webapp import create_app


@pytest.fixture
def web(org):
    """The `org` database plus a supervisor, a ministry member and an admin, and the test models."""
    with org.transaction() as s:
        identity.add_unit(s, "mi-inneres", name="Innenministerium", kind="ministry")
        now = org.clock.now()
        identity.add_user(s, "sven", now=now, display_name="Sven Aufsicht", memberships=[("lks", "supervisor")])
        identity.add_user(s, "mira", now=now, memberships=[("mi-inneres", "supervisor")])
        identity.add_user(s, "adam", now=now, memberships=[("lks", "admin")])
        identity.get_user(s, "alice").display_name = "Alice Beraterin"
        deploy(s, models.sources(), user="carla", now=now)
        definition = s.scalar(select(ProcessDefinition).where(ProcessDefinition.key == "request_form"))
        definition.start_form = "start_request"
        forms = json.loads(definition.forms_json)
        definition.forms_json = json.dumps({**forms, "start_request": json.loads(models.START)})
    return org


@pytest.fixture
def app(web, tmp_path):
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "FALLWERK_ENGINE": web.engine,
        "FALLWERK_CLOCK": web.clock,
        "DATABASE_URL": web.url,
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "SESSION_COOKIE_SECURE": False,
    })
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def login(client, username: str) -> None:
    """Sign in without a password round trip (the sign-in form has its own tests)."""
    from flask_login.utils import _create_identifier

    from webapp import database
    from webapp.auth import SignedIn

    with client.application.test_request_context(environ_base=client.environ_base):
        row = identity.get_user(database.session(), username)
        ident = SignedIn(row).get_id()
        marker = _create_identifier()
    with client.session_transaction() as session:
        session["_user_id"] = ident
        session["_fresh"] = True
        session["_id"] = marker


@dataclass
class Case:
    id: int
    number: str


def start_case(db, user: str = "alice", key: str = "casework") -> Case:
    with db.transaction() as s:
        instance = db.runtime(s).start(key, user=user)
        return Case(instance.id, instance.case_number)


def open_task(db, case_id: int, element: str | None = None) -> Task:
    with db.transaction() as s:
        query = select(Task).where(Task.instance_id == case_id, Task.state == "open").order_by(Task.created_at)
        if element:
            query = query.where(Task.element_id == element)
        return s.scalars(query).first()


def complete(db, task_id: str, user: str, **data) -> None:
    with db.transaction() as s:
        db.runtime(s).complete(task_id, user=user, data=data)


def case_at_advice(db, user: str = "alice", unit: str = "rz-west", name: str = models.PERSONAL) -> Case:
    """A case whose intake is done (with a personal value) and whose advice task is open for `unit`."""
    case = start_case(db, user)
    complete(db, open_task(db, case.id, "intake").id, user, client_name=name, responsible_unit=unit, topic="Schule")
    return case


def instance(db, case_id: int) -> ProcessInstance:
    with db.transaction() as s:
        return s.get(ProcessInstance, case_id)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)
