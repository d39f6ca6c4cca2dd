"""Error pages, security headers, request ids and logs, language and formats, the translations."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.web.conftest import case_at_advice, login, open_task

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_page_is_a_german_404_without_details(client, web):
    login(client, "alice")
    response = client.get("/gibt-es-nicht")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and "Seite nicht gefunden" in page and "<h1>" in page
    assert "Traceback" not in page


def test_an_unexpected_error_is_a_german_500_page_without_traceback(web, caplog):
    from webapp import create_app

    app = create_app({"TESTING": False, "SECRET_KEY": "x", "FALLWERK_ENGINE": web.engine, "WTF_CSRF_ENABLED": False,
                      "FALLWERK_CLOCK": web.clock})

    @app.route("/kaputt")
    def broken():
        raise RuntimeError("geheime Interna")

    response = app.test_client().get("/kaputt")
    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "Störung" in page
    assert "geheime Interna" not in page and "Traceback" not in page
    assert any(r.name == "webapp.errors" and r.levelno == logging.ERROR for r in caplog.records)


def test_an_engine_error_maps_to_a_german_message_in_one_place():
    from engine.errors import Conflict, NotFound, PermissionDenied, StaleTask
    from webapp import create_app
    from webapp.errors import engine_message, engine_status

    with create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"}).test_request_context():
        assert engine_status(NotFound("x")) == 404 and "gibt es nicht" in engine_message(NotFound("x"))
        assert engine_status(PermissionDenied("x")) == 403 and engine_status(StaleTask("x")) == 409
        assert engine_status(Conflict("x")) == 409 and "Bitte versuchen Sie es" in engine_message(Conflict("x"))


def test_every_response_carries_security_headers(client, web):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_scripts(client, web):
    case = case_at_advice(web)
    login(client, "alice")
    for url in ("/", f"/cases/{case.id}", f"/tasks/{open_task(web, case.id).id}", "/account", "/procedures/"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>" not in page and "onclick=" not in page and "javascript:" not in page


def test_a_given_request_id_is_kept_and_otherwise_one_is_made(client, web):
    assert client.get("/login", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/login", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert made != "bad id with spaces" and len(made) == 32


def test_each_request_is_logged_with_structured_fields(client, web, caplog):
    caplog.set_level(logging.INFO, logger="webapp.request")
    client.get("/login", headers={"X-Request-ID": "req-7"})
    record = next(r for r in caplog.records if r.name == "webapp.request")
    assert record.request_id == "req-7" and record.status == 200 and record.path == "/login"
    assert record.endpoint == "auth.login" and isinstance(record.duration_ms, float)


def test_the_request_log_names_the_signed_in_user_and_a_static_file_needs_no_database(client, web, caplog):
    from sqlalchemy import event

    caplog.set_level(logging.INFO, logger="webapp.request")
    login(client, "alice")
    client.get("/")
    assert [r.user for r in caplog.records if r.name == "webapp.request"][-1] == "alice"
    begun = []

    def count(conn):
        begun.append(conn)

    event.listen(web.engine, "begin", count)
    try:
        response = client.get("/static/css/app.css")
        response.close()
    finally:
        event.remove(web.engine, "begin", count)
    assert response.status_code == 200 and begun == []  # the log did not load the user for it
    assert [r.user for r in caplog.records if r.name == "webapp.request"][-1] is None


def test_the_json_log_format_includes_the_extra_fields():
    import json

    from webapp.security import JsonFormatter

    record = logging.makeLogRecord({"name": "webapp.request", "msg": "GET /", "levelname": "INFO",
                                    "request_id": "r1", "status": 200})
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "r1" and line["status"] == 200 and line["message"] == "GET /"


def test_the_language_is_chosen_per_user_on_the_account_page(client, web):
    login(client, "alice")
    assert "Meine Aufgaben" in client.get("/").get_data(as_text=True)
    response = client.post("/account/language", data={"locale": "en"})
    assert response.status_code == 303
    page = client.get("/").get_data(as_text=True)
    assert "My tasks" in page and 'lang="en"' in page and "Meine Aufgaben" not in page
    login(client, "bob")
    assert "Meine Aufgaben" in client.get("/").get_data(as_text=True)


def test_an_unknown_language_is_refused_with_wtforms_message_in_the_users_language(client, web):
    login(client, "alice")
    response = client.post("/account/language", data={"locale": "fr"})
    assert response.status_code == 422 and "Keine gültige Auswahl." in response.get_data(as_text=True)
    client.post("/account/language", data={"locale": "en"})
    assert "Not a valid choice." in client.post("/account/language", data={"locale": "fr"}).get_data(as_text=True)


def test_dates_are_german_by_default_and_english_for_english_users(client, web):
    case = case_at_advice(web)
    task_id = open_task(web, case.id, "advise").id
    login(client, "alice")
    assert "28.11.2026, 10:00 Uhr" in client.get(f"/tasks/{task_id}").get_data(as_text=True)
    client.post("/account/language", data={"locale": "en"})
    assert "28 Nov 2026, 10:00" in client.get(f"/tasks/{task_id}").get_data(as_text=True)


def test_literal_translations_in_templates_read_as_the_i18n_extension_gives_them(app):
    """`_("text")` and `_("text", name=value)` are translated when the template is compiled
    (webapp.i18n.LiteralGettext): the same text, escaping and "%%" handling as Jinja's newstyle gettext, in
    either language. Templates are compiled once per language."""
    from flask_babel import force_locale

    source = ('{{ _("Aufgaben") }}|{{ _("Aufgaben") ~ "<b>" }}|{{ _(\'Abmelden\').upper() }}|{{ _("100 %%") }}|'
              '{{ _("<i>nicht übersetzt</i>") }}|'
              '{{ _("erledigt von %(name)s am %(when)s", name="<x>", when=(1, 2)|join("-")) }}|'
              '{{ _("erledigt von %(name)s am %(when)s", name=_("Konto"), when=1).upper() }}|'
              '{% if _("Konto") %}ja{% endif %}')
    plain = app.jinja_env.overlay()
    plain.extensions = {k: v.bind(plain) for k, v in app.jinja_env.extensions.items() if "LiteralGettext" not in k}
    assert len(plain.extensions) == len(app.jinja_env.extensions) - 1
    compiled = app.jinja_env.compile(source, raw=True)
    assert compiled.count("context.call(") == 2  # .upper() twice: the texts are in the code, values go to a filter
    with app.test_request_context():
        loaded = {}
        for language, expected in (("de", "Aufgaben|Aufgaben&lt;b&gt;|ABMELDEN|"),
                                   ("en", "Tasks|Tasks&lt;b&gt;|SIGN OUT|")):
            with force_locale(language):
                page = app.jinja_env.from_string(source).render()
                assert page == plain.from_string(source).render()
                assert page.startswith(expected) and "100 %|<i>nicht übersetzt</i>|" in page and "|ja" in page
                loaded[language] = app.jinja_env.get_template("error.html")
                assert app.jinja_env.get_template("error.html") is loaded[language]
        assert loaded["de"] is not loaded["en"]


def test_numbers_are_formatted_for_the_language(app):
    from flask_babel import force_locale, format_decimal

    from webapp.i18n import fmt_number

    with app.test_request_context():
        assert fmt_number(1234.5) == "1.234,5"
        with force_locale("en"):
            assert fmt_number(1234.5) == "1,234.5"
        for language in ("de", "en"):
            with force_locale(language):
                for number in [*range(-20, 1100), 12345, 2.5, None]:
                    assert fmt_number(number) == ("" if number is None else format_decimal(number)), number


def test_dates_read_as_babel_writes_them_in_german_time_across_summer_time(app):
    from datetime import UTC, date, datetime, timedelta

    from flask_babel import force_locale, format_date, format_datetime

    from webapp.i18n import fmt_date, fmt_datetime

    patterns = {"de": ("dd.MM.yyyy, HH:mm 'Uhr'", "dd.MM.yyyy"), "en": ("d MMM yyyy, HH:mm", "d MMM yyyy")}
    # every hour around both changes of 2026 (29 March, 25 October), and every month's first day
    instants = [datetime(2026, 3, 28, 20, tzinfo=UTC) + timedelta(hours=h) for h in range(12)]
    instants += [datetime(2026, 10, 24, 20, tzinfo=UTC) + timedelta(hours=h) for h in range(12)]
    instants += [datetime(2026, month, 1, 23, 30, tzinfo=UTC) for month in range(1, 13)]
    instants += [datetime(2026, 12, 31, 23, 5)]  # naive: UTC
    with app.test_request_context():
        for language, (long, short) in patterns.items():
            with force_locale(language):
                for at in instants:
                    assert fmt_datetime(at) == format_datetime(at, long), at
                    assert fmt_date(at) == format_datetime(at, short), at
                    assert fmt_date(at.date()) == format_date(at.date(), short), at
                assert fmt_date(date(2026, 9, 7)) == format_date(date(2026, 9, 7), short)
                assert fmt_datetime(None) == fmt_date(None) == ""


def test_the_compiled_english_catalogue_is_up_to_date():
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    folder = ROOT / "webapp" / "translations" / "en" / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as po:
        catalog = read_po(po)
    import io

    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    assert (folder / "messages.mo").read_bytes() == compiled.getvalue(), "run: pybabel compile -d webapp/translations"


def test_every_message_has_an_english_translation():
    from babel.messages.pofile import read_po

    with (ROOT / "webapp" / "translations" / "messages.pot").open("rb") as pot:
        source = read_po(pot)
    with (ROOT / "webapp" / "translations" / "en" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        english = read_po(po)
    missing = [m.id for m in source if m.id and not (english.get(m.id) and english.get(m.id).string)]
    assert not missing, f"untranslated: {missing[:10]}"


@pytest.mark.parametrize("module", ["engine.policy"])
def test_the_engine_never_imports_flask(module):
    source = (ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
    assert "flask" not in source.lower().replace("no flask here", "")


def test_an_error_page_names_the_request_id_for_enquiries(client, web):
    login(client, "alice")
    page = client.get("/gibt-es-nicht", headers={"X-Request-ID": "req-404"}).get_data(as_text=True)
    assert 'data-testid="request-id">req-404<' in page


def test_the_production_entry_point_logs_json_and_tunes_the_garbage_collector(tmp_path):
    """`gunicorn wsgi:app`: the app, JSON request logs, and the collector tuned for a long-running process
    (in a process of its own: freezing would change the test run's collector)."""
    import subprocess
    import sys

    probe = ("import gc, logging, wsgi; "
             "print(type(wsgi.app).__name__, gc.get_threshold(), gc.get_freeze_count() > 1000, "
             "type(logging.getLogger().handlers[0].formatter).__name__)")
    env = {**os.environ, "FALLWERK_ENV": "development", "FALLWERK_SECRET_KEY": "x",
           "FALLWERK_INSTANCE_PATH": str(tmp_path), "FALLWERK_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "_App (10000, 20, 20) True JsonFormatter"


def test_page_links_follow_the_script_root_the_app_is_served_under(client, web):
    login(client, "alice")
    for root in ("", "/fallwerk", "/anderswo"):
        page = client.get("/", base_url=f"http://localhost{root}").get_data(as_text=True)
        assert f'href="{root}/static/css/app.css"' in page and f'href="{root}/account"' in page
        assert f'action="{root}/logout"' in page


def test_an_id_beyond_the_databases_integers_is_not_found(app, client, web):
    """Every `<int:...>` in a path ends at PostgreSQL's INTEGER (SQLite's at 2**63 - 1): a larger number is
    a 404 of the router, never a query the database refuses."""
    case = case_at_advice(web)
    assert app.url_map.bind("localhost").match(f"/cases/{2**31 - 1}") == ("cases.show", {"case_id": 2**31 - 1})
    login(client, "carla")  # a coordinator: cases, the monitor and the modeller
    for number in (2**31, 9999999999, 10**20):
        for url in (f"/cases/{number}", f"/cases/{number}/diagram.bpmn", f"/cases/{case.id}/attachments/{number}",
                    f"/monitor/cases/{number}", f"/monitor/procedures/casework/{number}",
                    f"/monitor/procedures/casework/{number}/diagram.bpmn", f"/modeller/drafts/{number}",
                    f"/modeller/drafts/{number}/model.bpmn",
                    f"/modeller/procedures/casework/versions/{number}/model.bpmn"):
            assert client.get(url).status_code == 404, url
        for url in (f"/cases/{number}/comments", f"/monitor/cases/{number}/retry", f"/modeller/drafts/{number}/check",
                    f"/filters/{number}/delete"):
            assert client.post(url).status_code == 404, url


def test_a_session_whose_user_id_is_no_ascii_number_signs_nobody_in(client, web):
    login(client, "alice")
    with client.session_transaction() as session:
        session["_user_id"] = "²:" + session["_user_id"].partition(":")[2]  # "²".isdigit(), but int() refuses it
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
