"""Engine benchmark: task completion through the engine API, and the open-tasks (inbox) query.

    .venv/bin/python bench/engine.py                      # SQLite, and PostgreSQL if FALLWERK_TEST_POSTGRES_URL is set
    .venv/bin/python bench/engine.py --pg-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/engine.py --profile            # also cProfile one engine completion run

1. Completion: a 10-user-task chain (tests/modelkit.chain). Every completion is `Runtime.complete` in its
   own transaction, as the CLI and the web app do it, on SQLite (a file in a temporary directory) and on
   PostgreSQL (a database `fallwerk_bench`, created through the admin URL), side by side with bare
   SpiffWorkflow in memory (stock CamundaParser + BpmnWorkflow) and bare SpiffWorkflow that serialises
   and restores the whole workflow (BpmnWorkflowSerializer serialize_json/deserialize_json) at every step.
   The variants take turns of five chain instances, so that a drift of the machine's speed meets all
   of them alike. Target: our persisted completion within 3x of the bare serializer save/load cycle.
2. Inbox: `queries.open_tasks_for_user` (first page of 50) for one user, with 100,000 open tasks across
   20,000 instances bulk-inserted into the mirror tables (20 units; users in 1-2 units; candidate
   groups, some candidate users, some claimed tasks, some exclusions). Target: p95 under 20 ms.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from engine import db as dbmod  # noqa: E402
from engine import identity  # noqa: E402
from engine.clock import Clock  # noqa: E402
from engine.deploy import deploy  # noqa: E402
from engine.migrate import upgrade  # noqa: E402
from engine.models import Membership, ProcessInstance, Task, TaskCandidate, Unit, User  # noqa: E402
from engine.queries import open_tasks_for_user, open_tasks_for_user_query  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from tests import modelkit  # noqa: E402

PG_ENV = "FALLWERK_TEST_POSTGRES_URL"
PG_DATABASE = "fallwerk_bench"
CHAIN_TASKS = 10
USER = "bench"


# --- helpers -----------------------------------------------------------------------------------------
def reference_loop_ms() -> float:
    """This machine's speed at the moment: a fixed pure-Python workload (JSON and a sort), best of five.
    On one two-CPU virtual machine it took from 103 to 192 ms within minutes; compare the figures of two
    runs only where their reference figures are close."""
    document = {"a": [1, 2, 3, {"b": "x" * 20}] * 50}
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(2000):
            json.loads(json.dumps(document))
            sorted(range(200), key=lambda x: -x)
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def elapsed_since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall-clock seconds, seconds off this thread's CPU) since `start` = (perf_counter(), thread_time()):
    the time off the CPU is what a completion spent waiting, for the database server and the disk."""
    wall, cpu = time.perf_counter() - start[0], time.thread_time() - start[1]
    return wall, max(0.0, wall - cpu)


def started() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


class Result:
    def __init__(self, name: str, measured: list[tuple[float, float]], note: str = ""):
        self.name, self.note = name, note
        self.latencies = [wall for wall, _ in measured]
        self.waits = [wait for _, wait in measured]

    @property
    def per_second(self) -> float:
        return len(self.latencies) / sum(self.latencies) if self.latencies else float("nan")

    def row(self, baseline: Result | None = None) -> str:
        p50, p95 = pct(self.latencies, 50) * 1000, pct(self.latencies, 95) * 1000
        base = pct(baseline.latencies, 50) * 1000 if baseline and baseline.latencies else None
        ratio = f"{p50 / base:.1f}x" if base else ""
        wait = pct(self.waits, 50) * 1000
        wait_ratio = f" ({wait / base:.1f}x)" if base else ""
        return (f"| {self.name} | {len(self.latencies)} | {self.per_second:,.0f} | {p50:.2f} | {p95:.2f} "
                f"| {wait:.2f}{wait_ratio} | {ratio} |")


