"""Web benchmark: the staff app under gunicorn on loopback, driven the way a browser drives it.

    .venv/bin/python bench/web.py                         # SQLite, and PostgreSQL if FALLWERK_TEST_POSTGRES_URL is set
    .venv/bin/python bench/web.py --pg-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/web.py --profile               # cProfile of the form posts, in-process (Flask test client)

`gunicorn -w 1 -b 127.0.0.1:PORT wsgi:app` (the production entry point: one sync worker, request logs as
JSON lines into the benchmark's log file, the tuned garbage collector; FALLWERK_ENV=development so the
session cookie works over http) against a SQLite file and against PostgreSQL (its own database
`fallwerk_bench_web`, created through the admin URL). The client speaks HTTP/1.1 over a socket with a cookie
jar (see `Browser`): it signs in through the sign-in form and takes the CSRF token from each page, as a
browser does.

(a) Task completion: 50 cases of a 10-user-task procedure (tests/modelkit's chain, each task with a small
    form: a required text and a required choice). For each case: open its first task page, then ten times
    post the form (action=complete) and follow the 303 to the next task page (the last one leads to the
    inbox). Figures: completions per second over the whole drive (post + following the redirect), p50/p95
    of the form post alone and of the whole step, and the worker's CPU time per completion (post and
    page: what the server spends, whatever the client and the machine's other load add to the clock).
    Two warm-up cases are not counted.
(b) The inbox page (GET /, rendering included) for a user, with 100,000 open tasks in the database
    (bench/engine.populate_inbox: 20,000 instances, 20 units, 400 users in 1-2 units), ANALYZEd (on
    PostgreSQL VACUUM ANALYZE, as autovacuum soon would): "my tasks", "my team's tasks", the team's second
    page (keyset cursor) and a text filter.

Targets (issue 5): p95 of a task form post under 10 ms and at least 100 completions per second with one
worker on SQLite; inbox page p95 under 50 ms at 100,000 open tasks. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, update  # noqa: E402

from bench import engine as bench_engine  # noqa: E402
from bench.engine import analyze, fresh_sqlite, pct, populate_inbox, reference_loop_ms  # noqa: E402
from engine import db as dbmod  # noqa: E402
from engine import identity  # noqa: E402
from engine.clock import Clock  # noqa: E402
from engine.deploy import deploy  # noqa: E402
from engine.models import Task, User  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from tests import modelkit  # noqa: E402

PG_ENV = "FALLWERK_TEST_POSTGRES_URL"
PG_DATABASE = "fallwerk_bench_web"
GUNICORN = Path(sys.executable).with_name("gunicorn")
PASSWORD = "bench-passwort"  # a benchmark database
USER, UNIT, PROCESS, STEPS = "bench.user", "rz-bench", "bench_chain", 10
STEP_FORM = json.dumps({"id": "bench_step", "type": "default", "schemaVersion": 16, "components": [
    {"id": "b1", "type": "textfield", "key": "note", "label": "Notiz",
     "validate": {"required": True, "maxLength": 200}},
    {"id": "b2", "type": "select", "key": "outcome", "label": "Ergebnis", "validate": {"required": True},
     "values": [{"value": "erledigt", "label": "erledigt"}, {"value": "offen", "label": "offen"}]},
]}).encode()
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


# --- databases -------------------------------------------------------------------------------------------
def postgres_admin_url(cli_url: str | None) -> str | None:
    url = cli_url or os.environ.get(PG_ENV)
    if not url:
        return None
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


def fresh_postgres(admin_url: str) -> str:
    return bench_engine.fresh_postgres(admin_url, PG_DATABASE)


def chain_with_forms() -> bytes:
    """tests/modelkit.chain with the step form on every task."""
    xml = modelkit.chain(PROCESS, n=STEPS, groups=UNIT).decode()
    return xml.replace(f'camunda:candidateGroups="{UNIT}"',
                       f'camunda:candidateGroups="{UNIT}" camunda:formRef="bench_step"').encode()


def seed_completion(url: str, cases: int) -> None:
    engine = dbmod.make_engine(url)
    factory = dbmod.make_session_factory(engine)
    clock = Clock()
    with dbmod.transaction(factory) as s:
        identity.add_unit(s, UNIT, name="Bench")
        identity.add_user(s, USER, now=clock.now(), display_name="Bench", password=PASSWORD,
                          memberships=[(UNIT, "counsellor")])
        deploy(s, {f"{PROCESS}.bpmn": chain_with_forms(), "bench_step.form": STEP_FORM}, user=USER, now=clock.now())
    for _ in range(cases):
        with dbmod.transaction(factory) as s:
            Runtime(s, clock=clock).start(PROCESS, user=USER)
    engine.dispose()


def first_tasks(url: str) -> list[str]:
    engine = dbmod.make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Task.id).where(Task.state == "open", Task.element_id == "t1")
                            .order_by(Task.instance_id)).scalars().all()
    engine.dispose()
    return list(rows)


def set_password(url: str, usernames: list[str]) -> None:
    hashed = identity.hash_password(PASSWORD)
    engine = dbmod.make_engine(url)
    with engine.begin() as conn:
        conn.execute(update(User).where(User.username.in_(usernames)).values(password_hash=hashed))
    engine.dispose()


# --- gunicorn --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """`gunicorn -w 1 wsgi:app` on a free loopback port; stopped with SIGTERM (its pid only)."""

    def __init__(self, url: str, instance: Path, log: Path):
        self.port = free_port()
        env = {**os.environ, "FALLWERK_DATABASE_URL": url, "FALLWERK_SECRET_KEY": "bench-web-secret",
               "FALLWERK_ENV": "development", "FALLWERK_SECURE_COOKIES": "0", "FALLWERK_INSTANCE_PATH": str(instance)}
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [str(GUNICORN), "-w", "1", "-b", f"127.0.0.1:{self.port}", "--chdir", str(ROOT), "wsgi:app"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start within 30 s")

    def worker(self) -> int:
        """The pid of the (one) worker process."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"gunicorn should have one worker, not {len(children)}")
        return int(children[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --- a browser-like client ---------------------------------------------------------------------------------
class Browser:
    """A browser's requests, without the browser: a cookie jar and HTTP/1.1 over a plain socket, one
    connection per request (gunicorn's sync worker closes it). The client's own work lies on the
    measured path (the next request waits for it), so it does as little as a browser's network layer
    would: http.client parses each response's headers with the email package and cost about 0.3 ms a
    request more."""

    def __init__(self, port: int):
        self.port, self.cookies = port, {}

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str, str]:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Accept: text/html",
                "User-Agent: fallwerk-bench", "Connection: close"]
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        body = b""
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as conn:
            conn.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
            chunks = []
            while chunk := conn.recv(262144):
                chunks.append(chunk)
        header, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        status_line, *lines = header.decode("latin-1").split("\r\n")
        location = ""
        for line in lines:
            name, _, value = line.partition(":")
            name, value = name.lower(), value.strip()
            if name == "set-cookie":
                cookie, _, _attributes = value.partition(";")
                key, _, cookie_value = cookie.partition("=")
                self.cookies[key.strip()] = cookie_value
            elif name == "location":
                location = value
            elif name == "transfer-encoding":
                raise RuntimeError(f"{path}: a chunked response, which this client does not read")
        return int(status_line.split(" ", 2)[1]), location, payload.decode("utf-8", "replace")

    def get(self, path: str) -> tuple[int, str, str]:
        return self.request("GET", path)

    def post(self, path: str, form: dict) -> tuple[int, str, str]:
        return self.request("POST", path, form)

    def sign_in(self, username: str) -> None:
        _, _, html = self.get("/login")
        token = csrf(html)
        status, _, _ = self.post("/login", {"csrf_token": token, "username": username, "password": PASSWORD,
                                                   "next": ""})
        if status != 303:
            raise RuntimeError(f"sign-in as {username} failed: HTTP {status}")


