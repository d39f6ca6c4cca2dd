"""Every route × every role × own, foreign and escalated cases: status codes, and no personal value in
any response to a viewer without access to the case's personal data.

The route list comes from the app's URL map: a new route without an entry here fails the test.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import identity
from engine.errors import PermissionDenied
from engine.models import SavedFilter, Task
from tests.web.conftest import case_at_advice, login, open_task, start_case
from tests.web.models import PERSONAL
from tests.web.test_modeller import modeller_draft
from webapp.services import casefiles, casework

ROLES = ["alice", "otto", "lena", "carla", "sven", "mira", "adam", None]  # None: not signed in
CASES = ("own", "foreign", "escalated")
T, F = True, False

#: how each role sees each case (own: rz-west, foreign: opferberatung, escalated: rz-west, escalated)
LEVEL = {
    "alice": ("team", "none", "team"),  # counsellor of the own unit
    "otto": ("none", "team", "none"),  # counsellor of another unit
    "lena": ("team", "none", "team"),  # lead of the own unit
    "carla": ("none", "none", "network"),  # coordinator: escalated cases only
    "sven": ("status", "status", "status"),  # supervisor: status only
    "mira": ("none", "none", "none"),  # ministry: aggregates only
    "adam": ("none", "none", "none"),  # admin: accounts, not cases
    None: ("none", "none", "none"),
}
#: the case's task (advise; in the escalated case the coordinators' review): candidate?
TASK = {"alice": (T, F, F), "otto": (F, T, F), "lena": (T, F, F), "carla": (F, F, T)}
#: may cancel: a lead of the unit, or the person who started the case (otto started the foreign one)
CANCEL = {"lena": (T, F, T), "otto": (F, T, F)}
STAFF = {"alice", "otto", "lena", "carla"}
MONITOR = {"lena", "carla", "sven"}  # monitor:read; figures:read adds the ministry (mira)


@dataclass
class World:
    cases: dict[str, int]
    numbers: dict[str, str]
    tasks: dict[str, str]
    attachments: dict[str, int]
    filter_id: int
    draft: int = 0


def _world(db, app) -> World:
    own = case_at_advice(db, "bob", "rz-west")
    foreign = case_at_advice(db, "otto", "opferberatung")
    escalated = case_at_advice(db, "bob", "rz-west")
    with db.transaction() as s:
        db.runtime(s).send_message(escalated.id, "escalation_requested", user="bob",
                                   payload={"escalation_kind": "support", "escalation_reason": "Bedrohung"})
    cases = {"own": own, "foreign": foreign, "escalated": escalated}
    attachments = {}
    folder = Path(app.config["UPLOAD_FOLDER"])
    with db.transaction() as s:
        from engine.models import ProcessInstance

        for name, case in cases.items():
            instance = s.get(ProcessInstance, case.id)
            casefiles.add_comment(s, instance, author="bob", body=f"Gespräch mit {PERSONAL}", now=db.clock.now())
            row = casefiles.store_attachment(s, instance, stream=io.BytesIO(b"Notiz\n"), filename=f"{PERSONAL}.txt",
                                             folder=folder, uploaded_by="bob", now=db.clock.now(), max_size=1000)
            attachments[name] = row.id
        saved = SavedFilter(user_id=_user_id(s, "alice"), name="Überfällig", query="due=overdue",
                            created_at=db.clock.now())
        s.add(saved)
        s.flush()
        filter_id = saved.id
    tasks = {"own": open_task(db, own.id, "advise").id, "foreign": open_task(db, foreign.id, "advise").id,
             "escalated": open_task(db, escalated.id, "review").id}
    return World({k: c.id for k, c in cases.items()}, {k: c.number for k, c in cases.items()}, tasks, attachments,
                 filter_id, modeller_draft(db))


def _user_id(session, username):
    from engine.identity import get_user

    return get_user(session, username).id


def _level(role, case):
    return LEVEL[role][CASES.index(case)]


def _task(role, case):
    return TASK.get(role, (F, F, F))[CASES.index(case)]


def _cancel(role, case):
    return CANCEL.get(role, (F, F, F))[CASES.index(case)]


def _personal(role, case):
    return _level(role, case) == "team"


def _coordinator(role, status):
    return status if role == "carla" else 404


def _monitor(role, status):
    return status if role in MONITOR else 404


def _seen(role, case, status=200):
    return status if _level(role, case) != "none" else 404


# Each entry: (kind, method, url(world, case), data, expected(role, case) -> status).
# kind "case"/"task" runs for every case; "global" once. Anonymous users are redirected to sign in.
MATRIX = {
    ("static", "GET"): ("public", lambda w, c: "/static/css/app.css", None, lambda r, c: 200),
    ("auth.login", "GET"): ("public", lambda w, c: "/login", None, lambda r, c: 302 if r else 200),
    ("auth.login", "POST"): ("public", lambda w, c: "/login", {}, lambda r, c: 302 if r else 422),
    ("auth.logout", "POST"): ("global", lambda w, c: "/logout", {}, lambda r, c: 303),
    ("auth.account", "GET"): ("global", lambda w, c: "/account", None, lambda r, c: 200),
    ("auth.change_password", "POST"): ("global", lambda w, c: "/account/password", {}, lambda r, c: 422),
    ("auth.change_language", "POST"): ("global", lambda w, c: "/account/language", {}, lambda r, c: 422),
    ("inbox.index", "GET"): ("global", lambda w, c: "/", None, lambda r, c: 200),
    ("inbox.save_filter", "POST"): ("global", lambda w, c: "/filters", {}, lambda r, c: 303),
    ("inbox.delete_filter", "POST"): ("global", lambda w, c: f"/filters/{w.filter_id}/delete", {},
                                      lambda r, c: 303 if r == "alice" else 404),
    ("start.index", "GET"): ("global", lambda w, c: "/procedures/", None, lambda r, c: 200 if r in STAFF else 404),
    ("start.begin", "GET"): ("global", lambda w, c: "/procedures/request_form", None,
                             lambda r, c: 200 if r in STAFF else 404),
    ("start.begin", "POST"): ("global", lambda w, c: "/procedures/request_form", {},
                              lambda r, c: 422 if r in STAFF else 404),
    ("cases.show", "GET"): ("case", lambda w, c: f"/cases/{w.cases[c]}", None, _seen),
    ("cases.diagram", "GET"): ("case", lambda w, c: f"/cases/{w.cases[c]}/diagram.bpmn", None, _seen),
    ("cases.download", "GET"): ("case", lambda w, c: f"/cases/{w.cases[c]}/attachments/{w.attachments[c]}", None,
                                lambda r, c: 200 if _personal(r, c) else 404),
    ("cases.comment", "POST"): ("case", lambda w, c: f"/cases/{w.cases[c]}/comments", {},
                                lambda r, c: 422 if _personal(r, c) else 404),
    ("cases.upload", "POST"): ("case", lambda w, c: f"/cases/{w.cases[c]}/attachments", {},
                               lambda r, c: 422 if _personal(r, c) else 404),
    ("cases.cancel", "POST"): ("case", lambda w, c: f"/cases/{w.cases[c]}/cancel", {},
                               lambda r, c: 422 if _cancel(r, c) else 404),
    ("cases.escalate", "POST"): ("case", lambda w, c: f"/cases/{w.cases[c]}/escalate", {},
                                 lambda r, c: 422 if _level(r, c) == "team" else 404),
    ("tasks.show", "GET"): ("task", lambda w, c: f"/tasks/{w.tasks[c]}", None,
                            lambda r, c: 200 if _task(r, c) else 404),
    ("tasks.submit", "POST"): ("task", lambda w, c: f"/tasks/{w.tasks[c]}", {"action": "complete"},
                               lambda r, c: 422 if _task(r, c) else 404),
    ("tasks.claim", "POST"): ("task", lambda w, c: f"/tasks/{w.tasks[c]}/claim", {},
                              lambda r, c: 303 if _task(r, c) else 404),
    ("tasks.release", "POST"): ("task", lambda w, c: f"/tasks/{w.tasks[c]}/release", {},
                                lambda r, c: 303 if _task(r, c) else 404),
    ("tasks.hand_over", "POST"): ("task", lambda w, c: f"/tasks/{w.tasks[c]}/hand-over", {"assignee": "bob"},
                                  lambda r, c: 303 if _task(r, c) else 404),
    # the modeller: coordinators only (procedure:edit, procedure:deploy, instance:migrate); the draft is last
    ("modeller.index", "GET"): ("global", lambda w, c: "/modeller/", None, lambda r, c: _coordinator(r, 200)),
    ("modeller.groups", "GET"): ("global", lambda w, c: "/modeller/groups.json", None,
                                 lambda r, c: _coordinator(r, 200)),
    ("modeller.edit", "GET"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}", None,
                               lambda r, c: _coordinator(r, 200)),
    ("modeller.draft_xml", "GET"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/model.bpmn", None,
                                    lambda r, c: _coordinator(r, 200)),
    ("modeller.procedure", "GET"): ("global", lambda w, c: "/modeller/procedures/casework", None,
                                    lambda r, c: _coordinator(r, 200)),
    ("modeller.version_xml", "GET"): ("global", lambda w, c: "/modeller/procedures/casework/versions/1/model.bpmn",
                                      None, lambda r, c: _coordinator(r, 200)),
    ("modeller.diff", "GET"): ("global", lambda w, c: "/modeller/procedures/casework/diff?from=1&to=1", None,
                               lambda r, c: _coordinator(r, 200)),
    ("modeller.migrate_plan", "GET"): ("global", lambda w, c: "/modeller/procedures/casework/migrate?from=1&to=1",
                                       None, lambda r, c: _coordinator(r, 400)),
    ("modeller.form_editor", "GET"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/forms/intake", None,
                                      lambda r, c: _coordinator(r, 200)),
    ("modeller.form_preview", "GET"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/forms/intake/preview",
                                       None, lambda r, c: _coordinator(r, 200)),
    ("modeller.decision", "GET"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/decisions/routing.dmn", None,
                                   lambda r, c: _coordinator(r, 200)),
    ("modeller.new_procedure", "POST"): ("global", lambda w, c: "/modeller/new", {}, lambda r, c: _coordinator(r, 303)),
    ("modeller.new_draft", "POST"): ("global", lambda w, c: "/modeller/procedures/casework/drafts", {},
                                     lambda r, c: _coordinator(r, 303)),
    ("modeller.save", "POST"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/save", {},
                                lambda r, c: _coordinator(r, 400)),
    ("modeller.check", "POST"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/check", {},
                                 lambda r, c: _coordinator(r, 200)),
    ("modeller.save_form", "POST"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/forms/intake/save", {},
                                     lambda r, c: _coordinator(r, 400)),
    ("modeller.form_preview", "POST"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/forms/intake/preview", {},
                                        lambda r, c: _coordinator(r, 422)),
    ("modeller.decision", "POST"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/decisions/routing.dmn", {},
                                    lambda r, c: _coordinator(r, 422)),
    ("modeller.migrate", "POST"): ("global", lambda w, c: "/modeller/procedures/casework/migrate",
                                   {"from": "1", "to": "1"}, lambda r, c: _coordinator(r, 400)),
    ("modeller.deploy", "POST"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/deploy", {},
                                  lambda r, c: _coordinator(r, 200)),
    ("modeller.discard", "POST"): ("global", lambda w, c: f"/modeller/drafts/{w.draft}/discard", {},
                                   lambda r, c: _coordinator(r, 303)),
    # the monitor: supervisors outside ministries, leads and coordinators; the figures for ministries too
    ("monitor.index", "GET"): ("global", lambda w, c: "/monitor/", None, lambda r, c: _monitor(r, 200)),
    ("monitor.export_csv", "GET"): ("global", lambda w, c: "/monitor/export.csv", None, lambda r, c: _monitor(r, 200)),
    ("monitor.export_xlsx", "GET"): ("global", lambda w, c: "/monitor/export.xlsx", None,
                                     lambda r, c: _monitor(r, 200)),
    ("monitor.case", "GET"): ("case", lambda w, c: f"/monitor/cases/{w.cases[c]}", None,
                              lambda r, c: _monitor(r, _seen(r, c))),
    ("monitor.retry", "POST"): ("case", lambda w, c: f"/monitor/cases/{w.cases[c]}/retry", {},
                                lambda r, c: 303 if r == "carla" and _level(r, c) != "none" else 404),
    ("monitor.procedures", "GET"): ("global", lambda w, c: "/monitor/procedures", None, lambda r, c: _monitor(r, 200)),
    ("monitor.procedure", "GET"): ("global", lambda w, c: "/monitor/procedures/casework/1", None,
                                   lambda r, c: _monitor(r, 200)),
    ("monitor.procedure_diagram", "GET"): ("global", lambda w, c: "/monitor/procedures/casework/1/diagram.bpmn", None,
                                           lambda r, c: _monitor(r, 200)),
    ("monitor.overdue_work", "GET"): ("global", lambda w, c: "/monitor/overdue", None, lambda r, c: _monitor(r, 200)),
    ("monitor.figures_page", "GET"): ("global", lambda w, c: "/monitor/figures", None,
                                      lambda r, c: 200 if r in MONITOR | {"mira"} else 404),
    ("monitor.figures_csv", "GET"): ("global", lambda w, c: "/monitor/figures.csv", None,
                                     lambda r, c: 200 if r in MONITOR | {"mira"} else 404),
}
#: mutating requests run after the reading ones (claim before release before hand over)
ORDER = sorted(MATRIX, key=lambda k: (k[1] == "POST", k[0] in ("auth.logout",),
                                      ["tasks.claim", "tasks.release", "tasks.hand_over"].index(k[0])
                                      if k[0].startswith("tasks.") and k[0] != "tasks.submit"
                                      and k[0] != "tasks.show" else -1))


def test_every_route_has_a_matrix_entry(app):
    routes = {(rule.endpoint, method) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == set(MATRIX), "add the new route to MATRIX (and think about who may use it)"


@pytest.mark.parametrize("role", ROLES, ids=[r or "anonymous" for r in ROLES])
def test_access_matrix(app, web, role):
    world = _world(web, app)
    failures = []
    for key in ORDER:
        kind, method, url, data, expected = (MATRIX[key][0], key[1], *MATRIX[key][1:])
        for case in (CASES if kind in ("case", "task") else (None,)):
            client = app.test_client()
            if role:
                login(client, role)
            target = url(world, case)
            response = client.open(target, method=method, data=data)
            body = response.get_data().decode("utf-8", "replace")  # exports may be binary (XLSX)
            response.close()
            want = expected(role, case)
            if role is None and kind != "public":
                want = 302
            if response.status_code != want:
                failures.append(f"{method} {target} ({key[0]}, {case}): {response.status_code}, expected {want}")
            personal_ok = case is not None and _personal(role, case)
            if not personal_ok and PERSONAL in body:
                failures.append(f"{method} {target} ({key[0]}, {case}): shows a personal value")
            if case is not None and _level(role, case) == "none" and world.numbers[case] in body:
                failures.append(f"{method} {target} ({key[0]}, {case}): shows the case number")
    assert not failures, "\n".join(failures)


def test_a_units_supervisors_and_admins_are_never_candidates_of_its_tasks(app, web):
    """A unit as candidate group ("lks") means the unit's staff: its supervisors (sven) and admins (adam)
    are members too, but neither read nor work on its tasks, nor are they offered for a hand-over. And a
    completed task's answers belong to the case: a former candidate without access to the case (carla,
    coordinator in lks, the intake's candidate group) cannot read them either."""
    done = case_at_advice(web, "bob", "rz-west")
    running = start_case(web, "bob")
    with web.transaction() as s:
        tasks = {(t.instance_id, t.element_id): t.id for t in s.scalars(select(Task))}
    completed, waiting = tasks[(done.id, "intake")], tasks[(running.id, "intake")]
    for role in ("sven", "adam", "carla"):
        client = app.test_client()
        login(client, role)
        for url in (f"/tasks/{completed}",) + ((f"/tasks/{waiting}",) if role != "carla" else ()):
            assert client.get(url).status_code == 404, (role, url)
            response = client.post(url, data={"action": "refresh"})
            assert response.status_code == 404 and PERSONAL not in response.get_data(as_text=True), (role, url)
        assert client.post(f"/tasks/{waiting}/claim").status_code == (404 if role != "carla" else 303)
    with web.transaction() as s:
        offered = {u.username for u in casework.colleagues(s, s.get(Task, waiting), identity.get_user(s, "bob"))}
    assert "carla" in offered and not offered & {"sven", "adam"}
    with web.transaction() as s, pytest.raises(PermissionDenied):
        web.runtime(s).assign(waiting, assignee="adam", user="bob")
