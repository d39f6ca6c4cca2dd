"""`fallwerk serve`: the engine's command group with the web app's command added."""

from __future__ import annotations

from click.testing import CliRunner
from flask import Flask

from webapp.cli import main


def test_serve_prints_the_local_address_and_runs_the_app(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(Flask, "run", lambda self, **kwargs: calls.append(kwargs))
    monkeypatch.setattr("webapp.security.configure_logging", lambda level: None)  # keep pytest's handlers
    monkeypatch.setenv("FALLWERK_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("FALLWERK_ENV", "development")
    result = CliRunner().invoke(main, ["serve", "--port", "5123"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:5123/" in result.output
    assert calls == [{"host": "127.0.0.1", "port": 5123, "debug": False, "use_reloader": False}]


def test_the_engine_commands_are_still_there():
    result = CliRunner().invoke(main, ["--help"])
    assert "serve" in result.output and "deploy" in result.output and "worker" in result.output
