"""Time, injectable so tests can move it instead of sleeping, and one clock for every process.

Every expiry and lease (codes, sessions, flows, outbox leases, trusted browsers, rate-limit windows)
and every audit time is judged on ``Services.now()`` or the outbox worker's clock. With several
hosts, each host's own clock would judge differently: a worker 90 s ahead takes the leases of
the others, a web node 11 minutes ahead refuses codes another node has just issued. So on
PostgreSQL every process reads the *database's* time: ``DatabaseClock`` measures the offset
between this host's clock and the database's once at start and then every minute, and its
``now()`` is the host's clock plus that offset, without a query per call.

SQLite lives on one host, so every process already shares that host's clock: ``Clock`` is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("guichet.clock")

UTC = dt.UTC
SYNC_EVERY_SECONDS = 60.0  # a host clock drifts by well under a millisecond a minute; an NTP step is caught within this
WARN_OFFSET_SECONDS = 2.0  # a host further off than this from the database is worth telling the operator


class Clock:
    """The real clock, always timezone-aware UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def today(self) -> dt.date:
        return self.now().astimezone(PARIS).date()


class FrozenClock(Clock):
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += dt.timedelta(**delta)


class DatabaseClock(Clock):
    """The database's time: this host's clock plus the offset measured to the database.

    ``source`` reads the database's current time (``Database.server_time``). ``sync`` takes a few
    readings and keeps the one with the shortest round trip, taking the database's reading to have
    been made halfway through it (as NTP does): the error is at most half that round trip, well
    under a millisecond on a local network. Until the first successful ``sync`` the offset is 0.
    """

    def __init__(self, source: Callable[[], Awaitable[dt.datetime | None]], *, samples: int = 3) -> None:
        self.source = source
        self.samples = max(1, samples)
        self.offset = dt.timedelta(0)
        self.error = dt.timedelta(0)  # half the round trip of the reading kept: the offset's uncertainty
        self.synced = False

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC) + self.offset

    async def sync(self) -> bool:
        """Measure the offset again; False (the last offset kept) if the database cannot be read."""
        best: tuple[float, dt.timedelta] | None = None
        for _ in range(self.samples):
            sent_at = dt.datetime.now(UTC)
            start = time.perf_counter()
            remote = await self.source()
            round_trip = time.perf_counter() - start
            if remote is None:  # a database without a clock of its own (SQLite): the host's clock is it
                self.offset, self.error, self.synced = dt.timedelta(0), dt.timedelta(0), True
                return True
            offset = remote - (sent_at + dt.timedelta(seconds=round_trip / 2))
            if best is None or round_trip < best[0]:
                best = (round_trip, offset)
        assert best is not None
        round_trip, offset = best
        moved = abs((offset - self.offset).total_seconds())
        if abs(offset.total_seconds()) >= WARN_OFFSET_SECONDS and (not self.synced or moved >= 1.0):
            log.warning(
                "this host's clock is %.1f s %s the database's; guichet uses the database's time "
                "(check NTP on this host)",
                abs(offset.total_seconds()),
                "behind" if offset > dt.timedelta(0) else "ahead of",
            )
        self.offset = offset
        self.error = dt.timedelta(seconds=round_trip / 2)
        self.synced = True
        return True

    async def keep_synced(self, stop: asyncio.Event, every: float = SYNC_EVERY_SECONDS) -> None:
        """Sync every ``every`` seconds until ``stop`` is set (call ``sync`` once first, at start).

        A failed reading keeps the last offset, which stays right for a long while (a host clock
        drifts by milliseconds a day), and is tried again sooner.
        """
        wait = every
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
            if stop.is_set():
                return
            wait = every
            try:
                await self.sync()
            except Exception as exc:
                log.error("cannot read the database's time (%s); keeping the last offset", type(exc).__name__)
                wait = min(every, 5.0)


async def start_synced(clock: Clock) -> None:
    """A process's first reading of the database's time, before it judges anything (a no-op for other clocks)."""
    if isinstance(clock, DatabaseClock):
        try:
            await clock.sync()
        except Exception as exc:  # keep_synced tries again within seconds
            log.error(
                "cannot read the database's time at start (%s); using this host's clock meanwhile", type(exc).__name__
            )


try:
    from zoneinfo import ZoneInfo

    PARIS: dt.tzinfo = ZoneInfo("Europe/Paris")
except Exception:  # tzdata missing: French dates still read right within an hour
    PARIS = dt.timezone(dt.timedelta(hours=1))
