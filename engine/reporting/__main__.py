"""`python -m engine.reporting rebuild-facts`: write the facts of every instance (after upgrading a
database whose instances were saved before the facts table existed). Uses FALLWERK_DATABASE_URL."""

from __future__ import annotations

import sys

from .. import db
from ..clock import Clock
from . import facts


def main(argv: list[str]) -> int:
    if argv != ["rebuild-facts"]:
        print("usage: python -m engine.reporting rebuild-facts", file=sys.stderr)
        return 2
    engine = db.make_engine()
    try:
        with db.transaction(db.make_session_factory(engine)) as session:
            count = facts.rebuild(session, now=Clock().now())
    finally:
        engine.dispose()
    print(f"facts written for {count} instances")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
