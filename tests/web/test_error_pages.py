"""Error pages after a failed database write: the request's session is rolled back before the page is rendered
(the page shows the signed-in user, whom a session that failed to flush cannot load)."""

from __future__ import annotations

import logging

import pytest

from engine.models import Unit
from tests.web.conftest import login


@pytest.fixture
def failing_app(web):
    """The app as in production (errors are answered, not raised), with a page whose write fails."""
    from webapp import create_app, database

    app = create_app({"TESTING": False, "SECRET_KEY": "x", "FALLWERK_ENGINE": web.engine, "WTF_CSRF_ENABLED": False,
                      "FALLWERK_CLOCK": web.clock, "DATABASE_URL": web.url, "SESSION_COOKIE_SECURE": False})

    @app.route("/doppelt")
    def duplicate():
        database.session().add(Unit(id="lks", name="Noch eine LKS", kind="service", territories=""))
        database.session().flush()  # the unit exists: IntegrityError

    return app


def test_a_failed_flush_still_gets_the_german_500_page(failing_app, caplog):
    client = failing_app.test_client()
    login(client, "carla")
    response = client.get("/doppelt")
    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "Störung" in page and 'href="/modeller/"' in page
    assert "IntegrityError" not in page and "Traceback" not in page
    assert any(r.name == "webapp.errors" and r.levelno == logging.ERROR for r in caplog.records)
    assert client.get("/").status_code == 200