def postgres_admin_url(cli_url: str | None) -> str | None:
    url = cli_url or os.environ.get(PG_ENV)
    if not url:
        return None
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def fresh_postgres(admin_url: str, database: str = PG_DATABASE) -> str:
    """A new, migrated database of that name on the admin URL's server; returns its URL."""
    if admin_url.startswith("postgresql://"):
        admin_url = "postgresql+psycopg://" + admin_url.removeprefix("postgresql://")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {database}"))
    admin.dispose()
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    engine = dbmod.make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def fresh_sqlite(directory: str, name: str) -> str:
    """A new, migrated SQLite file of that name in `directory` (replacing one left there); returns its URL."""
    path = Path(directory) / name
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = dbmod.make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


# --- 1. completions ----------------------------------------------------------------------------------
class Variant:
    """One way of running the chain; `instance()` runs one chain instance and returns, per completion,
    what `elapsed_since` measured."""

    name = ""

    def instance(self) -> list[tuple[float, float]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class BareInMemory(Variant):
    name = "bare SpiffWorkflow, in memory"

    def __init__(self):
        from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser

        parser = CamundaParser()
        parser.add_bpmn_str(modelkit.chain(n=CHAIN_TASKS))
        self.spec = parser.get_spec("chain")

    def instance(self) -> list[tuple[float, float]]:
        from SpiffWorkflow.bpmn import BpmnWorkflow
        from SpiffWorkflow.task import TaskState

        latencies = []
        workflow = BpmnWorkflow(self.spec)
        workflow.do_engine_steps()
        for _ in range(CHAIN_TASKS):
            start = started()
            task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
            task.run()
            workflow.do_engine_steps()
            latencies.append(elapsed_since(start))
        assert workflow.is_completed()
        return latencies


class BareWithSerializer(BareInMemory):
    name = "bare SpiffWorkflow + serializer save/load per step"

    def __init__(self):
        from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
        from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG

        super().__init__()
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG))

    def instance(self) -> list[tuple[float, float]]:
        from SpiffWorkflow.bpmn import BpmnWorkflow
        from SpiffWorkflow.task import TaskState

        latencies = []
        workflow = BpmnWorkflow(self.spec)
        workflow.do_engine_steps()
        state = self.serializer.serialize_json(workflow)
        for _ in range(CHAIN_TASKS):
            start = started()
            workflow = self.serializer.deserialize_json(state)
            task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
            task.run()
            workflow.do_engine_steps()
            state = self.serializer.serialize_json(workflow)
            latencies.append(elapsed_since(start))
        assert workflow.is_completed()
        return latencies


class Engine(Variant):
    """`Runtime.complete` on a database, each completion in its own transaction."""

    def __init__(self, url: str, label: str, profile: bool = False):
        self.name = f"Fallwerk `Runtime.complete`, {label}"
        self.engine = dbmod.make_engine(url)
        self.factory = dbmod.make_session_factory(self.engine)
        self.clock = Clock()
        self.profiler = cProfile.Profile() if profile else None
        with dbmod.transaction(self.factory) as s:
            identity.add_unit(s, "rz-west", name="RZ West")
            identity.add_user(s, USER, now=self.clock.now(), memberships=[("rz-west", "counsellor")])
            deploy(s, {"chain.bpmn": modelkit.chain(n=CHAIN_TASKS)}, user=USER, now=self.clock.now())

    def instance(self) -> list[tuple[float, float]]:
        latencies = []
        with dbmod.transaction(self.factory) as s:
            instance_id = Runtime(s, clock=self.clock).start("chain", user=USER).id
        for _ in range(CHAIN_TASKS):
            with dbmod.transaction(self.factory) as s:
                task_id = s.scalar(select(Task.id).where(Task.instance_id == instance_id, Task.state == "open"))
            if self.profiler:
                self.profiler.enable()
            start = started()
            with dbmod.transaction(self.factory) as s:
                Runtime(s, clock=self.clock).complete(task_id, user=USER, data={})
            latencies.append(elapsed_since(start))
            if self.profiler:
                self.profiler.disable()
        with dbmod.transaction(self.factory) as s:
            assert s.get(ProcessInstance, instance_id).status == "completed"
        return latencies

    def close(self) -> None:
        self.engine.dispose()
        if self.profiler:
            out = io.StringIO()
            pstats.Stats(self.profiler, stream=out).sort_stats("cumulative").print_stats(30)
            print(f"\n<details><summary>cProfile of the {self.name} completions (cumulative)</summary>\n\n```")
            print(out.getvalue().strip())
            print("```\n</details>\n")


