"""engine.queries: who sees which open task, and the order and pages of `open_tasks_for_user`, read both
ways (walking the sort index for a user with many candidate entries, or from the entries when few)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from engine import queries
from engine.deploy import deploy
from engine.identity import get_user
from engine.models import Task, TaskCandidate
from tests import modelkit


@pytest.fixture(params=[False, True], ids=["few-entries", "many-entries"])
def many(request, monkeypatch):
    monkeypatch.setattr(queries, "many_candidates", lambda session, user: request.param)
    return request.param


def instance_without_tasks(db) -> int:
    """One running instance whose own task rows are removed: the tests write the mirror rows themselves."""
    with db.transaction() as s:
        deploy(s, {"chain.bpmn": modelkit.chain(n=1, groups="lks")}, user="carla", now=db.clock.now())
    with db.transaction() as s:
        iid = db.runtime(s).start("chain", user="carla").id
    with db.transaction() as s:
        ids = select(Task.id).where(Task.instance_id == iid)
        s.execute(delete(TaskCandidate).where(TaskCandidate.task_id.in_(ids)))
        s.execute(delete(Task).where(Task.instance_id == iid))
    return iid


@pytest.fixture
def instance(org):
    return instance_without_tasks(org)


def add_task(db, instance_id, title, *, groups=(), users=(), excluded=(), assignee=None, due=None, priority=50,
             created=None, state="open") -> str:
    task_id = str(uuid.uuid4())
    with db.transaction() as s:
        s.add(Task(id=task_id, instance_id=instance_id, process_key="chain", element_id="t1", title=title,
                   kind="user", candidate_users=",".join(users), candidate_groups=",".join(groups), assignee=assignee,
                   due_at=due, priority=priority, state=state, created_at=created or db.clock.now()))
        s.flush()
        s.add_all([TaskCandidate(task_id=task_id, kind="group", value=g) for g in groups]
                  + [TaskCandidate(task_id=task_id, kind="user", value=u) for u in users]
                  + [TaskCandidate(task_id=task_id, kind="not", value=u) for u in excluded])
    return task_id


def visible(db, username, **page) -> list[str]:
    with db.transaction() as s:
        return [t.title for t in queries.open_tasks_for_user(s, get_user(s, username), **page)]


def test_who_sees_which_task(org, instance, many):
    def task(title, **kw):
        add_task(org, instance, title, **kw)

    task("team", groups=["rz-west"])
    task("lead", groups=["rz-west:lead"])
    task("named", users=["alice"])
    task("not alice", groups=["rz-west"], excluded=["alice"])
    task("assigned alice", groups=["opferberatung"], assignee="alice")
    task("assigned bob", groups=["rz-west"], assignee="bob")
    task("assigned, excluded", groups=["rz-west"], assignee="alice", excluded=["alice"])
    task("completed", groups=["rz-west"], state="completed")
    task("twice", groups=["rz-west", "rz-west:counsellor"], users=["alice"])
    task("victims", groups=["opferberatung"])
    assert sorted(visible(org, "alice")) == ["assigned alice", "named", "team", "twice"]
    assert sorted(visible(org, "bob")) == ["assigned bob", "not alice", "team", "twice"]
    assert sorted(visible(org, "lena")) == ["lead", "not alice", "team", "twice"]
    assert sorted(visible(org, "otto")) == ["victims"]
    with org.transaction() as s:  # the unordered set agrees
        query = queries.open_tasks_for_user_query(get_user(s, "alice"))
        assert s.scalar(select(func.count()).select_from(query.subquery())) == 4


def test_pages_are_ordered_by_due_date_then_priority_then_age_with_undated_tasks_last(org, instance, many):
    now = org.clock.now()
    expected = []
    for i in range(23):
        due = None if i % 3 == 0 else now + timedelta(hours=i % 4)  # ties in due dates, and undated tasks
        priority = (i * 7) % 5 * 10
        created = now - timedelta(minutes=i % 6)
        mine = i % 5 == 0
        title = f"task {i:02d}"
        task_id = add_task(org, instance, title, groups=[] if mine else ["rz-west"], assignee="alice" if mine else None,
                           due=due, priority=priority, created=created)
        expected.append((due is None, due or now, -priority, created, task_id, title))
    add_task(org, instance, "someone else's", groups=["rz-west"], assignee="bob", due=now)
    order = [row[-1] for row in sorted(expected)]
    assert visible(org, "alice") == order
    assert visible(org, "alice", limit=500) == order
    for limit, offset in ((5, 0), (5, 5), (7, 10), (4, 14), (10, 20), (5, 23), (1, 22)):
        assert visible(org, "alice", limit=limit, offset=offset) == order[offset:offset + limit], (limit, offset)
