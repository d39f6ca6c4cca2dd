"""Test fixtures: a migrated database on SQLite and, when FALLWERK_TEST_POSTGRES_URL is set, PostgreSQL.

Database tests take the `db` fixture, which runs each test once per backend. The PostgreSQL run is
skipped with a visible reason when no URL is given; CI always sets one (.ci/run).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine import db as dbmod
from engine import identity
from engine.clock import FixedClock
from engine.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
PG_ENV = "FALLWERK_TEST_POSTGRES_URL"
# one database per test run, so that runs in parallel (several terminals, CI) never share one
PG_DATABASE = f"fallwerk_test_{os.getpid()}"


def postgres_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        return None
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    engine = dbmod.make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url():
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {PG_DATABASE}"))
    admin_engine.dispose()
    url = make_url(admin).set(database=PG_DATABASE).render_as_string(hide_password=False)
    engine = dbmod.make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
    admin_engine.dispose()


class Database:
    """One test's database: its URL, engine, session factory and a clock the test can move."""

    def __init__(self, url: str):
        self.url = url
        self.engine = dbmod.make_engine(url)
        self.factory = dbmod.make_session_factory(self.engine)
        self.clock = FixedClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def transaction(self):
        return dbmod.transaction(self.factory)

    def runtime(self, session):
        from engine.runtime import Runtime

        return Runtime(session, clock=self.clock)


def _truncate_postgres(engine) -> None:
    """Empty every table after a test. DELETE on a handful of rows is much faster than TRUNCATE;
    replica mode lets it past the audit table's append-only trigger (tests run as superuser)."""
    from engine.db import Base

    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        for (sequence,) in conn.execute(text(
                "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public'")):
            conn.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path, sqlite_template) -> Database:
    if request.param == "sqlite":
        path = tmp_path / "fallwerk.sqlite3"
        shutil.copy(sqlite_template, path)
        database = Database(f"sqlite:///{path}")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
    yield database
    if database.backend == "postgresql":
        _truncate_postgres(database.engine)
    database.engine.dispose()


@pytest.fixture
def org(db) -> Database:
    """The database with a few units and users: alice and bob (counsellors in rz-west), lena (lead),
    carla (coordinator in lks)."""
    with db.transaction() as s:
        for unit in ("rz-west", "opferberatung", "lks"):
            identity.add_unit(s, unit, name=unit)
        now = db.clock.now()
        identity.add_user(s, "alice", now=now, memberships=[("rz-west", "counsellor")])
        identity.add_user(s, "bob", now=now, memberships=[("rz-west", "counsellor")])
        identity.add_user(s, "lena", now=now, memberships=[("rz-west", "lead"), ("rz-west", "counsellor")])
        identity.add_user(s, "carla", now=now, memberships=[("lks", "coordinator")])
        identity.add_user(s, "otto", now=now, memberships=[("opferberatung", "counsellor")])
    return db
