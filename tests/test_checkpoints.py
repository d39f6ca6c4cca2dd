"""SQLite WAL checkpoints in a background thread (engine.checkpoints)."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time

from sqlalchemy import text

from engine import checkpoints
from engine.db import make_engine


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-checkpoints" and t.is_alive()]


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _engine(tmp_path, interval: float = 0.05):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    return engine, checkpoints.install(engine, str(tmp_path / "c.db"), interval=interval)


def _write(engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (v TEXT)"))
        conn.execute(text("INSERT INTO t VALUES (:v)"), [{"v": "x" * 3000} for _ in range(rows)])


def test_commits_leave_the_checkpoints_to_the_thread(tmp_path):
    engine, background = _engine(tmp_path)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == checkpoints.SAFETY_NET_PAGES
        _write(engine, 1500)  # about 1,500 pages: SQLite's default would have checkpointed in the commit
        assert _wait_for(lambda: background.checkpoints >= 1)
        probe = sqlite3.connect(tmp_path / "c.db")
        busy, frames, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, copied) == (0, frames) and frames > 1000  # the thread had copied every frame
        assert probe.execute("SELECT count(*) FROM t").fetchone() == (1500,)
        probe.close()
    finally:
        background.stop()
        engine.dispose()


def test_without_commits_the_thread_does_not_checkpoint(tmp_path):
    engine, background = _engine(tmp_path)
    try:
        _write(engine, 10)
        assert _wait_for(lambda: background.checkpoints == 1)
        time.sleep(0.3)
        assert background.checkpoints == 1
    finally:
        background.stop()
        engine.dispose()


def test_the_thread_starts_in_each_process_and_ends_with_its_engine(tmp_path):
    before = set(_threads())

    def started() -> set[threading.Thread]:
        return set(_threads()) - before

    engine, background = _engine(tmp_path)
    assert not started()  # nothing runs before the first commit
    _write(engine, 1)
    assert len(started()) == 1
    _write(engine, 1)
    assert len(started()) == 1  # one per process
    background._pid = -1  # as a forked worker sees it: the thread was its parent's
    _write(engine, 1)
    assert len(started()) == 2
    engine.dispose()
    del engine, background
    gc.collect()
    assert _wait_for(lambda: not started())


def test_only_a_sqlite_file_is_checkpointed_in_the_background(tmp_path):
    on_file = make_engine(f"sqlite:///{tmp_path / 'f.db'}", background_checkpoints=True)
    in_memory = make_engine("sqlite://", background_checkpoints=True)
    plain = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    assert checkpoints.installed(on_file) is not None
    assert checkpoints.installed(in_memory) is None and checkpoints.installed(plain) is None
    checkpoints.installed(on_file).stop()
    for engine in (on_file, in_memory, plain):
        engine.dispose()
