"""The inbox: my tasks and my team's tasks, counts, filters, sorting, pagination, claim, release, hand
over, overdue marks and saved filters."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from engine.deploy import deploy
from engine.models import Task
from tests import modelkit
from tests.web.conftest import login


@pytest.fixture
def tasks(web):
    """Five open tasks for rz-west ("Schritt 1" of the chain process) and one for opferberatung."""
    with web.transaction() as s:
        deploy(s, {"chain.bpmn": modelkit.chain("chain", n=1, groups="rz-west"),
                   "victims.bpmn": modelkit.chain("victims", n=1, groups="opferberatung")},
               user="carla", now=web.clock.now())
    ids = []
    for _ in range(5):
        with web.transaction() as s:
            ids.append(web.runtime(s).start("chain", user="alice").id)
        web.clock.advance(minutes=1)
    with web.transaction() as s:
        web.runtime(s).start("victims", user="otto")
        rows = s.scalars(select(Task).where(Task.process_key == "chain").order_by(Task.created_at)).all()
        return [r.id for r in rows]


def _set(db, task_id, **values):
    with db.transaction() as s:
        s.execute(update(Task).where(Task.id == task_id).values(**values))


def _ids(response) -> list[str]:
    return re.findall(r'data-testid="task-row" data-task-id="([^"]+)"', response.get_data(as_text=True))


def _count(response, view) -> str:
    return re.search(rf'data-testid="count-{view}">([^<]+)<', response.get_data(as_text=True)).group(1)


def test_the_team_view_lists_claimable_tasks_with_counts(client, tasks):
    login(client, "alice")
    response = client.get("/?view=team")
    assert sorted(_ids(response)) == sorted(tasks)
    assert _count(response, "team") == "5" and _count(response, "mine") == "0"
    assert "Aufgaben meines Teams" in response.get_data(as_text=True)


def test_a_claimed_task_moves_to_my_tasks(client, tasks):
    login(client, "alice")
    response = client.post(f"/tasks/{tasks[0]}/claim", data={"next": "/?view=team"})
    assert response.status_code == 303 and response.headers["Location"] == "/?view=team"
    assert "Aufgabe übernommen." in client.get("/").get_data(as_text=True)
    mine = client.get("/")
    assert _ids(mine) == [tasks[0]] and _count(mine, "mine") == "1" and _count(mine, "team") == "4"


def test_a_released_task_goes_back_to_the_team(client, tasks):
    login(client, "alice")
    client.post(f"/tasks/{tasks[0]}/claim")
    client.post(f"/tasks/{tasks[0]}/release")
    assert _ids(client.get("/")) == []
    assert tasks[0] in _ids(client.get("/?view=team"))


def test_a_task_is_handed_over_to_a_colleague_who_is_a_candidate(client, web, tasks):
    login(client, "alice")
    client.post(f"/tasks/{tasks[0]}/claim")
    response = client.post(f"/tasks/{tasks[0]}/hand-over", data={"assignee": "bob"})
    assert response.status_code == 303
    login(client, "bob")
    assert _ids(client.get("/")) == [tasks[0]]


def test_a_task_cannot_be_handed_to_someone_who_is_no_candidate(client, web, tasks):
    login(client, "alice")
    client.post(f"/tasks/{tasks[0]}/claim")
    client.post(f"/tasks/{tasks[0]}/hand-over", data={"assignee": "otto"})
    assert "Dazu sind Sie nicht berechtigt." in client.get("/").get_data(as_text=True)
    assert _ids(client.get("/")) == [tasks[0]]


def test_claiming_a_task_someone_else_took_says_who_has_it(client, web, tasks):
    login(client, "bob")
    client.post(f"/tasks/{tasks[0]}/claim")
    login(client, "alice")
    client.post(f"/tasks/{tasks[0]}/claim", data={"next": "/?view=team"})
    page = client.get("/?view=team").get_data(as_text=True)
    assert "Diese Aufgabe bearbeitet inzwischen bob." in page


def test_overdue_and_due_soon_tasks_are_marked_in_words(client, web, tasks):
    now = web.clock.now()
    _set(web, tasks[0], due_at=now - timedelta(hours=1))
    _set(web, tasks[1], due_at=now + timedelta(hours=20))
    _set(web, tasks[2], due_at=now + timedelta(days=10))
    login(client, "alice")
    page = client.get("/?view=team").get_data(as_text=True)
    rows = dict(re.findall(r'data-task-id="([^"]+)"(.*?)</tr>', page, flags=re.S))
    assert "überfällig" in rows[tasks[0]] and "bald fällig" in rows[tasks[1]]
    assert "fällig" not in rows[tasks[2]].replace("ohne Frist", "")


def test_the_due_filter_finds_overdue_and_due_soon_tasks(client, web, tasks):
    now = web.clock.now()
    _set(web, tasks[0], due_at=now - timedelta(hours=1))
    _set(web, tasks[1], due_at=now + timedelta(hours=20))
    login(client, "alice")
    assert _ids(client.get("/?view=team&due=overdue")) == [tasks[0]]
    assert _ids(client.get("/?view=team&due=soon")) == [tasks[1]]
    assert _count(client.get("/?view=team&due=overdue"), "team") == "1"


def test_tasks_sort_by_due_date_by_default_without_due_date_last(client, web, tasks):
    now = web.clock.now()
    _set(web, tasks[3], due_at=now + timedelta(days=1))
    _set(web, tasks[1], due_at=now + timedelta(days=2))
    login(client, "alice")
    assert _ids(client.get("/?view=team"))[:2] == [tasks[3], tasks[1]]


def test_tasks_sort_by_priority_and_by_creation(client, web, tasks):
    _set(web, tasks[2], priority=90)
    _set(web, tasks[4], priority=70)
    login(client, "alice")
    assert _ids(client.get("/?view=team&sort=priority"))[:2] == [tasks[2], tasks[4]]
    assert _ids(client.get("/?view=team&sort=created")) == list(reversed(tasks))


def test_the_filters_for_process_text_and_unit(client, web, tasks):
    from engine import identity

    with web.transaction() as s:
        identity.add_user(s, "uwe", now=web.clock.now(),
                          memberships=[("rz-west", "counsellor"), ("opferberatung", "counsellor")])
    _set(web, tasks[0], title="Erstkontakt aufnehmen")
    login(client, "uwe")
    assert len(_ids(client.get("/?view=team"))) == 6
    assert sorted(_ids(client.get("/?view=team&process=chain"))) == sorted(tasks)
    assert _ids(client.get("/?view=team&text=erstkontakt")) == [tasks[0]]
    assert _ids(client.get("/?view=team&text=%25")) == []
    victims = _ids(client.get("/?view=team&unit=opferberatung"))
    assert len(victims) == 1 and victims[0] not in tasks


def test_pages_follow_each_other_without_gaps_or_repeats(app, client, web, tasks):
    app.config["INBOX_PAGE_SIZE"] = 2
    now = web.clock.now()
    _set(web, tasks[0], due_at=now + timedelta(days=1))
    _set(web, tasks[1], due_at=now + timedelta(days=1))
    login(client, "alice")
    for sort in ("due", "priority", "created"):
        seen, url = [], f"/?view=team&sort={sort}"
        while url:
            response = client.get(url)
            seen += _ids(response)
            match = re.search(r'href="([^"]+)" rel="next"', response.get_data(as_text=True))
            url = match.group(1).replace("&amp;", "&") if match else None
        assert sorted(seen) == sorted(tasks) and len(seen) == 5, sort


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort, after", [
    ("due", "kaputt"),
    ("priority", _cursor([10**30, "x"])),  # beyond the column's integers
    ("priority", _cursor([2**31, "x"])),
    ("due", base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode()),  # nested past the parser's stack
    ("due", _cursor(["2026-01-01T00:00:00", "x\u0000"])),  # PostgreSQL cannot compare a NUL
    ("created", _cursor(["2026-01-01T00:00:00", "x" * 500])),
])
def test_a_broken_cursor_shows_the_first_page(client, tasks, sort, after):
    login(client, "alice")
    response = client.get(f"/?view=team&sort={sort}&after={after}")
    assert response.status_code == 200 and len(_ids(response)) == 5


def test_a_filter_is_saved_listed_and_deleted(client, web, tasks):
    login(client, "alice")
    response = client.post("/filters", data={"name": "Überfällig", "query": "view=team&due=overdue"})
    assert response.status_code == 303 and "due=overdue" in response.headers["Location"]
    page = client.get("/?view=team&due=overdue").get_data(as_text=True)
    assert "Überfällig" in page and "?view=team&amp;due=overdue" in page
    filter_id = re.search(r'/filters/(\d+)/delete', page).group(1)
    login(client, "bob")
    assert client.post(f"/filters/{filter_id}/delete").status_code == 404
    login(client, "alice")
    assert client.post(f"/filters/{filter_id}/delete").status_code == 303
    assert "/delete" not in client.get("/?view=team&due=overdue").get_data(as_text=True)


def test_an_empty_inbox_says_so(client, web):
    login(client, "alice")
    assert 'data-testid="empty-inbox"' in client.get("/").get_data(as_text=True)
