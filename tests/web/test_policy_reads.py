"""What the policy reads, and when it reads it again: an open task's candidates are read once per session
and forgotten on any write; the starter's units only when no other rule decided."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, event, select

from engine import identity, policy
from engine.deploy import deploy
from engine.models import ProcessInstance, Task, TaskCandidate
from engine.policy import Level, Permission
from tests import modelkit


@pytest.fixture
def chain(org):
    with org.transaction() as s:
        deploy(s, {"chain.bpmn": modelkit.chain("chain", n=2, groups="rz-west")}, user="alice", now=org.clock.now())
        instance_id = org.runtime(s).start("chain", user="alice").id
    with org.transaction() as s:
        task_id = s.scalar(select(Task.id).where(Task.instance_id == instance_id, Task.state == "open"))
    return instance_id, task_id


class Statements:
    def __init__(self, engine):
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)
        self.engine = engine

    def _record(self, conn, cursor, statement, *rest):
        self.seen.append(statement)

    def about(self, table: str) -> int:
        return sum(f"FROM {table}" in s for s in self.seen)

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._record)


@pytest.fixture
def statements(org):
    counter = Statements(org.engine)
    yield counter
    counter.close()


def test_a_pages_questions_about_one_task_read_its_candidates_once(org, chain, statements):
    _, task_id = chain
    with org.transaction() as s:
        bob, task = identity.get_user(s, "bob"), s.get(Task, task_id)
        statements.seen.clear()
        for permission in (Permission.TASK_READ, Permission.TASK_WORK, Permission.TASK_CLAIM,
                           Permission.TASK_HAND_OVER, Permission.TASK_RELEASE):
            policy.can(bob, permission, task)
        assert statements.about("task_candidates") == 1


def test_candidates_removed_in_the_session_are_read_again(org, chain):
    _, task_id = chain
    with org.transaction() as s:
        bob, task = identity.get_user(s, "bob"), s.get(Task, task_id)
        assert policy.can(bob, Permission.TASK_WORK, task)
        s.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task_id))
        assert not policy.can(bob, Permission.TASK_WORK, task)


def test_candidates_added_in_the_session_are_read_again(org, chain):
    _, task_id = chain
    with org.transaction() as s:
        otto, task = identity.get_user(s, "otto"), s.get(Task, task_id)
        assert not policy.can(otto, Permission.TASK_READ, task)
        s.add(TaskCandidate(task_id=task_id, kind="user", value="otto"))
        s.flush()
        assert policy.can(otto, Permission.TASK_READ, task)


def test_candidates_are_not_kept_past_the_transaction(org, chain):
    _, task_id = chain
    with org.factory() as s:
        bob, task = identity.get_user(s, "bob"), s.get(Task, task_id)
        assert policy.can(bob, Permission.TASK_WORK, task)
        s.commit()
        with org.transaction() as other:
            other.add(TaskCandidate(task_id=task_id, kind="not", value="bob"))
        assert not policy.can(bob, Permission.TASK_WORK, s.get(Task, task_id))


def test_remembered_candidates_answer_without_a_query(org, chain, statements):
    _, task_id = chain
    with org.transaction() as s:
        bob, task = identity.get_user(s, "bob"), s.get(Task, task_id)
        policy.remember_candidates(s, task_id, [("user", "bob")])
        statements.seen.clear()
        assert policy.can(bob, Permission.TASK_WORK, task)
        assert statements.about("task_candidates") == 0


def test_the_starters_units_are_read_only_when_needed(org, chain, statements):
    instance_id, _ = chain
    with org.transaction() as s:
        identity.add_unit(s, "rz-ost", name="rz-ost")
        identity.add_user(s, "olga", now=org.clock.now(), memberships=[("rz-ost", "counsellor")])
    with org.transaction() as s:  # bob shares the unit of the case's tasks: the starter's units are not read
        bob, instance = identity.get_user(s, "bob"), s.get(ProcessInstance, instance_id)
        statements.seen.clear()
        assert policy.case_level(bob, instance) == Level.TEAM
        assert statements.about("memberships JOIN users") == 0
    with org.transaction() as s:  # olga shares nothing with the case: they are read, and do not help her
        olga, instance = identity.get_user(s, "olga"), s.get(ProcessInstance, instance_id)
        statements.seen.clear()
        assert policy.case_level(olga, instance) == Level.NONE
        assert statements.about("memberships JOIN users") == 1
    with org.transaction() as s:  # a unit of the starter's counts (alice started it in rz-west)
        s.get(ProcessInstance, instance_id).started_by = "olga"
    with org.transaction() as s:
        olga_colleague = identity.add_user(s, "oskar", now=org.clock.now(), memberships=[("rz-ost", "lead")])
        assert policy.case_level(olga_colleague, s.get(ProcessInstance, instance_id)) == Level.TEAM