def csrf(html: str) -> str:
    match = CSRF.search(html)
    if not match:
        raise RuntimeError("no CSRF token in the page")
    return unescape(match.group(1))


def path_of(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- (a) completions ---------------------------------------------------------------------------------------
def drive(browser: Browser, first_task: str, posts: list[float], steps: list[float]) -> None:
    """One case: its first task page, then ten posts, each followed by its redirect."""
    status, _, html = browser.get(f"/tasks/{first_task}")
    if status != 200:
        raise RuntimeError(f"task page: HTTP {status}")
    path = f"/tasks/{first_task}"
    for i in range(STEPS):
        form = {"csrf_token": csrf(html), "note": f"Schritt {i + 1} erledigt", "outcome": "erledigt",
                "action": "complete"}
        t0 = time.perf_counter()
        status, location, _ = browser.post(path, form)
        t1 = time.perf_counter()
        if status != 303:
            raise RuntimeError(f"form post {path}: HTTP {status}")
        path = path_of(location)
        status, _, html = browser.get(path)
        t2 = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
        posts.append(t1 - t0)
        steps.append(t2 - t0)
    if not path.startswith("/") or path.startswith("/tasks/"):
        raise RuntimeError(f"after {STEPS} steps the case should be done, but the browser is at {path}")


def completion(label: str, url: str, cases: int, warmup: int, tmp: Path) -> dict:
    seed_completion(url, cases + warmup)
    tasks = first_tasks(url)
    with Gunicorn(url, tmp / f"instance-{label}", tmp / f"gunicorn-{label}.log") as server:
        browser = Browser(server.port)
        browser.sign_in(USER)
        for task in tasks[:warmup]:
            drive(browser, task, [], [])
        posts, steps = [], []
        worker = server.worker()
        t0, cpu0 = time.perf_counter(), cpu_seconds(worker)
        for task in tasks[warmup:]:
            drive(browser, task, posts, steps)
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(worker) - cpu0
    return {"database": label, "completions": len(posts), "per_second": len(posts) / elapsed,
            "post_p50": pct(posts, 50) * 1000, "post_p95": pct(posts, 95) * 1000,
            "step_p50": pct(steps, 50) * 1000, "step_p95": pct(steps, 95) * 1000,
            "worker_cpu": cpu / len(posts) * 1000}


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- (b) the inbox -----------------------------------------------------------------------------------------
def inbox(label: str, url: str, tasks: int, instances: int, users: int, repeat: int, tmp: Path) -> list[dict]:
    t0 = time.perf_counter()
    who = populate_inbox(url, instances=instances, tasks=tasks, users=users)
    analyze(url)
    load = time.perf_counter() - t0
    set_password(url, list(who.values()))
    rows = []
    with Gunicorn(url, tmp / f"instance-inbox-{label}", tmp / f"gunicorn-inbox-{label}.log") as server:
        for kind, username in who.items():
            browser = Browser(server.port)
            browser.sign_in(username)
            _, _, team = browser.get("/?view=team")
            cursor = re.search(r'href="([^"]*after=[^"]+)"[^>]*data-testid="next-page"', team)
            pages = {"my tasks": "/", "team's tasks": "/?view=team",
                     "team, page 2": unescape(cursor.group(1)) if cursor else None,
                     "team, text filter": "/?view=team&text=Schritt+3"}
            for page, path in pages.items():
                if path is None:
                    continue
                latencies = []
                for i in range(repeat + 5):
                    start = time.perf_counter()
                    status, _, html = browser.get(path)
                    elapsed = time.perf_counter() - start
                    if status != 200:
                        raise RuntimeError(f"{path}: HTTP {status}")
                    if i >= 5:
                        latencies.append(elapsed)
                shown = html.count('data-testid="task-row"')
                count = re.search(r'data-testid="count-team">([^<]+)<', html)
                rows.append({"database": label, "user": f"{kind} ({username})", "page": page, "rows": shown,
                             "team_count": count.group(1) if count else "?", "p50": pct(latencies, 50) * 1000,
                             "p95": pct(latencies, 95) * 1000, "load": load})
    return rows


# --- profiling (in-process, the Flask test client) ---------------------------------------------------------
def profile_posts(url: str, cases: int) -> str:
    """cProfile of the form posts of `cases` cases through the Flask test client: where the time goes."""
    import cProfile
    import io
    import pstats

    os.environ.setdefault("FALLWERK_ENV", "development")
    from webapp import create_app

    seed_completion(url, cases + 1)
    tasks = first_tasks(url)
    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": url, "SESSION_COOKIE_SECURE": False,
                      "UPLOAD_FOLDER": tempfile.mkdtemp()})
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"csrf_token": csrf(html), "username": USER, "password": PASSWORD, "next": ""})
    profiler = cProfile.Profile()
    for n, task in enumerate(tasks):
        path = f"/tasks/{task}"
        html = client.get(path).get_data(as_text=True)
        for i in range(STEPS):
            form = {"csrf_token": csrf(html), "note": f"Schritt {i}", "outcome": "erledigt", "action": "complete"}
            if n:
                profiler.enable()
            response = client.post(path, data=form)
            if n:
                profiler.disable()
            path = path_of(response.headers["Location"])
            html = client.get(path).get_data(as_text=True)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(25)
    return out.getvalue()


