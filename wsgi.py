"""WSGI entry point for gunicorn: `gunicorn 'webapp:create_app()'` or `gunicorn wsgi:app`."""

import os

from webapp import create_app
from webapp.security import configure_logging

configure_logging(os.environ.get("FALLWERK_LOG_LEVEL", "INFO"))
app = create_app()
