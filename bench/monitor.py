"""Monitor benchmark: the case list and the figures page with 100,000 cases, on SQLite and PostgreSQL.

    .venv/bin/python bench/monitor.py                    # SQLite, and PostgreSQL if FALLWERK_TEST_POSTGRES_URL is set
    .venv/bin/python bench/monitor.py --pg-url postgresql://postgres@127.0.0.1:5432/test --instances 100000

Seeds in bulk with SQLAlchemy core (instances, the facts table, topics, escalations, open and finished
tasks with candidates), with the network's real procedures deployed, then requests the pages through the
Flask app (test client, signed in: rendering included) and times them:

- the case list: first page, four filtered lists, twenty pages onwards (keyset), as a supervisor, a unit
  lead and a coordinator;
- the figures page (the year, by quarter and by month) and the figures of the previous year, recounted
  (as after any change to a case) and again on unchanged data (remembered per data stamp and hour);
- the CSV export of a filtered list.

Prints p50/p95 per request kind; asserts nothing. The PostgreSQL URL is an admin URL: the benchmark
creates its own database `fallwerk_bench_monitor`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select, text  # noqa: E402

from bench import engine as bench_engine  # noqa: E402
from engine import db as dbmod  # noqa: E402
from engine import demo, identity  # noqa: E402
from engine.clock import FixedClock  # noqa: E402
from engine.models import (  # noqa: E402
    CaseEscalation,
    CaseFact,
    CaseFactTopic,
    ProcessDefinition,
    ProcessInstance,
    Task,
    TaskCandidate,
)
from engine.reporting.periods import month_number  # noqa: E402

PG_ENV = "FALLWERK_TEST_POSTGRES_URL"
PG_DATABASE = "fallwerk_bench_monitor"
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
UNITS = ["rz-westmecklenburg", "rz-vorpommern-greifswald", "rz-mecklenburgische-seenplatte", "rz-rostock",
         "rz-vorpommern-ruegen", "opferberatung", "betriebliche-beratung", "ausstieg", "islamismus-praevention"]
TERRITORIES = ["lk-nordwestmecklenburg", "lk-ludwigslust-parchim", "sn", "lk-vorpommern-greifswald",
               "lk-mecklenburgische-seenplatte", "lk-rostock", "hro", "lk-vorpommern-ruegen"]
CLIENT_TYPES = ["person", "verein", "schule", "kirche", "kommune", "landeseinrichtung", "unternehmen",
                "sonstige-organisation"]
TOPICS = ["rechtsextremismus", "antisemitismus", "rassismus", "fremdenfeindlichkeit", "islamismus",
          "antifeminismus", "verschwoerung", "gewalt", "arbeitswelt", "ausstieg", "sonstiges"]
STEPS = ["Task_FirstContact", "Task_ClarifyMandate", "Task_GoalAgreement", "Task_ComposeTeam",
         "Task_ProblemAnalysis", "Task_Options", "Task_Session", "Task_Closing"]
MARKS = ["achieved", "partly", "not_achieved"]
INDICATORS = ["problem_clarity", "sensitisation", "resources", "independence", "future", "democratic_competence"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def fresh_postgres(admin_url: str) -> str:
    return bench_engine.fresh_postgres(admin_url, PG_DATABASE)


# --- seeding -------------------------------------------------------------------------------------------------
def seed(url: str, count: int, rng: random.Random) -> dict:
    engine = dbmod.make_engine(url)
    factory = dbmod.make_session_factory(engine)
    clock = FixedClock(NOW - timedelta(days=3 * 365))
    with dbmod.transaction(factory) as s:
        identity.load_organisation(s, ROOT / "data" / "organisation.json")
        demo.create_users(s, clock, password=None)
        identity.add_user(s, "sven", now=clock.now(), memberships=[("lks", "supervisor")])
        demo.deploy_models(s, ROOT, clock)
        definitions = {d.key: d.id for d in s.scalars(select(ProcessDefinition))}
    t0 = time.perf_counter()
    instances, facts_rows, topics, escalations, tasks, candidates = [], [], [], [], [], []
    span = 3 * 365 * 86400
    for i in range(1, count + 1):
        proactive = rng.random() < 0.1
        started = NOW - timedelta(seconds=rng.randrange(span))
        age = (NOW - started).total_seconds()
        status = "running" if age < 120 * 86400 and rng.random() < 0.7 else rng.choice(
            ["completed"] * 6 + ["cancelled"] + (["running"] if age < 400 * 86400 else []))
        ended = started + timedelta(seconds=rng.randrange(1, int(min(age, 200 * 86400)) + 2)) \
            if status != "running" else None
        unit = rng.choice(UNITS)
        step = rng.choice(STEPS) if status == "running" else ""
        instances.append({"id": i, "case_number": f"B{i:07d}", "definition_id": definitions[
            "proactive_intervention" if proactive else "consultation"],
            "process_key": "proactive_intervention" if proactive else "consultation", "status": status,
            "has_incident": status == "running" and rng.random() < 0.01, "state_json": "{}",
            "serializer_version": "1", "started_by": "anna.berger", "started_at": started,
            "updated_at": ended or started + timedelta(days=1), "ended_at": ended, "end_reason": None,
            "responsible_unit": unit, "active_elements": step, "lock_version": 1})
        chosen = rng.sample(TOPICS, rng.randint(1, 3))
        closed = status == "completed" and not proactive and rng.random() < 0.75
        commission = None if status == "running" and step == "Task_FirstContact" else (closed or rng.random() < 0.6)
        row = {"instance_id": i, "process_key": instances[-1]["process_key"], "status": status, "started_at": started,
               "ended_at": ended, "request": not proactive, "opened_at": None if proactive else started,
               "opened_month": None if proactive else month_number(started), "ended_month": month_number(ended),
               "proactive": proactive, "network": proactive or rng.random() < 0.05, "unit": unit,
               "territory": rng.choice(TERRITORIES), "client_type": None if proactive else rng.choice(CLIENT_TYPES),
               "primary_topic": chosen[0], "topics": ",".join(sorted(chosen)), "channel": "telefon",
               "commission": None if proactive else commission, "closure_reason": None,
               "outcome": "consultation_closed" if closed else ("request_closed" if status == "completed" else None),
               "experts": (rng.random() < 0.2) if closed else None, "sessions": rng.randint(1, 8) if closed else None,
               "escalations": 0, "approval": rng.choice(["approved", "rejected", None]) if proactive else None}
        for name in INDICATORS:
            row[f"indicator_{name}"] = rng.choice(MARKS) if closed else None
        if not proactive and rng.random() < 0.05:
            row["escalations"] = 1
            escalations.append({"instance_id": i, "key": f"e{i}", "kind": rng.choice(["support", "statewide"]),
                                "decision": rng.choice(["takeover", "support", "declined", None]),
                                "requested_at": started + timedelta(days=rng.randint(1, 30)), "decided_at": None})
        facts_rows.append(row)
        topics += [{"instance_id": i, "topic": t} for t in chosen]
        # finished steps (one day to three weeks each) and the open one
        created = started
        for n, element in enumerate(STEPS[:rng.randint(1, 4)]):
            finished = created + timedelta(hours=rng.randint(2, 500))
            tasks.append({"id": f"{i:08d}-{n:03d}", "instance_id": i, "process_key": row["process_key"],
                          "element_id": element, "title": element, "kind": "user", "candidate_groups": unit,
                          "candidate_users": "", "state": "completed", "created_at": created, "ended_at": finished,
                          "due_at": created + timedelta(days=3) if element == "Task_FirstContact" else None,
                          "completed_by": "anna.berger", "priority": 50})
            created = finished
        if status == "running" and step:
            task_id = f"{i:08d}-open"
            tasks.append({"id": task_id, "instance_id": i, "process_key": row["process_key"], "element_id": step,
                          "title": step, "kind": "user", "candidate_groups": unit, "candidate_users": "",
                          "state": "open", "created_at": created, "ended_at": None, "completed_by": None,
                          "due_at": created + timedelta(days=3) if rng.random() < 0.5 else None, "priority": 50})
            candidates.append({"task_id": task_id, "kind": "group", "value": unit})
    with engine.begin() as conn:
        for table, rows in ((ProcessInstance, instances), (CaseFact, facts_rows), (CaseFactTopic, topics),
                            (CaseEscalation, escalations), (Task, tasks), (TaskCandidate, candidates)):
            for start in range(0, len(rows), 5000):
                conn.execute(insert(table.__table__), rows[start:start + 5000])
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('process_instances_id_seq', (SELECT max(id) FROM process_instances))"))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()
    print(f"  seeded {count:,} cases, {len(tasks):,} tasks, {len(topics):,} topics in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return {"engine": engine}


# --- measuring ----------------------------------------------------------------------------------------------
def client_for(app, username):
    from tests.web.conftest import login

    client = app.test_client()
    login(client, username)
    return client


def timed(client, url: str, runs: int, *, cold: bool = False) -> list[float]:
    """Latencies of `runs` requests; `cold`: the figures are recounted each time (as after any change)."""
    from engine.reporting import figures

    latencies = []
    for _ in range(runs):
        if cold:
            figures._cache.clear()
        t0 = time.perf_counter()
        response = client.get(url)
        response.get_data()
        latencies.append(time.perf_counter() - t0)
        assert response.status_code == 200, (url, response.status_code)
    return latencies


def measure(url: str, engine, runs: int) -> list[tuple[str, list[float]]]:
    from webapp import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "FALLWERK_ENGINE": engine,
                      "FALLWERK_CLOCK": FixedClock(NOW), "DATABASE_URL": url, "SESSION_COOKIE_SECURE": False,
                      "UPLOAD_FOLDER": tempfile.mkdtemp()})
    supervisor, lead, coordinator = (client_for(app, u) for u in ("sven", "sabine.wolf", "katrin.lange"))
    rows = []
    timed(supervisor, "/monitor/", 2)  # warm up: caches of specs, labels, templates
    rows.append(("list, first page (supervisor)", timed(supervisor, "/monitor/", runs)))
    rows.append(("list, running in one unit", timed(supervisor, "/monitor/?status=running&unit=rz-rostock", runs)))
    rows.append(("list, current step", timed(supervisor, "/monitor/?step=Task_Session", runs)))
    rows.append(("list, territory + overdue", timed(supervisor, "/monitor/?territory=hro&overdue=1", runs)))
    rows.append(("list, older than 2 years, oldest first",
                 timed(supervisor, "/monitor/?min_age=730&sort=started_asc", runs)))
    pages, target = [], "/monitor/"
    for _ in range(20):
        t0 = time.perf_counter()
        body = supervisor.get(target).get_data(as_text=True)
        pages.append(time.perf_counter() - t0)
        found = body.split('rel="next" data-testid="next-page"')[0].rsplit('href="', 1)[-1].split('"')[0]
        target = found.replace("&amp;", "&")
    rows.append(("list, next 20 pages (keyset)", pages))
    rows.append(("list, first page (unit lead)", timed(lead, "/monitor/", runs)))
    rows.append(("list, first page (coordinator)", timed(coordinator, "/monitor/", runs)))
    timed(supervisor, "/monitor/figures?year=2026", 1)
    pages = (("figures 2026 by quarter", "/monitor/figures?year=2026&period=quarter"),
             ("figures 2026 by month", "/monitor/figures?year=2026&period=month"),
             ("figures 2025 by month, closed", "/monitor/figures?year=2025&period=month&metric=closed"),
             ("figures CSV 2026", "/monitor/figures.csv?year=2026"))
    for label, figures_url in pages:
        rows.append((f"{label}, recounted", timed(supervisor, figures_url, runs, cold=True)))
        rows.append((f"{label}, unchanged data", timed(supervisor, figures_url, runs)))
    rows.append(("CSV export, running cases", timed(supervisor, "/monitor/export.csv?status=running", 3)))
    return rows


def report(name: str, rows) -> None:
    print(f"\n### {name}\n")
    print("| request | n | p50 ms | p95 ms |")
    print("|---|---:|---:|---:|")
    for label, latencies in rows:
        print(f"| {label} | {len(latencies)} | {pct(latencies, 50) * 1000:.1f} | {pct(latencies, 95) * 1000:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"# Monitor benchmark: {args.instances:,} cases, {args.runs} requests per kind\n")
    with tempfile.TemporaryDirectory() as directory:
        targets = [("SQLite", bench_engine.fresh_sqlite(directory, "monitor.sqlite3"))]
        admin = args.pg_url or os.environ.get(PG_ENV)
        if admin:
            targets.append(("PostgreSQL", fresh_postgres(admin)))
        else:
            print(f"(PostgreSQL skipped: set {PG_ENV} or --pg-url)")
        for name, url in targets:
            print(f"{name}:", flush=True)
            seeded = seed(url, args.instances, random.Random(args.seed))
            report(name, measure(url, seeded["engine"], args.runs))
            seeded["engine"].dispose()


if __name__ == "__main__":
    main()
