"""Sign-in, lockout, CSRF, sign-out, password change, session cookies, configuration."""

from __future__ import annotations

import pytest

from engine import identity
from tests.web.conftest import csrf_from, login
from webapp import ConfigurationError, create_app

PASSWORD = "richtig-geheim-42"
FAILED = "Anmeldung fehlgeschlagen"


@pytest.fixture
def alice_password(web):
    with web.transaction() as s:
        identity.get_user(s, "alice").password_hash = identity.hash_password(PASSWORD)
    return PASSWORD


def _sign_in(client, username, password, **extra):
    return client.post("/login", data={"username": username, "password": password, **extra})


def _failed_logins(db, username="alice"):
    with db.transaction() as s:
        user = identity.get_user(s, username)
        return user.failed_logins, user.locked_until


def test_signing_in_with_the_right_password_opens_the_inbox(client, alice_password):
    response = _sign_in(client, "alice", alice_password)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and "Alice Beraterin" in page.get_data(as_text=True)


def test_a_wrong_password_and_an_unknown_user_get_the_same_message(client, alice_password):
    wrong = _sign_in(client, "alice", "falsch-falsch")
    unknown = _sign_in(client, "niemand", "falsch-falsch")
    assert wrong.status_code == unknown.status_code == 401
    assert FAILED in wrong.get_data(as_text=True) and FAILED in unknown.get_data(as_text=True)
    assert wrong.get_data(as_text=True).count(FAILED) == unknown.get_data(as_text=True).count(FAILED)


def test_five_failures_lock_the_account_for_15_minutes_even_for_the_right_password(client, web, alice_password):
    for _ in range(5):
        assert _sign_in(client, "alice", "falsch-falsch").status_code == 401
    assert _failed_logins(web)[1] is not None
    locked = _sign_in(client, "alice", alice_password)
    assert locked.status_code == 401 and FAILED in locked.get_data(as_text=True)
    web.clock.advance(minutes=16)
    assert _sign_in(client, "alice", alice_password).status_code == 303
    assert _failed_logins(web) == (0, None)


def test_a_failed_sign_in_is_counted_although_the_answer_is_an_error(client, web, alice_password):
    _sign_in(client, "alice", "falsch-falsch")
    assert _failed_logins(web)[0] == 1


def test_a_form_without_csrf_token_is_rejected(app, alice_password):
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    response = _sign_in(client, "alice", alice_password)
    assert response.status_code == 400
    assert "Das Formular ist abgelaufen" in response.get_data(as_text=True)
    page = client.get("/login")
    token = csrf_from(page.get_data(as_text=True))
    assert _sign_in(client, "alice", alice_password, csrf_token=token).status_code == 303


def test_every_post_route_checks_the_csrf_token(app, web):
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    login(client, "alice")
    assert client.post("/logout").status_code == 400
    response = client.post("/filters", data={"name": "x"}, headers={"X-Request-ID": "req-csrf"})
    assert response.status_code == 400 and response.headers["X-Request-ID"] == "req-csrf"
    assert 'data-testid="request-id">req-csrf<' in response.get_data(as_text=True)  # named for enquiries


def test_only_a_local_next_address_is_followed(client, alice_password):
    response = _sign_in(client, "alice", alice_password, next="https://evil.example/")
    assert response.headers["Location"] == "/"
    client.post("/logout")
    response = _sign_in(client, "alice", alice_password, next="/account")
    assert response.headers["Location"] == "/account"


def test_signing_out_needs_a_post_and_ends_the_session(client, web):
    login(client, "alice")
    assert client.get("/logout").status_code == 405
    response = client.post("/logout")
    assert response.status_code == 303
    assert client.get("/").status_code == 302


def test_pages_need_a_signed_in_user(client, web):
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_the_session_cookie_is_httponly_and_samesite_lax(client, alice_password):
    response = _sign_in(client, "alice", alice_password)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_session_cookie_is_secure_when_configured(app, alice_password):
    app.config["SESSION_COOKIE_SECURE"] = True
    response = _sign_in(app.test_client(), "alice", alice_password)
    assert "Secure" in response.headers["Set-Cookie"]


def _session_cookie(client) -> str:
    return client.get_cookie("fallwerk_session").value


def _stock_serializer(app, secret_key):
    """Flask's own session signing, for a cookie as Flask writes it."""
    from flask.sessions import SecureCookieSessionInterface

    app.secret_key, kept = secret_key, app.secret_key
    try:
        return SecureCookieSessionInterface().get_signing_serializer(app)
    finally:
        app.secret_key = kept


def test_the_session_cookie_is_flasks_own_format(app, web):
    """Our session interface only signs faster: a cookie signed by Flask opens a session, and Flask
    reads ours (so sessions survive an update, and the signature is the documented one)."""
    client = app.test_client()
    login(client, "alice")
    contents = _stock_serializer(app, app.secret_key).loads(_session_cookie(client))
    assert contents["_user_id"] and contents["_fresh"] is True
    fresh = app.test_client()
    fresh.set_cookie("fallwerk_session", _stock_serializer(app, app.secret_key).dumps(contents))
    assert fresh.get("/").status_code == 200


