"""Timer benchmark: 10,000 timers due within one minute, fired by two `fallwerk worker` processes.

    .venv/bin/python bench/timers.py                       # PostgreSQL at $FALLWERK_TEST_POSTGRES_URL
    .venv/bin/python bench/timers.py --url postgresql://postgres@127.0.0.1:5432/test --timers 2000 --window 20

The URL is an admin URL: the benchmark drops and creates its own database (`fallwerk_bench_timers`,
`--database`) on that server, never the test database.

1. Seeding: instances of a one-timer model (`start -> timer (timeDate from the data) -> user task`) are
   started through the runtime, `--seed-batch` per transaction, each with its own due instant; the
   instants are spread evenly over a window of `--window` seconds that begins once seeding is done
   (a first batch measures the seeding rate, with a safety margin).
2. Firing: `--workers` worker processes (`fallwerk worker --json`, polling every `--interval` s) start
   before the window and run until every timer fired (or `--timeout`), then get SIGTERM.
3. Figures: lateness of each firing (`timers.fired_at - timers.due_at`, the instant the worker's
   transaction saved the instance), p50/p95/p99/max; throughput; how the work was shared; none
   twice (one fired timer row, one "timer" audit event, one user task per instance) and none lost.

Prints figures; asserts nothing. Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.engine import fresh_postgres  # noqa: E402
from engine import db as dbmod  # noqa: E402
from engine.clock import Clock  # noqa: E402
from engine.deploy import deploy  # noqa: E402
from engine.models import AuditEvent, Task, Timer  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from tests.workerkit import catch_timer  # noqa: E402

PG_ENV = "FALLWERK_TEST_POSTGRES_URL"
FALLWERK = Path(sys.executable).with_name("fallwerk")
KEY = "bench_timer"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def admin_url(cli_url: str | None) -> str:
    url = cli_url or os.environ.get(PG_ENV)
    if not url:
        sys.exit(f"bench/timers.py needs PostgreSQL: --url or ${PG_ENV}")
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


def fresh_database(admin: str, name: str) -> str:
    return fresh_postgres(admin, name)


def seed(factory, clock: Clock, dues: list[datetime], per_transaction: int) -> float:
    """Start one instance per due instant; returns the seconds it took."""
    t0 = time.perf_counter()
    for start in range(0, len(dues), per_transaction):
        with dbmod.transaction(factory) as session:
            runtime = Runtime(session, clock=clock)
            for due in dues[start:start + per_transaction]:
                runtime.start(KEY, user="bench", data={"due": due.isoformat()})
    return time.perf_counter() - t0


def fired_so_far(factory) -> int:
    with dbmod.transaction(factory) as session:
        return session.scalar(select(func.count()).select_from(Timer).where(Timer.state == "fired"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help=f"PostgreSQL admin URL (default: ${PG_ENV})")
    ap.add_argument("--database", default="fallwerk_bench_timers", help="the database to (re)create")
    ap.add_argument("--timers", type=int, default=10_000)
    ap.add_argument("--window", type=float, default=60.0, help="seconds over which the timers fall due")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100, help="worker --batch")
    ap.add_argument("--interval", type=float, default=0.2, help="worker --interval (idle poll, seconds)")
    ap.add_argument("--seed-batch", type=int, default=200, help="instances started per transaction")
    ap.add_argument("--timeout", type=float, default=1800.0, help="give up waiting after this many seconds")
    args = ap.parse_args(argv)

    url = fresh_database(admin_url(args.url), args.database)
    engine = dbmod.make_engine(url)
    factory = dbmod.make_session_factory(engine)
    clock = Clock()
    with dbmod.transaction(factory) as session:
        deploy(session, {f"{KEY}.bpmn": catch_timer(KEY, "${due}", "timeDate")}, user="bench", now=clock.now())

    # a first batch, due far away, measures the seeding rate (and stays as background timers)
    probe = min(500, max(args.timers // 20, 50))
    far = datetime.now(UTC) + timedelta(days=30)
    probe_seconds = seed(factory, clock, [far] * probe, args.seed_batch)
    rate = probe / probe_seconds
    lead = args.timers / rate * 1.3 + 15
    window_start = datetime.now(UTC) + timedelta(seconds=lead)
    step = args.window / args.timers
    dues = [window_start + timedelta(seconds=i * step) for i in range(args.timers)]
    print(f"seeding {args.timers:,} instances ({rate:,.0f}/s measured on {probe}); the window opens in {lead:.0f} s",
          flush=True)
    seed_seconds = seed(factory, clock, dues, args.seed_batch)
    margin = (window_start - datetime.now(UTC)).total_seconds()
    print(f"seeded in {seed_seconds:.1f} s ({args.timers / seed_seconds:,.0f} instances/s); "
          f"{margin:.1f} s before the window", flush=True)

    logs = Path(tempfile.mkdtemp(prefix="fallwerk-bench-timers-"))
    env = {**os.environ, "FALLWERK_DATABASE_URL": url, "FALLWERK_LOG_LEVEL": "INFO"}
    workers = []
    for n in range(args.workers):
        out = open(logs / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed after the worker exits
        workers.append((subprocess.Popen([str(FALLWERK), "worker", "--json", "--interval", str(args.interval),
                                          "--batch", str(args.batch)], env=env, stdout=out,
                                         stderr=subprocess.STDOUT), out))
    expected = args.timers + 0  # the probe's timers are a month away
    started = time.monotonic()
    last = -1
    while True:
        fired = fired_so_far(factory)
        if fired != last and (fired == expected or int(time.monotonic() - started) % 10 == 0):
            print(f"  {time.monotonic() - started:6.0f} s: {fired:,} fired", flush=True)
            last = fired
        if fired >= expected or time.monotonic() - started > args.timeout:
            break
        time.sleep(1)
    for process, _ in workers:
        process.send_signal(signal.SIGTERM)
    codes = [process.wait(timeout=60) for process, _ in workers]
    for _, out in workers:
        out.close()

    with dbmod.transaction(factory) as session:
        rows = session.execute(select(Timer.instance_id, Timer.due_at, Timer.fired_at, Timer.state)
                               .where(Timer.due_at < far - timedelta(days=1))).all()
        per_instance_events = session.execute(
            select(AuditEvent.instance_id, func.count()).where(AuditEvent.action == "timer")
            .group_by(AuditEvent.instance_id)).all()
        per_instance_tasks = session.execute(
            select(Task.instance_id, func.count()).where(Task.element_id == "after").group_by(Task.instance_id)).all()
        probe_fired = session.scalar(select(func.count()).select_from(Timer).where(
            Timer.due_at >= far - timedelta(days=1), Timer.state != "waiting"))
    lateness = [(r.fired_at - r.due_at).total_seconds() for r in rows if r.state == "fired"]
    instances = {r.instance_id for r in rows}
    twice_events = sum(1 for _, n in per_instance_events if n > 1)
    twice_tasks = sum(1 for _, n in per_instance_tasks if n > 1)
    fired_rows: dict[int, int] = {}
    for r in rows:
        if r.state == "fired":
            fired_rows[r.instance_id] = fired_rows.get(r.instance_id, 0) + 1
    lost = len(instances) - len(fired_rows)
    per_worker = []
    for n in range(args.workers):
        lines = (logs / f"worker-{n}.log").read_text(encoding="utf-8", errors="replace").splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        per_worker.append(sum(1 for r in records if r.get("message") == "timer fired"))
    last_fired = max(r.fired_at for r in rows if r.fired_at) if lateness else None
    span = (last_fired - window_start).total_seconds() if last_fired else float("nan")

    print()
    print("| timers | window | workers | seeding | p50 late | p95 late | p99 late | max late | "
          "done after window start | fired/s | twice | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.timers:,} | {args.window:.0f} s | {args.workers} | {seed_seconds:.0f} s "
          f"({args.timers / seed_seconds:,.0f}/s) | {pct(lateness, 50):.2f} s | {pct(lateness, 95):.2f} s | "
          f"{pct(lateness, 99):.2f} s | {max(lateness, default=float('nan')):.2f} s | {span:.1f} s | "
          f"{len(lateness) / span if span and span == span else float('nan'):,.0f} | "
          f"{twice_events + twice_tasks + sum(1 for n in fired_rows.values() if n > 1)} | {lost} |")
    print()
    print(f"firings per worker (from their logs): {per_worker}; exit codes after SIGTERM: {codes}")
    print(f"firings with a 'timer' audit event: {len(per_instance_events):,}; "
          f"'after' tasks: {len(per_instance_tasks):,}"
          f"; background timers (a month away) touched: {probe_fired}")
    print(f"seeding margin before the window: {margin:.1f} s; worker logs: {logs}")
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {f.read().split()[:3]}; CPUs: {os.cpu_count()}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
