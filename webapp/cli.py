"""The `fallwerk` console script with the web app's commands added to the engine's click group.

    fallwerk serve --port 5000             # the Flask development server
    fallwerk serve --port 5000 --worker    # with the timer worker in a thread beside it

Point the console script at `webapp.cli:main` (engine/ must never import Flask, so the engine's group
cannot know this command).
"""

from __future__ import annotations

import os
import threading

import click

from engine.cli import main

__all__ = ["main"]


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--debug/--no-debug", default=False, help="Flask's debugger and reloader (never in production).")
@click.option("--worker/--no-worker", default=False, help="Run the timer worker beside the server (one process).")
def serve(host: str, port: int, debug: bool, worker: bool):
    """Serve the web app with the Flask development server (gunicorn in production)."""
    from . import ENV_MODE, create_app
    from .security import configure_logging

    os.environ.setdefault(ENV_MODE, "development")
    configure_logging(os.environ.get("FALLWERK_LOG_LEVEL", "INFO"))
    app = create_app()
    stop = threading.Event()
    if worker:
        from engine import worker as worker_module
        from engine.db import make_session_factory

        factory = make_session_factory(app.extensions["fallwerk.engine"])
        threading.Thread(target=worker_module.run_forever, args=(factory,), kwargs={"stop": stop},
                         name="fallwerk-worker", daemon=True).start()
    click.echo(f"Fallwerk läuft auf http://{host}:{port}/  (Strg+C beendet)")
    try:
        app.run(host=host, port=port, debug=debug, use_reloader=debug)
    finally:
        stop.set()
