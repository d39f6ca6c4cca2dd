"""Shared fixtures of the browser tests: the network's organisation, demo users and procedures in a real
database, the web app on a live loopback server (werkzeug in a thread), Debian's Chromium through
Playwright, and sign-in helpers.

    def test_x(network, live_server, new_page):      # `network` runs on SQLite and, with a URL, PostgreSQL
        page = new_page()
        sign_in(page, live_server.url, "anna.berger")

Playwright drives /usr/bin/chromium (apt-get, `make chromium`); it never downloads a browser. The diagram
bundle comes from `npm ci && npm run build` (make setup).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine import demo, identity
from engine.models import User
from tests.conftest import Database

ROOT = Path(__file__).resolve().parent.parent.parent
DIST = ROOT / "webapp" / "static" / "dist"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = demo.DEMO_PASSWORD
VIEWPORT = {"width": 1280, "height": 800}


# --- the database ------------------------------------------------------------------------------------------
def build_network(db: Database) -> Database:
    """The real organisation (data/organisation.json), the demo users (all with the demo password) and the
    network's procedures, forms and routing table, without demo cases."""
    from engine.identity import hash_password

    hashed = hash_password(PASSWORD)  # argon2 takes a third of a second: once, not per user
    with db.transaction() as s:
        identity.load_organisation(s, ROOT / "data" / "organisation.json")
        demo.create_users(s, db.clock, password=None)
        for user in s.query(User):
            user.password_hash = hashed
        demo.deploy_models(s, ROOT, db.clock)
    return db


@pytest.fixture
def network(db) -> Database:
    """The network on the test's database (SQLite, and PostgreSQL when FALLWERK_TEST_POSTGRES_URL is set)."""
    return build_network(db)


@pytest.fixture
def sqlite_network(tmp_path, sqlite_template) -> Database:
    """The network on SQLite only (for tests whose PostgreSQL run would add nothing)."""
    path = tmp_path / "network.sqlite3"
    shutil.copy(sqlite_template, path)
    db = build_network(Database(f"sqlite:///{path}"))
    yield db
    db.engine.dispose()


# --- the live server ---------------------------------------------------------------------------------------
@dataclass
class LiveServer:
    url: str
    app: object
    db: Database
    _stop: Callable[[], None] = field(repr=False, default=lambda: None)

    def stop(self) -> None:
        self._stop()


def serve(db: Database, upload_folder: Path, *, prepare: Callable | None = None, **config) -> LiveServer:
    """The web app on the test's database and clock, on 127.0.0.1 with a free port, in a daemon thread.
    `prepare(app)` may add routes before the first request (e.g. an error page to look at)."""
    from werkzeug.serving import make_server

    from webapp import create_app

    app = create_app({"TESTING": True, "PROPAGATE_EXCEPTIONS": False, "SECRET_KEY": "browser-test",
                      "FALLWERK_ENGINE": db.engine, "FALLWERK_CLOCK": db.clock, "DATABASE_URL": db.url,
                      "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False,
                      "UPLOAD_FOLDER": str(upload_folder), **config})
    if prepare is not None:
        prepare(app)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="live-server", daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()

    return LiveServer(f"http://127.0.0.1:{httpd.server_port}", app, db, stop)


@pytest.fixture
def live_server(network, tmp_path) -> LiveServer:
    server = serve(network, tmp_path / "uploads")
    yield server
    server.stop()


@pytest.fixture
def sqlite_live_server(sqlite_network, tmp_path) -> LiveServer:
    server = serve(sqlite_network, tmp_path / "uploads")
    yield server
    server.stop()


# --- the browser -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def launched_chromium(bundle: str = "diagram.js"):
    """Debian's Chromium through Playwright, once it and the page's script bundle are there."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's package")
    if not (DIST / bundle).exists():
        pytest.fail(f"webapp/static/dist/{bundle} is missing: run `npm ci && npm run build` (make setup)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, launched once per test module. Not per session: Playwright's sync API allows one
    running instance per thread, and other modules start their own."""
    with launched_chromium() as browser:
        yield browser


def watch(page, *, documents: bool = False) -> list[str]:
    """Collect what goes wrong in a page: script errors, Content Security Policy violations, HTTP errors
    of sub-resources (the page's own status is the test's business, unless `documents`). The list is also
    `page.problems`."""
    problems: list[str] = []
    page.add_init_script("document.addEventListener('securitypolicyviolation', (e) => console.error("
                         "'CSP ' + e.violatedDirective + ' ' + e.sourceFile + ':' + e.lineNumber))")
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 and (documents or r.request.resource_type != "document")
            and not r.url.endswith("/favicon.ico") else None)
    page.problems = problems
    return problems


@pytest.fixture
def new_page(chromium):
    """A factory of pages, each in its own browser context (own cookies: one signed-in person each),
    1280x800, German. `new_page(axe=True)` lets axe-core be injected past the app's CSP."""
    contexts = []

    def make(*, axe: bool = False, viewport: dict | None = None):
        context = chromium.new_context(viewport=viewport or VIEWPORT, locale="de-DE", timezone_id="Europe/Berlin",
                                       bypass_csp=axe)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        watch(page)
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the sign-in form and wait for the inbox."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("[data-testid=login-form] button[type=submit]")
    page.wait_for_url(f"{base}/")


def sign_out(page) -> None:
    page.click("[data-testid=logout]")
    page.wait_for_url("**/login**")
