"""Time, injectable so tests can move it instead of sleeping."""
from __future__ import annotations

import datetime as dt


class Clock:
    """The real clock, always timezone-aware UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def today(self) -> dt.date:
        return self.now().astimezone(PARIS).date()


class FrozenClock(Clock):
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(dt.timezone.utc)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += dt.timedelta(**delta)


try:
    from zoneinfo import ZoneInfo

    PARIS: dt.tzinfo = ZoneInfo("Europe/Paris")
except Exception:  # tzdata missing: French dates still read right within an hour
    PARIS = dt.timezone(dt.timedelta(hours=1))
