"""What every template can use: the signed-in user, the policy, the diagram bundle, the nav."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask, g, request, url_for
from flask_babel import gettext
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

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


def form_text(text: str) -> Markup:
    """A form's text component (form-js writes Markdown): headings and paragraphs, everything escaped."""
    parts = []
    for block in re.split(r"\n\s*\n|\n(?=#)", text or ""):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        if lines[0].startswith("#"):
            parts.append(Markup('<p class="form-heading">{}</p>').format(lines[0].lstrip("#").strip()))
            lines = lines[1:]
        if lines:
            parts.append(Markup("<p>{}</p>").format(Markup("<br>").join(lines)))
    return Markup("").join(parts)


def message(text: str) -> str:
    """A message in the user's language: the engine's validation messages (`engine.forms.values.Message`)
    are German and keep their template, which the catalogue translates; other text stays as it is."""
    template = getattr(text, "template", None)
    return text if template is None else gettext(template, **text.values)


_bundle_built = False


def _diagram_bundle() -> bool:
    """Whether the diagram's JavaScript bundle is built (`npm run build`); once it is, without asking the
    file system again (a task page asks twice)."""
    global _bundle_built
    _bundle_built = _bundle_built or (DIST / "diagram.js").exists()
    return _bundle_built


def _constant_urls(app: Flask):
    """Templates' `url_for`: Flask's, except that a URL without variable parts (the navigation's, a static
    file's) is built once per script root. Werkzeug's build takes about 10 µs, and every page has a
    dozen of those; the app has no URL defaults that could change them."""
    built: dict[tuple[str, str, str | None], str] = {}

    def url_for(endpoint: str, **values) -> str:
        if endpoint[:1] == "." or (values and (endpoint != "static" or values.keys() != {"filename"})):
            return app.url_for(endpoint, **values)
        key = (request.script_root, endpoint, values.get("filename"))
        url = built.get(key)
        if url is None:
            url = built[key] = app.url_for(endpoint, **values)
        return url

    return url_for


def person(username: str | None) -> str:
    """How the pages name a user: the display name (looked up once per request), else the user name."""
    if not username:
        return "?"
    known = g.setdefault("_display_names", {})
    if username not in known:
        from . import database
        from .services.casework import display_names

        known[username] = display_names(database.session(), [username]).get(username, username)
    return known[username]


def init_app(app: Flask) -> None:
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.globals["diagram_bundle"] = _diagram_bundle
    app.jinja_env.globals["url_for"] = _constant_urls(app)
    app.jinja_env.globals["person"] = person
    app.add_template_filter(form_text, "form_text")
    app.add_template_filter(message, "message")

    @app.context_processor
    def _globals():
        return {"me": me(), "can": _can, "url_with": _url_with, "csrf_token": generate_csrf}
