"""Settings that come from the environment, read in one place."""

import os
from pathlib import Path

ENV_DATABASE_URL = "FALLWERK_DATABASE_URL"
ENV_INSTANCE_PATH = "FALLWERK_INSTANCE_PATH"


def instance_path() -> Path:
    """The folder for local state: the default SQLite database, uploads. Created on first use."""
    path = Path(os.environ.get(ENV_INSTANCE_PATH) or Path.cwd() / "instance")
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """Any SQLAlchemy URL from FALLWERK_DATABASE_URL; by default a SQLite file in the instance folder."""
    url = os.environ.get(ENV_DATABASE_URL)
    if url:
        if url.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; the bare scheme would ask for psycopg2
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    return f"sqlite:///{instance_path() / 'fallwerk.sqlite3'}"
