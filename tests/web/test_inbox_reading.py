"""The inbox read both ways (walking the sort indexes, or sorting the tasks found from the user's candidate
entries; see webapp.services.inbox): the same rows, pages, counts and "99+" either way."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.test_queries import add_task, instance_without_tasks
from tests.web.conftest import login
from webapp.services import inbox as service


@pytest.fixture(params=[False, True], ids=["from-entries", "walked"])
def many(request, monkeypatch):
    """Both ways of reading the team's tasks, whatever the counts."""
    monkeypatch.setattr(service, "_walk_team", lambda session, user, team_count: request.param)
    return request.param


@pytest.fixture
def instance(web):
    return instance_without_tasks(web)


def _ids(response) -> list[str]:
    return re.findall(r'data-testid="task-row" data-task-id="([^"]+)"', response.get_data(as_text=True))


def _count(response, view) -> str:
    return re.search(rf'data-testid="count-{view}">([^<]+)<', response.get_data(as_text=True)).group(1)


def _all_pages(client, url) -> list[list[str]]:
    pages = []
    while url:
        response = client.get(url)
        pages.append(_ids(response))
        match = re.search(r'href="([^"]+)" rel="next"', response.get_data(as_text=True))
        url = match.group(1).replace("&amp;", "&") if match else None
    return pages


def test_pages_in_every_order_on_both_ways_of_reading(app, client, web, instance, many):
    """Page size 3, six dated tasks (ties in date and priority) and three undated: the due-date order turns
    from dated to undated exactly at a page end; the last page is full and has no link to a next one."""
    app.config["INBOX_PAGE_SIZE"] = 3
    now = web.clock.now()
    rows = []
    for i in range(9):
        due = now + timedelta(days=i // 2) if i < 6 else None
        created = now - timedelta(hours=i % 4)
        priority = (30, 60, 60)[i % 3]
        task_id = add_task(web, instance, f"Aufgabe {i}", groups=["rz-west"], due=due, priority=priority,
                           created=created)
        rows.append((task_id, due, priority, created))
    add_task(web, instance, "für bob", groups=["rz-west"], assignee="bob", due=now)
    add_task(web, instance, "nicht für alice", groups=["rz-west"], excluded=["alice"], due=now)
    add_task(web, instance, "erledigt", groups=["rz-west"], state="completed", due=now)
    expected = {
        "due": [r[0] for r in sorted(rows, key=lambda r: (r[1] is None, r[1] or now, r[0]))],
        "priority": [r[0] for r in sorted(rows, key=lambda r: (r[2], r[0]), reverse=True)],
        "created": [r[0] for r in sorted(rows, key=lambda r: (r[3], r[0]), reverse=True)],
    }
    login(client, "alice")
    for sort, order in expected.items():
        pages = _all_pages(client, f"/?view=team&sort={sort}")
        assert pages == [order[0:3], order[3:6], order[6:9]], sort
    response = client.get("/?view=team")
    assert _count(response, "team") == "9" and _count(response, "mine") == "0"


def test_my_tasks_on_both_ways_of_reading(app, client, web, instance, many):
    app.config["INBOX_PAGE_SIZE"] = 2
    now = web.clock.now()
    mine = [add_task(web, instance, f"meine {i}", groups=["opferberatung"], assignee="alice",
                     due=now + timedelta(days=i) if i % 2 else None) for i in range(5)]
    add_task(web, instance, "mir zugewiesen, aber ausgeschlossen", groups=["rz-west"], assignee="alice",
             excluded=["alice"])
    add_task(web, instance, "im Team", groups=["rz-west"])
    order = [mine[1], mine[3], mine[0], mine[2], mine[4]]  # by due date, undated last, then by id
    order = order[:2] + sorted(order[2:])
    login(client, "alice")
    assert _all_pages(client, "/") == [order[0:2], order[2:4], order[4:5]]
    response = client.get("/")
    assert _count(response, "mine") == "5" and _count(response, "team") == "1"


def test_a_task_is_counted_once_however_many_entries_name_the_user(client, web, instance, many):
    add_task(web, instance, "dreifach", groups=["rz-west", "rz-west:counsellor"], users=["alice"])
    add_task(web, instance, "zweifach", groups=["rz-west:lead", "rz-west"], users=["lena"])
    login(client, "alice")
    response = client.get("/?view=team")
    assert len(_ids(response)) == 2 and _count(response, "team") == "2"
    login(client, "lena")
    response = client.get("/?view=team")
    assert len(_ids(response)) == 2 and _count(response, "team") == "2"


@pytest.mark.parametrize("tasks, shown", [(99, "99"), (100, "99+")])
def test_counts_stop_at_99(client, web, instance, many, tasks, shown):
    for i in range(tasks):
        add_task(web, instance, f"Team {i}", groups=["rz-west"], users=["alice"] if i % 2 else ())
        add_task(web, instance, f"Meine {i}", groups=["rz-west"], assignee="alice")
    add_task(web, instance, "ausgeschlossen", groups=["rz-west"], excluded=["alice"])
    login(client, "alice")
    response = client.get("/?view=team")
    assert (_count(response, "team"), _count(response, "mine")) == (shown, shown)


def test_a_lead_sees_the_lead_tasks_of_the_unit_and_a_counsellor_does_not(client, web, instance, many):
    lead = add_task(web, instance, "Freigabe", groups=["rz-west:lead"])
    team = add_task(web, instance, "Beratung", groups=["rz-west"])
    add_task(web, instance, "Opferberatung", groups=["opferberatung"])
    login(client, "lena")
    assert sorted(_ids(client.get("/?view=team"))) == sorted([lead, team])
    assert sorted(_ids(client.get("/?view=team&unit=rz-west"))) == sorted([lead, team])
    assert _ids(client.get("/?view=team&text=freigabe")) == [lead]
    assert _count(client.get("/?view=team&text=freigabe"), "team") == "1"
    login(client, "alice")
    assert _ids(client.get("/?view=team")) == [team]
    assert _ids(client.get("/?view=team&text=freigabe")) == []


def test_an_excluded_user_never_sees_the_task_but_colleagues_do(client, web, instance, many):
    task = add_task(web, instance, "Befangen", groups=["rz-west"], excluded=["alice"])
    login(client, "alice")
    response = client.get("/?view=team")
    assert _ids(response) == [] and _count(response, "team") == "0"
    login(client, "bob")
    response = client.get("/?view=team")
    assert _ids(response) == [task] and _count(response, "team") == "1"
