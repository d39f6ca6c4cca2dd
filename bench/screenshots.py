"""Screenshots of the main pages for the docs (docs/screenshots/*.png, 1280x800), from the demo database.

    .venv/bin/python bench/screenshots.py              # regenerates docs/screenshots/
    .venv/bin/python bench/screenshots.py --out /tmp/shots --keep

As a newcomer would: `fallwerk demo` into a temporary FALLWERK_INSTANCE_PATH, `fallwerk serve` on a free
loopback port, then Debian's Chromium (Playwright, never a downloaded browser) signs in as demo users and
photographs the pages. Needs the JavaScript bundle (`npm ci && npm run build`) for the diagrams.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from engine import db as dbmod  # noqa: E402
from engine.demo import DEMO_PASSWORD  # noqa: E402
from engine.models import ProcessInstance, Task  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--font-render-hinting=none"]
VIEWPORT = {"width": 1280, "height": 800}
BIN = Path(sys.executable).parent
COUNSELLOR, LEAD, COORDINATOR = "anna.berger", "maria.schulz", "katrin.lange"
UNIT = "rz-westmecklenburg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fallwerk(*args: str, env: dict, **kwargs):
    return subprocess.run([str(BIN / "fallwerk"), *args], env=env, cwd=ROOT, check=True, capture_output=True,
                          text=True, **kwargs)


def start_server(env: dict, port: int, log: Path) -> subprocess.Popen:
    """`fallwerk serve`; while the console script points at the engine's CLI (without `serve`), the web
    app's click group (webapp.cli:main) directly."""
    has_serve = subprocess.run([str(BIN / "fallwerk"), "serve", "--help"], env=env, cwd=ROOT,
                               capture_output=True).returncode == 0
    command = [str(BIN / "fallwerk")] if has_serve else [sys.executable, "-c", "from webapp.cli import main; main()"]
    process = subprocess.Popen([*command, "serve", "--port", str(port)], env=env, cwd=ROOT,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    stop(process)
    raise RuntimeError("the server did not start within 30 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pick(url: str) -> dict:
    """From the demo data: a running consultation of the counsellor's unit with the most completed steps,
    and an open task of that unit with a form."""
    engine = dbmod.make_engine(url)
    with engine.connect() as conn:
        done = (select(Task.instance_id, func.count().label("n")).where(Task.state == "completed")
                .group_by(Task.instance_id).subquery())
        case_id = conn.scalar(
            select(ProcessInstance.id).join(done, done.c.instance_id == ProcessInstance.id)
            .where(ProcessInstance.responsible_unit == UNIT, ProcessInstance.status == "running",
                   ProcessInstance.process_key == "consultation")
            .order_by(done.c.n.desc(), ProcessInstance.id))
        task_id = conn.scalar(
            select(Task.id).join(ProcessInstance, ProcessInstance.id == Task.instance_id)
            .where(ProcessInstance.responsible_unit == UNIT, Task.state == "open", Task.form_ref.is_not(None),
                   Task.assignee.is_(None))
            .order_by(Task.created_at))
    engine.dispose()
    return {"case": case_id, "task": task_id}


def shoot(base: str, out: Path, ids: dict) -> list[Path]:
    from playwright.sync_api import sync_playwright

    taken = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)

        def signed_in(username: str | None):
            context = browser.new_context(viewport=VIEWPORT, locale="de-DE", timezone_id="Europe/Berlin",
                                          device_scale_factor=1)
            page = context.new_page()
            if username:
                page.goto(f"{base}/login")
                page.fill("#username", username)
                page.fill("#password", DEMO_PASSWORD)
                page.click("[data-testid=login-form] button[type=submit]")
                page.wait_for_url(f"{base}/")
            return page

        def save(page, name: str, *, ready: str | None = None, scroll_to: str | None = None):
            if ready:
                page.wait_for_selector(ready, state="attached", timeout=15_000)
            page.wait_for_load_state("networkidle")
            if scroll_to:
                page.evaluate("(sel) => document.querySelector(sel).scrollIntoView({block: 'start'})", scroll_to)
            page.wait_for_timeout(300)
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=False)
            taken.append(path)

        page = signed_in(None)
        page.goto(f"{base}/login")
        save(page, "01-anmelden")

        page = signed_in(COUNSELLOR)
        page.goto(f"{base}/?view=team")
        save(page, "02-aufgaben")

        page.goto(f"{base}/tasks/{ids['task']}")
        with page.expect_navigation():
            page.click("[data-testid=complete]")
        save(page, "03-formular-mit-fehlern")

        page.goto(f"{base}/cases/{ids['case']}")
        save(page, "04-fall", ready="#diagramm .djs-container svg g.viewport")
        save(page, "05-fall-diagramm", ready="#diagramm .djs-container svg g.viewport",
             scroll_to="section[aria-labelledby=ablauf-titel]")

        page.goto(f"{base}/procedures/")
        save(page, "06-verfahren-starten")

        page = signed_in(COORDINATOR)
        page.goto(f"{base}/modeller/")
        save(page, "07-modeller-verfahren")
        page.click("[data-testid=edit-consultation]")
        save(page, "08-modeller", ready="[data-modeller][data-ready=true]")

        page = signed_in(LEAD)
        page.goto(f"{base}/monitor/")
        save(page, "09-ueberblick-faelle")
        page.goto(f"{base}/monitor/cases/{ids['case']}")
        save(page, "10-ueberblick-fall", ready="[data-monitor-diagram][data-ready=true]",
             scroll_to="section:has([data-monitor-diagram])")
        page.goto(f"{base}/monitor/figures")
        save(page, "11-kennzahlen")
        browser.close()
    return taken


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep", action="store_true", help="keep the temporary demo instance folder")
    args = ap.parse_args(argv)
    if not (ROOT / "webapp" / "static" / "dist" / "diagram.js").exists():
        print("webapp/static/dist is missing: run `npm ci && npm run build` (make setup)", file=sys.stderr)
        return 2
    instance = Path(tempfile.mkdtemp(prefix="fallwerk-screenshots-"))
    env = {k: v for k, v in os.environ.items() if k not in ("FALLWERK_DATABASE_URL", "FALLWERK_SECRET_KEY")}
    env.update({"FALLWERK_INSTANCE_PATH": str(instance), "FALLWERK_ENV": "development",
                "FALLWERK_LOG_LEVEL": "WARNING"})
    try:
        print(fallwerk("demo", env=env).stdout.strip())
        ids = pick(f"sqlite:///{instance / 'fallwerk.sqlite3'}")
        port = free_port()
        server = start_server(env, port, instance / "serve.log")
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            for path in shoot(f"http://127.0.0.1:{port}", args.out, ids):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            stop(server)
    finally:
        if args.keep:
            print(f"demo instance kept in {instance}")
        else:
            shutil.rmtree(instance, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
