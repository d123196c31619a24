"""Time buckets and the rolling windows built from them.

Every scored observation is added to three aligned buckets of its component: the 5-minute, the hour
and the day that contain its ``ts``. A window ``[end - length, end)`` is covered exactly by the fewest
aligned buckets (5-minute pieces at the ragged edges, hours next, whole days in the middle), so a
7-day window reads at most ~74 bucket documents per component however many observations it holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .errors import InvalidArgument

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ms(value: dt.datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (the unit of every stored time)."""
    return int((value - EPOCH).total_seconds() * 1000)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# Bucket levels, finest first. The finest level is the scoring schedule's period.
LEVELS: dict[str, int] = {"5m": 5 * MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}
FINEST_MS = min(LEVELS.values())

WINDOWS: dict[str, int] = {"1h": HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS}


@dataclass(frozen=True, order=True)
class Segment:
    """A run of consecutive buckets of one level: starts ``start, start+size, ..`` below ``end``."""

    level: str
    start: int
    end: int

    @property
    def count(self) -> int:
        return (self.end - self.start) // LEVELS[self.level]


def bucket_start(ts_ms: int, level: str) -> int:
    size = LEVELS[level]
    return ts_ms - ts_ms % size


def window_end(schedule_ms: int) -> int:
    """End (exclusive) of every window for a run scheduled at ``schedule_ms``.

    Scheduler times fall on the 5-minute grid and are used as they are; a manual trigger between grid
    points is rounded up so that data up to the trigger is included.
    """
    rem = schedule_ms % FINEST_MS
    return schedule_ms if rem == 0 else schedule_ms - rem + FINEST_MS


def cover(start: int, end: int, largest: str | None = None) -> list[Segment]:
    """The fewest aligned buckets that tile ``[start, end)`` exactly, grouped into segments; with
    ``largest``, no bucket of a level coarser than it (``"1h"``: an hour-by-hour series)."""
    if start % FINEST_MS or end % FINEST_MS:
        raise ValueError(f"window bounds must be multiples of {FINEST_MS} ms, got {start!r}..{end!r}")
    if end < start:
        raise ValueError(f"window end {end!r} is before its start {start!r}")
    if largest is not None and largest not in LEVELS:
        raise ValueError(f"largest must be one of {sorted(LEVELS)}, got {largest!r}")
    cap = LEVELS[largest] if largest is not None else max(LEVELS.values())
    by_size = sorted(((n, s) for n, s in LEVELS.items() if s <= cap), key=lambda kv: kv[1], reverse=True)
    segments: list[Segment] = []
    t = start
    while t < end:
        for name, size in by_size:
            if t % size == 0 and t + size <= end:
                if segments and segments[-1].level == name and segments[-1].end == t:
                    last = segments[-1]
                    segments[-1] = Segment(name, last.start, t + size)
                else:
                    segments.append(Segment(name, t, t + size))
                t += size
                break
    return segments


@dataclass(frozen=True)
class WindowPlan:
    """The buckets one window is read from: its ``cover``; its chart's whole buckets of one level
    (``series``); and the finer buckets covering the chart's last bucket, in progress, up to the window's
    end (``tail``: that bucket itself holds later data too, which a replay must not see)."""

    cover: list[Segment]
    series: Segment
    in_progress: int
    tail: list[Segment]


def window_plan(start: int, stop: int, series_level: str) -> WindowPlan:
    in_progress = bucket_start(stop, series_level)
    return WindowPlan(cover(start, stop), Segment(series_level, bucket_start(start, series_level), in_progress),
                      in_progress, cover(in_progress, stop) if in_progress < stop else [])


def window_bounds(schedule_ms: int, window: str) -> tuple[int, int]:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {sorted(WINDOWS)}, got {window!r}")
    end = window_end(schedule_ms)
    return end - WINDOWS[window], end


# A scheduled run's schedule time may lead the clock by this much (clock skew between Cloud Scheduler and
# the function); beyond it the time is refused, and a stored stats/cards time beyond it is ignored.
MAX_SCHEDULE_SKEW_MS = 10 * MINUTE_MS
EARLIEST_SCHEDULE_MS = 946_684_800_000  # 2000-01-01: anything earlier is a unit mistake (seconds for ms)


def check_schedule_time(schedule_ms: int, now_ms: int) -> None:
    """Refuse a schedule time from the future (beyond the skew) or from before 2000."""
    if schedule_ms > now_ms + MAX_SCHEDULE_SKEW_MS:
        ahead = (schedule_ms - now_ms) / MINUTE_MS
        raise InvalidArgument(
            f"schedule time {schedule_ms} is {ahead:,.0f} minutes ahead of the clock; at most "
            f"{MAX_SCHEDULE_SKEW_MS // MINUTE_MS} minutes are allowed", {"field": "scheduleTime"})
    if schedule_ms < EARLIEST_SCHEDULE_MS:
        raise InvalidArgument(f"schedule time {schedule_ms} is before 2000-01-01", {"field": "scheduleTime"})


def keeps_newer(stored_ms: int | None, schedule_ms: int, now_ms: int) -> bool:
    """Whether a stats (or cards) document stored for ``stored_ms`` outranks a write for ``schedule_ms``.

    A newer schedule wins, but a stored time beyond the clock (plus the allowed skew) came from a bad
    clock or a mistyped ``--at``: it never blocks the present.
    """
    return stored_ms is not None and schedule_ms < stored_ms <= now_ms + MAX_SCHEDULE_SKEW_MS


def trusted_marker(marker_ms: int | None, now_ms: int) -> int | None:
    """A stored schedule marker, or None when it lies beyond the clock (it must not hold work back)."""
    return None if marker_ms is None or marker_ms > now_ms + MAX_SCHEDULE_SKEW_MS else marker_ms