def count_statements(url: str, cases: int) -> list[dict]:
    """SQL statements per form post and per following task page, through the Flask test client: each
    statement the database receives (BEGIN and COMMIT included, and the reads and writes that go straight to
    the driver: engine.direct, engine.writes), counted per request."""
    from sqlalchemy import event

    from engine import direct, writes

    os.environ.setdefault("FALLWERK_ENV", "development")
    from webapp import create_app

    seed_completion(url, cases)
    tasks = first_tasks(url)
    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": url, "SESSION_COOKIE_SECURE": False,
                      "UPLOAD_FOLDER": tempfile.mkdtemp()})
    seen: list[str] = []
    engine = app.extensions["fallwerk.engine"]
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: seen.append(statement))
    # SQLite sends its BEGIN to the driver, psycopg sends it implicitly: counted as the transaction begins
    event.listen(engine, "begin", lambda conn: seen.append("BEGIN"))
    event.listen(engine, "commit", lambda conn: seen.append("COMMIT"))
    send, fetch = writes._send, direct.fetch

    def counted(dbapi_connection, dialect, queued):
        seen.extend(str(write.statement) for write in queued for _ in write.rows)
        return send(dbapi_connection, dialect, queued)

    def counted_fetch(conn, statement, params):
        seen.append(str(statement))
        return fetch(conn, statement, params)

    writes._send, direct.fetch = counted, counted_fetch
    try:
        posts, pages = _count(tasks, app.test_client(), seen)
    finally:
        writes._send, direct.fetch = send, fetch
    return [{"request": "form post (action=complete)", "counts": posts},
            {"request": "following task page (GET)", "counts": pages}]