def test_a_session_cookie_signed_with_another_key_opens_nothing(app, web):
    client = app.test_client()
    login(client, "alice")
    contents = _stock_serializer(app, app.secret_key).loads(_session_cookie(client))
    forged = app.test_client()
    forged.set_cookie("fallwerk_session", _stock_serializer(app, "another-secret").dumps(contents))
    assert forged.get("/").status_code == 302
    tampered = app.test_client()
    tampered.set_cookie("fallwerk_session", _session_cookie(client)[:-2] + "AA")
    assert tampered.get("/").status_code == 302


def test_a_replaced_secret_key_still_opens_sessions_signed_with_the_old_one(app, web):
    client = app.test_client()
    login(client, "alice")
    old = app.secret_key
    app.config.update(SECRET_KEY="the-new-secret", SECRET_KEY_FALLBACKS=[old])
    assert client.get("/").status_code == 200
    assert _stock_serializer(app, "the-new-secret").loads(_session_cookie(client))["_user_id"]  # re-signed
    app.config.update(SECRET_KEY_FALLBACKS=[])
    assert app.test_client().get("/").status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(("new", "message"), [
    ("kurz", "mindestens 10 Zeichen"),
    ("alice", "mindestens 10 Zeichen"),
    ("Alice", "mindestens 10 Zeichen"),
    ("x" * 201, "höchstens 200 Zeichen"),
])
def test_a_new_password_needs_ten_characters(client, alice_password, new, message):
    _sign_in(client, "alice", alice_password)
    response = client.post("/account/password", data={"current": alice_password, "new": new, "repeat": new})
    assert response.status_code == 422 and message in response.get_data(as_text=True)


def test_a_new_password_must_not_be_the_username(client, web):
    with web.transaction() as s:
        identity.add_user(s, "alexander.k", now=web.clock.now(), password=PASSWORD,
                          memberships=[("rz-west", "counsellor")])
    _sign_in(client, "alexander.k", PASSWORD)
    new = "Alexander.K"
    response = client.post("/account/password", data={"current": PASSWORD, "new": new, "repeat": new})
    assert response.status_code == 422
    assert "nicht Ihr Benutzername sein" in response.get_data(as_text=True)


def test_the_password_change_needs_the_current_password(client, alice_password):
    _sign_in(client, "alice", alice_password)
    new = "ein-neues-passwort"
    response = client.post("/account/password", data={"current": "falsch", "new": new, "repeat": new})
    assert response.status_code == 422 and "aktuelle Passwort ist nicht richtig" in response.get_data(as_text=True)


def test_a_changed_password_signs_in_and_ends_other_sessions(app, alice_password):
    mine, other = app.test_client(), app.test_client()
    _sign_in(mine, "alice", alice_password)
    _sign_in(other, "alice", alice_password)
    new = "ein-neues-passwort"
    response = mine.post("/account/password", data={"current": alice_password, "new": new, "repeat": new})
    assert response.status_code == 303
    assert mine.get("/").status_code == 200
    assert other.get("/").status_code == 302
    fresh = app.test_client()
    assert _sign_in(fresh, "alice", alice_password).status_code == 401
    assert _sign_in(fresh, "alice", new).status_code == 303


def test_production_refuses_to_start_without_a_secret_key(monkeypatch, web):
    monkeypatch.delenv("FALLWERK_SECRET_KEY", raising=False)
    monkeypatch.setenv("FALLWERK_ENV", "production")
    with pytest.raises(ConfigurationError):
        create_app({"FALLWERK_ENGINE": web.engine})


def test_development_generates_a_secret_key_with_a_warning(monkeypatch, web, caplog):
    monkeypatch.delenv("FALLWERK_SECRET_KEY", raising=False)
    monkeypatch.setenv("FALLWERK_ENV", "development")
    app = create_app({"FALLWERK_ENGINE": web.engine})
    assert len(app.config["SECRET_KEY"]) >= 32
    assert "generated secret key" in caplog.text


def test_wrong_current_passwords_count_towards_the_lock_like_failed_sign_ins(client, web, alice_password):
    """A taken-over session must not be a way to guess the password."""
    _sign_in(client, "alice", alice_password)
    for _ in range(4):
        response = client.post("/account/password", data={"current": "geraten", "new": "x" * 12, "repeat": "x" * 12})
        assert response.status_code == 422 and "Das aktuelle Passwort ist nicht richtig." in response.get_data(True)
    response = client.post("/account/password", data={"current": "geraten", "new": "x" * 12, "repeat": "x" * 12})
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert "für 15 Minuten gesperrt" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert client.get("/account").status_code == 302  # signed out
    assert _sign_in(client, "alice", alice_password).status_code == 401  # locked, even with the right one
