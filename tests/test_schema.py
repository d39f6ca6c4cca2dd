"""The database schema comes from migrations only, and stored state survives format changes."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from engine import db as dbmod
from engine import serialization
from engine.db import Base
from engine.models import ProcessInstance
from tests import modelkit
from tests.test_runtime import _deploy, _open, _start


def test_models_and_migrations_do_not_drift(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], "models and migrations differ: add a migration (alembic revision --autogenerate)"


def test_state_written_before_the_envelope_version_is_migrated_on_load(org):
    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain")
    with org.transaction() as s:
        instance = s.get(ProcessInstance, iid)
        old = json.loads(instance.state_json)
        old.pop("fallwerk_state_version")
        instance.state_json = json.dumps(old)
    (task,) = _open(org, iid)
    with org.transaction() as s:
        assert org.runtime(s).complete(task.id, user="alice").status == "running"
        assert json.loads(s.get(ProcessInstance, iid).state_json)["fallwerk_state_version"] == \
            serialization.STATE_VERSION


def test_task_data_survives_a_database_that_reorders_json_keys(org):
    """jsonb sorts keys; with whole data per task (not deltas) the restore does not depend on order."""
    _deploy(org, approval=modelkit.approval())
    iid = _start(org, "approval", unit="rz-west")
    with org.transaction() as s:
        org.runtime(s).complete(_open(org, iid)[0].id, user="alice", data={"amount": 42, "reason": "x"})
    with org.transaction() as s:
        instance = s.get(ProcessInstance, iid)
        reordered = json.loads(instance.state_json)
        reordered["tasks"] = dict(sorted(reordered["tasks"].items(), reverse=True))
        instance.state_json = json.dumps(reordered, sort_keys=True)
    (decide,) = _open(org, iid)
    with org.transaction() as s:
        workflow = org.runtime(s).load_workflow(s.get(ProcessInstance, iid))
        assert workflow.get_task_from_id(UUID(decide.id)).data["amount"] == 42


@pytest.mark.postgres
def test_a_pooled_connection_the_server_dropped_is_replaced_after_idling(postgres_url, monkeypatch):
    """Connections idle longer than IDLE_PING_SECONDS are tested before use; a dead one is replaced."""
    engine = dbmod.make_engine(postgres_url, pool_size=1, max_overflow=0)
    admin = dbmod.make_engine(postgres_url, poolclass=NullPool)

    def drop_pooled_connection() -> int:
        with engine.connect() as conn:
            backend = conn.scalar(text("SELECT pg_backend_pid()"))
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        return backend

    try:
        drop_pooled_connection()
        with pytest.raises(OperationalError), engine.connect() as conn:  # used a moment ago: not tested
            conn.scalar(text("SELECT 1"))
        dropped = drop_pooled_connection()
        monkeypatch.setattr(dbmod, "IDLE_PING_SECONDS", 0.0)  # as if it had been idle
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT pg_backend_pid()")) != dropped
    finally:
        engine.dispose()
        admin.dispose()


def test_the_upgrade_to_0007_drops_the_candidate_entries_of_closed_tasks(org):
    """Completed tasks used to keep their candidate entries; the migration removes those, and only those."""
    from alembic import command

    from engine.migrate import alembic_config, upgrade
    from engine.models import Task, TaskCandidate

    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain")
    (first,) = _open(org, iid)
    with org.transaction() as s:
        org.runtime(s).complete(first.id, user="alice", data={})
    with org.engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    with org.transaction() as s:  # what a completion left before
        s.add(TaskCandidate(task_id=first.id, kind="group", value="rz-west"))
    upgrade(org.engine)
    with org.transaction() as s:
        left = {c.task_id for c in s.scalars(select(TaskCandidate))}
        (second,) = s.scalars(select(Task).where(Task.instance_id == iid, Task.state == "open")).all()
    assert left == {second.id}