def _count(tasks: list[str], client, seen: list[str]):
    from collections import Counter

    html = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"csrf_token": csrf(html), "username": USER, "password": PASSWORD, "next": ""})
    posts, pages = Counter(), Counter()
    for task in tasks:
        path = f"/tasks/{task}"
        html = client.get(path).get_data(as_text=True)
        for i in range(STEPS):
            form = {"csrf_token": csrf(html), "note": f"Schritt {i}", "outcome": "erledigt", "action": "complete"}
            seen.clear()
            response = client.post(path, data=form)
            posts[len(seen)] += 1
            path = path_of(response.headers["Location"])
            seen.clear()
            html = client.get(path).get_data(as_text=True)
            if path.startswith("/tasks/"):
                pages[len(seen)] += 1
    return posts, pages


# --- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-url", help=f"PostgreSQL admin URL (default: ${PG_ENV})")
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2, help="cases driven before measuring")
    ap.add_argument("--inbox-tasks", type=int, default=100_000)
    ap.add_argument("--inbox-instances", type=int, default=20_000)
    ap.add_argument("--inbox-users", type=int, default=400)
    ap.add_argument("--inbox-repeat", type=int, default=100)
    ap.add_argument("--skip-completion", action="store_true")
    ap.add_argument("--skip-inbox", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the form posts in-process (SQLite)")
    ap.add_argument("--statements", action="store_true",
                    help="count SQL statements per form post and per task page, in-process (SQLite, and PostgreSQL "
                         "with a URL)")
    args = ap.parse_args(argv)
    if not GUNICORN.exists():
        print(f"{GUNICORN} is missing: `make setup` installs gunicorn", file=sys.stderr)
        return 2
    admin = postgres_admin_url(args.pg_url)
    pg_note = "" if admin else f"\nPostgreSQL skipped: set {PG_ENV} or pass --pg-url"
    print(f"# Fallwerk web benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {sys.version.split()[0]} at "
          f"{os.path.realpath(sys.executable)}, gunicorn -w 1, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"reference loop {reference_loop_ms():.0f} ms)\n")

    with tempfile.TemporaryDirectory(prefix="fallwerk-bench-web-") as directory:
        tmp = Path(directory)
        if args.profile:
            print("## cProfile of the form posts (Flask test client, SQLite)\n\n```")
            print(profile_posts(fresh_sqlite(directory, "profile.sqlite3"), min(args.cases, 20)).strip())
            print("```\n")
        if args.statements:
            targets = [("SQLite", fresh_sqlite(directory, "statements.sqlite3"))]
            if admin:
                targets.append(("PostgreSQL", fresh_postgres(admin)))
            print("## SQL statements per request (Flask test client; BEGIN and COMMIT included)\n")
            print("| database | request | statements (requests) |")
            print("|---|---|---|")
            for label, url in targets:
                for row in count_statements(url, min(args.cases, 5)):
                    counts = ", ".join(f"{n} ({k})" for n, k in sorted(row["counts"].items()))
                    print(f"| {label} | {row['request']} | {counts} |")
            print()
        if not args.skip_completion:
            targets = [("SQLite", fresh_sqlite(directory, "complete.sqlite3"))]
            if admin:
                targets.append(("PostgreSQL", fresh_postgres(admin)))
            results = [completion(label, url, args.cases, args.warmup, tmp) for label, url in targets]
            print(f"## (a) Task completion in the browser's way: {args.cases} cases x {STEPS} tasks with a form "
                  f"(post the form, follow the 303 to the next task page)\n")
            print("| database | completions | completions per second | post p50 ms | post p95 ms "
                  "| post + redirect p50 ms | post + redirect p95 ms | worker CPU ms per completion |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in results:
                print(f"| {r['database']} | {r['completions']} | {r['per_second']:.0f} | {r['post_p50']:.1f} | "
                      f"{r['post_p95']:.1f} | {r['step_p50']:.1f} | {r['step_p95']:.1f} | {r['worker_cpu']:.1f} |")
            print(pg_note)
            print("\nTargets (SQLite, one worker): form post p95 under 10 ms; at least 100 completions per second.\n")
        if not args.skip_inbox:
            targets = [("SQLite", fresh_sqlite(directory, "inbox.sqlite3"))]
            if admin:
                targets.append(("PostgreSQL", fresh_postgres(admin)))
            rows = []
            for label, url in targets:
                rows += inbox(label, url, args.inbox_tasks, args.inbox_instances, args.inbox_users,
                              args.inbox_repeat, tmp)
            print(f"## (b) The inbox page with {args.inbox_tasks:,} open tasks ({args.inbox_instances:,} cases, "
                  f"20 units, {args.inbox_users} users), {args.inbox_repeat} requests each\n")
            print("| database | user | page | rows shown | team count | p50 ms | p95 ms |")
            print("|---|---|---|---:|---:|---:|---:|")
            for r in rows:
                print(f"| {r['database']} | {r['user']} | {r['page']} | {r['rows']} | {r['team_count']} | "
                      f"{r['p50']:.1f} | {r['p95']:.1f} |")
            print(pg_note)
            print("\nTarget: inbox page p95 under 50 ms at 100,000 open tasks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
