"""What every template can use: the signed-in user, the policy, the diagram bundle, the nav."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request, url_for
from flask_wtf.csrf import generate_csrf

from engine import policy

from .auth import me

DIST = Path(__file__).parent / "static" / "dist"


def _can(permission: str, resource=None) -> bool:
    return policy.can(me(), policy.Permission(permission), resource)


def _url_with(**changes) -> str:
    """The current URL with some query arguments changed (None removes one)."""
    args = request.args.to_dict()
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = value
    return url_for(request.endpoint, **(request.view_args or {}), **args)


def init_app(app: Flask) -> None:
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    @app.context_processor
    def _globals():
        return {"me": me(), "can": _can, "url_with": _url_with, "csrf_token": generate_csrf,
                "diagram_bundle": (DIST / "diagram.js").exists(), "Permission": policy.Permission}
