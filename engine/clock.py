"""Time, in one place, so that tests and `--now` can move it.

SpiffWorkflow's timer events call `datetime.now(timezone.utc)` directly. We replace the `datetime`
name in its timer module with a subclass whose `now()` asks the clock of the current context, so a
worker started with `--now 2026-12-03T09:00` fires exactly what would be due then.
"""

from __future__ import annotations

import contextlib
import contextvars
from datetime import UTC, datetime

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer

_override: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("fallwerk_now", default=None)


class Clock:
    """The real clock. Subclasses (or `FixedClock`) move time for tests."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock(Clock):
    def __init__(self, at: datetime):
        self.at = at if at.tzinfo else at.replace(tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta) -> None:
        from datetime import timedelta

        self.at = self.at + timedelta(**delta)


class _ClockedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        at = _override.get()
        if at is None:
            return datetime.now(tz)
        return at.astimezone(tz) if tz else at.replace(tzinfo=None)


_spiff_timer.datetime = _ClockedDatetime


@contextlib.contextmanager
def engine_time(clock: Clock):
    """Run SpiffWorkflow code as if it were `clock.now()`."""
    token = _override.set(clock.now())
    try:
        yield
    finally:
        _override.reset(token)


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant; a naive one is read as UTC."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)
