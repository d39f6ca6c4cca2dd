"""SQLite: WAL checkpoints in a thread of their own, not in the request that happens to commit.

In WAL mode SQLite appends every commit to the write-ahead log, and by default the commit that takes
the log past 1,000 pages copies the log back into the database file and syncs it (a checkpoint). A
task completion appends about 24 pages, so every 40th or so form post did that work for all the
others: 15 to 60 ms instead of under 1 ms. A web process therefore checkpoints in a background
thread once a second after commits (a PASSIVE checkpoint: writers and readers go on meanwhile; the
sqlite3 module releases the GIL while it runs). Its connections checkpoint only as a safety net, once
the log reaches SAFETY_NET_PAGES (should the thread have stopped or fallen behind).

The thread starts with the first commit of each process (gunicorn forks its workers after the app is
built, and threads do not survive a fork) and ends when its engine is gone.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

#: the committing connections' own checkpoint threshold (SQLite's default is 1,000 pages of 4 KB)
SAFETY_NET_PAGES = 10_000


class BackgroundCheckpoints:
    """Checkpoints the WAL of the SQLite database at `path` every `interval` seconds after commits."""

    def __init__(self, path: str, *, interval: float = 1.0):
        self.path, self.interval = path, interval
        self.commits = 0  # only ever counted up, by the committing threads
        self.checkpoints = 0  # done by the thread, with frames to copy
        self._seen = 0  # commits when the thread last looked
        self._pid: int | None = None
        self._stop = threading.Event()

    def committed(self) -> None:
        self.commits += 1
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._stop = threading.Event()
            threading.Thread(target=_run, args=(weakref.ref(self), self._stop), name="sqlite-checkpoints",
                             daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        if self.commits == self._seen:
            return
        self._seen = self.commits
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames > 0:
            self.checkpoints += 1


def _run(ref: weakref.ref[BackgroundCheckpoints], stop: threading.Event) -> None:
    owner = ref()
    if owner is None:
        return
    interval, conn = owner.interval, sqlite3.connect(owner.path, timeout=30)
    del owner  # held only while it works, so that it can go with its engine
    try:
        while not stop.wait(interval):
            owner = ref()
            if owner is None:
                return
            owner.checkpoint(conn)
            del owner
    except sqlite3.Error:
        log.exception("background checkpoints stopped; commits checkpoint from %d pages on", SAFETY_NET_PAGES)
    finally:
        conn.close()


_INSTALLED: weakref.WeakKeyDictionary[Engine, BackgroundCheckpoints] = weakref.WeakKeyDictionary()


def install(engine: Engine, path: str, *, interval: float = 1.0) -> BackgroundCheckpoints:
    """Checkpoint the WAL of `engine` (SQLite on the file at `path`) in the background."""
    checkpoints = _INSTALLED[engine] = BackgroundCheckpoints(path, interval=interval)

    @event.listens_for(engine, "connect")
    def _safety_net_only(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")

    @event.listens_for(engine, "commit")
    def _committed(_conn):
        checkpoints.committed()

    weakref.finalize(engine, checkpoints.stop)
    return checkpoints


def installed(engine: Engine) -> BackgroundCheckpoints | None:
    return _INSTALLED.get(engine)