def completions(variants: list[Variant], runs: int, turn: int = 5, warmup: int = 1) -> list[Result]:
    """Every variant runs `runs` chain instances, taking turns of `turn` instances: this machine's speed
    drifts by tens of percent within minutes, and taking turns lets each variant meet the same drift.
    Turns are long enough that a variant's cold start after another's turn (CPU caches, garbage
    collection) weighs little; one turn of each variant is run first and not counted."""
    latencies: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
    for round_ in range(warmup + -(-runs // turn)):
        for variant in variants:
            gc.collect()  # the garbage of the previous turn is not collected at this variant's expense
            for _ in range(turn if round_ < warmup else min(turn, runs - (round_ - warmup) * turn)):
                measured = variant.instance()
                if round_ >= warmup:
                    latencies[variant.name] += measured
    for variant in variants:
        variant.close()
    return [Result(v.name, latencies[v.name]) for v in variants]


# --- 2. the inbox query -----------------------------------------------------------------------------
UNITS = [f"unit-{i:02d}" for i in range(1, 21)]


def populate_inbox(url: str, *, instances: int, tasks: int, users: int, seed: int = 7) -> dict:
    """Bulk-insert users, instances and open task mirror rows with core inserts. Returns who to ask for."""
    rng = random.Random(seed)
    engine = dbmod.make_engine(url)
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    factory = dbmod.make_session_factory(engine)
    with dbmod.transaction(factory) as s:
        result = deploy(s, {"chain.bpmn": modelkit.chain(n=CHAIN_TASKS)}, user="carla", now=now)
        definition_id = (result.created or result.unchanged)[0].id
    membership_of: dict[str, list[tuple[str, str]]] = {}
    with engine.begin() as conn:
        conn.execute(insert(Unit), [{"id": u, "name": u, "kind": "service", "territories": ""} for u in UNITS])
        user_rows, member_rows = [], []
        for i in range(1, users + 1):
            name = f"user{i:04d}"
            units = rng.sample(UNITS, 1 if rng.random() < 0.6 else 2)
            roles = [(u, "counsellor") for u in units]
            if rng.random() < 0.1:
                roles.append((units[0], "lead"))
            membership_of[name] = roles
            user_rows.append({"id": i, "username": name, "display_name": name, "is_active": True, "locale": "de",
                              "failed_logins": 0, "created_at": now})
            member_rows += [{"user_id": i, "unit_id": u, "role": r} for u, r in roles]
        conn.execute(insert(User), user_rows)
        conn.execute(insert(Membership), member_rows)
        members: dict[str, list[str]] = {}
        for name, roles in membership_of.items():
            for unit, _role in roles:
                members.setdefault(unit, []).append(name)

        chunk = 5000
        per_instance = tasks // instances
        instance_rows = []
        for i in range(1, instances + 1):
            instance_rows.append({
                "id": i, "case_number": f"2026-{i:08d}", "definition_id": definition_id, "process_key": "chain",
                "status": "running", "has_incident": False, "state_json": "{}", "serializer_version": "1",
                "started_by": "carla", "started_at": now - timedelta(days=rng.randint(0, 90)), "updated_at": now,
                "responsible_unit": rng.choice(UNITS), "active_elements": "", "lock_version": 1,
            })
        for start in range(0, len(instance_rows), chunk):
            conn.execute(insert(ProcessInstance), instance_rows[start:start + chunk])
        task_rows, candidate_rows = [], []
        serial = 0
        for inst in instance_rows:
            for k in range(per_instance):
                serial += 1
                task_id = f"00000000-0000-4000-8000-{serial:012d}"
                unit = inst["responsible_unit"] if rng.random() < 0.95 else rng.choice(UNITS)
                group = f"{unit}:lead" if rng.random() < 0.15 else unit
                assignee = rng.choice(members.get(unit, ["carla"])) if rng.random() < 0.2 else None
                task_rows.append({
                    "id": task_id, "instance_id": inst["id"], "process_key": "chain", "element_id": f"t{k + 1}",
                    "title": f"Schritt {k + 1}", "kind": "user", "lane": None, "form_ref": None, "form_key": None,
                    "candidate_users": "", "candidate_groups": group, "assignee": assignee,
                    "due_at": now + timedelta(hours=rng.randint(-720, 720)) if rng.random() < 0.5 else None,
                    "follow_up_at": None, "priority": rng.randint(0, 100), "state": "open",
                    "created_at": now - timedelta(minutes=rng.randint(0, 90 * 24 * 60)),
                })
                candidate_rows.append({"task_id": task_id, "kind": "group", "value": group})
                if rng.random() < 0.05:
                    candidate_rows.append({"task_id": task_id, "kind": "user",
                                           "value": f"user{rng.randint(1, users):04d}"})
                if rng.random() < 0.01:
                    candidate_rows.append({"task_id": task_id, "kind": "not",
                                           "value": f"user{rng.randint(1, users):04d}"})
        for start in range(0, len(task_rows), chunk):
            conn.execute(insert(Task), task_rows[start:start + chunk])
        for start in range(0, len(candidate_rows), chunk):
            conn.execute(insert(TaskCandidate), candidate_rows[start:start + chunk])
    engine.dispose()
    # the users asked: one in a single unit, one in two units (who sees the most), one who is also a lead
    single = next(n for n, r in membership_of.items() if len({u for u, _ in r}) == 1)
    double = next(n for n, r in membership_of.items() if len({u for u, _ in r}) == 2)
    lead = next(n for n, r in membership_of.items() if any(role == "lead" for _, role in r))
    return {"one unit": single, "two units": double, "lead": lead}


def analyze(url: str) -> None:
    """After the bulk load, what PostgreSQL's autovacuum does on its own soon after (100,000 inserted rows
    are far past its insert threshold): planner statistics, and the visibility map that lets an
    index-only scan skip the table (without it, the inbox query read 750 heap pages). SQLite never
    collects statistics on its own, and has no visibility map: ANALYZE only."""
    engine = dbmod.make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    engine.dispose()


def inbox_latencies(url: str, username: str, repeat: int) -> tuple[list[float], int, int]:
    engine = dbmod.make_engine(url)
    factory = dbmod.make_session_factory(engine)
    latencies = []
    count = 0
    for i in range(repeat + 5):
        with factory() as s:
            user = identity.get_user(s, username)
            groups = identity.groups_of(user)  # noqa: F841 - loads memberships outside the timing
            t0 = time.perf_counter()
            rows = open_tasks_for_user(s, user, limit=50)
            elapsed = time.perf_counter() - t0
            if i >= 5:  # warm-up
                latencies.append(elapsed)
            count = len(rows)
    with factory() as s:
        user = identity.get_user(s, username)
        visible = s.scalar(select(func.count()).select_from(open_tasks_for_user_query(user).subquery()))
    engine.dispose()
    return latencies, count, visible


def explain(url: str, username: str) -> str:
    """The plan of exactly the statement `open_tasks_for_user` sends (captured, then EXPLAINed)."""
    from sqlalchemy import event

    engine = dbmod.make_engine(url)
    factory = dbmod.make_session_factory(engine)
    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    with factory() as s:
        user = identity.get_user(s, username)
        identity.groups_of(user)
        event.listen(engine, "before_cursor_execute", capture)
        open_tasks_for_user(s, user)
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    prefix = "EXPLAIN ANALYZE " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        lines = [str(r[-1]) for r in conn.exec_driver_sql(prefix + statement, parameters)]
    engine.dispose()
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-url", help=f"PostgreSQL admin URL (default: ${PG_ENV})")
    ap.add_argument("--runs", type=int, default=30, help="chain instances per variant (10 completions each)")
    ap.add_argument("--inbox-tasks", type=int, default=100_000)
    ap.add_argument("--inbox-instances", type=int, default=20_000)
    ap.add_argument("--inbox-users", type=int, default=400)
    ap.add_argument("--inbox-repeat", type=int, default=200)
    ap.add_argument("--skip-completion", action="store_true")
    ap.add_argument("--skip-inbox", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the engine completions on SQLite")
    ap.add_argument("--explain", action="store_true", help="print the inbox query plan")
    args = ap.parse_args(argv)
    admin = postgres_admin_url(args.pg_url)
    pg_note = "" if admin else f"PostgreSQL skipped: set {PG_ENV} or pass --pg-url"
    print(f"# Fallwerk engine benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"Python {sys.version.split()[0]} at {os.path.realpath(sys.executable)}, "
          f"reference loop {reference_loop_ms():.0f} ms)\n")

    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_completion:
            print(f"## Task completion: {CHAIN_TASKS}-user-task chain, {args.runs} instances per variant, "
                  "taking turns of 5\n")
            variants = [BareInMemory(), BareWithSerializer(),
                        Engine(fresh_sqlite(tmp, "complete.sqlite3"), "SQLite", profile=args.profile)]
            if admin:
                variants.append(Engine(fresh_postgres(admin), "PostgreSQL"))
            results = completions(variants, args.runs)
            print("| variant | completions | per second | p50 ms | p95 ms | p50 ms off the CPU (vs cycle) "
                  "| p50 vs serializer cycle |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for result in results:
                print(result.row(results[1]))
            if pg_note:
                print(f"\n{pg_note}")
            print("\nTarget: persisted completion (Fallwerk rows) within 3x of the bare serializer save/load cycle.\n")

        if not args.skip_inbox:
            print(f"## Open-tasks query: first page of 50, {args.inbox_tasks:,} open tasks across "
                  f"{args.inbox_instances:,} instances, 20 units, {args.inbox_users} users in 1-2 units\n")
            targets = [("SQLite", fresh_sqlite(tmp, "inbox.sqlite3"))]
            if admin:
                targets.append(("PostgreSQL", fresh_postgres(admin)))
            print("| database | user | tasks visible | rows | p50 ms | p95 ms |")
            print("|---|---|---:|---:|---:|---:|")
            plans = []
            for label, url in targets:
                t0 = time.perf_counter()
                who = populate_inbox(url, instances=args.inbox_instances, tasks=args.inbox_tasks,
                                     users=args.inbox_users)
                load = time.perf_counter() - t0
                if label == "SQLite":  # what a SQLite database that nobody ever analysed gets
                    latencies, rows, visible = inbox_latencies(url, who["two units"], max(args.inbox_repeat // 4, 10))
                    print(f"| {label}, no statistics (never ANALYZEd) | two units ({who['two units']}) | {visible:,} "
                          f"| {rows} | {pct(latencies, 50) * 1000:.2f} | {pct(latencies, 95) * 1000:.2f} |")
                analyze(url)
                for kind, username in who.items():
                    latencies, rows, visible = inbox_latencies(url, username, args.inbox_repeat)
                    print(f"| {label} | {kind} ({username}) | {visible:,} | {rows} | "
                          f"{pct(latencies, 50) * 1000:.2f} | {pct(latencies, 95) * 1000:.2f} |")
                if args.explain:
                    plans.append((label, explain(url, who["two units"])))
                print(f"|  | (bulk load {load:.1f} s) | | | | |")
            if pg_note:
                print(f"\n{pg_note}")
            print("\nTarget: p95 under 20 ms.")
            for label, plan in plans:
                print(f"\n{label} plan:\n```\n{plan}\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
