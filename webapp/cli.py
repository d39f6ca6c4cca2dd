"""The `fallwerk` console script with the web app's commands added to the engine's click group.

    fallwerk serve --port 5000      # the Flask development server

Point the console script at `webapp.cli:main` (engine/ must never import Flask, so the engine's group
cannot know this command).
"""

from __future__ import annotations

import os

import click

from engine.cli import main

__all__ = ["main"]


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--debug/--no-debug", default=False, help="Flask's debugger and reloader (never in production).")
def serve(host: str, port: int, debug: bool):
    """Serve the web app with the Flask development server (gunicorn in production)."""
    from . import ENV_MODE, create_app
    from .security import configure_logging

    os.environ.setdefault(ENV_MODE, "development")
    configure_logging(os.environ.get("FALLWERK_LOG_LEVEL", "INFO"))
    app = create_app()
    click.echo(f"Fallwerk läuft auf http://{host}:{port}/  (Strg+C beendet)")
    app.run(host=host, port=port, debug=debug, use_reloader=debug)
