"""Calendar periods of one year in local time (Europe/Berlin): months, quarters, the year.

Keys: "m01".."m12", "q1".."q4", "y". Only periods that have begun by `now` exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Europe/Berlin")
GRANULARITIES = ("month", "quarter", "year")


@dataclass(frozen=True)
class Periods:
    year: int
    bounds: tuple[datetime, ...]  # 13 UTC instants: the start of each month and of the next year
    begun: int  # how many months have begun by now (0..12)

    def months(self) -> list[str]:
        return [f"m{k:02d}" for k in range(1, self.begun + 1)]

    def quarters(self) -> list[str]:
        return [f"q{q}" for q in range(1, 5) if 3 * (q - 1) + 1 <= self.begun]

    def months_of(self, quarter: str) -> list[str]:
        q = int(quarter[1:])
        return [f"m{k:02d}" for k in range(3 * q - 2, 3 * q + 1) if k <= self.begun]

    def keys(self, granularity: str) -> list[str]:
        if not self.begun:
            return []
        return {"month": self.months(), "quarter": self.quarters(), "year": ["y"]}[granularity]

    def all_keys(self) -> list[str]:
        return [*self.months(), *self.quarters(), *(["y"] if self.begun else [])]

    def last_month(self, key: str) -> int:
        """The month whose end a stock at the end of `key` is counted at."""
        if key.startswith("m"):
            return int(key[1:])
        if key.startswith("q"):
            return min(3 * int(key[1:]), self.begun)
        return self.begun

    def span(self, key: str) -> tuple[datetime, datetime]:
        """(start, end) in UTC."""
        if key.startswith("m"):
            k = int(key[1:])
            return self.bounds[k - 1], self.bounds[k]
        if key.startswith("q"):
            q = int(key[1:])
            return self.bounds[3 * q - 3], self.bounds[3 * q]
        return self.bounds[0], self.bounds[12]

    @property
    def start(self) -> datetime:
        return self.bounds[0]

    @property
    def end(self) -> datetime:
        return self.bounds[12]


def periods(year: int, now: datetime) -> Periods:
    bounds = tuple(datetime(year + (m // 12), m % 12 + 1, 1, tzinfo=TZ).astimezone(UTC) for m in range(13))
    begun = sum(1 for b in bounds[:12] if b <= now)
    return Periods(year, bounds, begun)


def local_year(now: datetime) -> int:
    return now.astimezone(TZ).year


def month_number(at: datetime | None) -> int | None:
    """YYYYMM of an instant in German time (the facts table's month columns)."""
    if at is None:
        return None
    local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(TZ)
    return local.year * 100 + local.month
