"""Time buckets and window covers (domain/windows.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain import windows
from opsloop.domain.windows import (
    DAY_MS,
    FINEST_MS,
    HOUR_MS,
    LEVELS,
    MINUTE_MS,
    WINDOWS,
    Segment,
    bucket_start,
    cover,
    window_bounds,
    window_end,
)

T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z, a day boundary
assert T0 % DAY_MS == 0


def buckets(segments: list[Segment]) -> list[tuple[str, int]]:
    """Every bucket (level, start) the segments stand for, in order."""
    return [(s.level, t) for s in segments for t in range(s.start, s.end, LEVELS[s.level])]


def assert_tiles(start: int, end: int, segments: list[Segment]) -> None:
    t = start
    for level, b in buckets(segments):
        size = LEVELS[level]
        assert b == t, "gap or overlap"
        assert b % size == 0, f"{level} bucket at {b} is not aligned"
        assert bucket_start(b, level) == b
        t = b + size
    assert t == end
    for seg in segments:
        assert seg.start < seg.end
        assert (seg.end - seg.start) % LEVELS[seg.level] == 0
    for a, b in itertools.pairwise(segments):
        assert a.end == b.start
        assert a.level != b.level, "adjacent runs of one level should be one segment"


def fewest_buckets(start: int, end: int) -> int:
    """Independent minimum: dynamic programming over every aligned tiling of [start, end)."""
    best = {end: 0}
    for t in range(end - FINEST_MS, start - 1, -FINEST_MS):
        best[t] = min(1 + best[t + size] for size in LEVELS.values() if t % size == 0 and t + size <= end)
    return best[start]


# --- cover ----------------------------------------------------------------------------------------------


def test_empty_window() -> None:
    assert cover(T0, T0) == []


def test_single_day_is_one_bucket() -> None:
    assert cover(T0, T0 + DAY_MS) == [Segment("1d", T0, T0 + DAY_MS)]


def test_ragged_edges() -> None:
    start = T0 + 23 * HOUR_MS + 50 * MINUTE_MS  # 23:50 on day 0
    end = T0 + 2 * DAY_MS + 1 * HOUR_MS + 10 * MINUTE_MS  # 01:10 on day 2
    segs = cover(start, end)
    assert [(s.level, s.count) for s in segs] == [("5m", 2), ("1d", 1), ("1h", 1), ("5m", 2)]
    assert_tiles(start, end, segs)


def test_one_hour_window_off_the_hour() -> None:
    start = T0 + 10 * MINUTE_MS
    segs = cover(start, start + HOUR_MS)
    assert [(s.level, s.count) for s in segs] == [("5m", 12)]


def test_worst_case_seven_day_window() -> None:
    end = T0 + 7 * DAY_MS + 5 * MINUTE_MS
    segs = cover(end - 7 * DAY_MS, end)
    assert_tiles(end - 7 * DAY_MS, end, segs)
    n = len(buckets(segs))
    assert n == 11 + 23 + 6 + 0 + 1  # 00:05..01:00, 01:00..24:00, six days, then 00:00..00:05
    assert n <= 80


@settings(max_examples=200, deadline=None)
@given(
    start_steps=st.integers(min_value=-(10 * DAY_MS) // FINEST_MS, max_value=(30 * DAY_MS) // FINEST_MS),
    length_steps=st.integers(min_value=0, max_value=(7 * DAY_MS) // FINEST_MS),
)
def test_cover_tiles_exactly_with_few_buckets(start_steps: int, length_steps: int) -> None:
    start = T0 + start_steps * FINEST_MS
    end = start + length_steps * FINEST_MS
    segs = cover(start, end)
    assert_tiles(start, end, segs)
    assert len(buckets(segs)) <= 74  # the module's promise for windows up to 7 days
    assert sum(s.count for s in segs) == len(buckets(segs))


@settings(max_examples=100, deadline=None)
@given(
    start_steps=st.integers(min_value=0, max_value=(3 * DAY_MS) // FINEST_MS),
    length_steps=st.integers(min_value=0, max_value=(2 * DAY_MS) // FINEST_MS),
)
def test_cover_uses_the_fewest_buckets(start_steps: int, length_steps: int) -> None:
    start = T0 + start_steps * FINEST_MS
    end = start + length_steps * FINEST_MS
    assert len(buckets(cover(start, end))) == fewest_buckets(start, end)


@settings(max_examples=100, deadline=None)
@given(schedule=st.integers(min_value=T0, max_value=T0 + 60 * DAY_MS), window=st.sampled_from(sorted(WINDOWS)))
def test_window_bounds_are_coverable(schedule: int, window: str) -> None:
    start, end = window_bounds(schedule, window)
    segs = cover(start, end)
    assert_tiles(start, end, segs)
    assert len(buckets(segs)) <= {"1h": 12, "24h": 12 + 23, "7d": 12 + 23 + 6}[window]


@pytest.mark.parametrize(
    ("start", "end"),
    [(T0 + 1, T0 + HOUR_MS), (T0, T0 + HOUR_MS + 1), (T0 + MINUTE_MS, T0 + HOUR_MS)],
)
def test_cover_rejects_unaligned_bounds(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="multiples"):
        cover(start, end)


def test_cover_rejects_reversed_bounds() -> None:
    with pytest.raises(ValueError, match="before its start"):
        cover(T0 + HOUR_MS, T0)


# --- buckets and window ends ----------------------------------------------------------------------------


def test_bucket_start() -> None:
    ts = T0 + 2 * DAY_MS + 13 * HOUR_MS + 37 * MINUTE_MS + 12_345
    assert bucket_start(ts, "5m") == T0 + 2 * DAY_MS + 13 * HOUR_MS + 35 * MINUTE_MS
    assert bucket_start(ts, "1h") == T0 + 2 * DAY_MS + 13 * HOUR_MS
    assert bucket_start(ts, "1d") == T0 + 2 * DAY_MS
    assert bucket_start(T0, "1d") == T0
    with pytest.raises(KeyError):
        bucket_start(T0, "1w")


def test_window_end_keeps_aligned_times() -> None:
    for t in (T0, T0 + 5 * MINUTE_MS, T0 + 17 * HOUR_MS + 55 * MINUTE_MS, 0):
        assert window_end(t) == t


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (T0 + 1, T0 + 5 * MINUTE_MS),
        (T0 + 4 * MINUTE_MS + 59_999, T0 + 5 * MINUTE_MS),
        (T0 + 5 * MINUTE_MS + 1, T0 + 10 * MINUTE_MS),
        (T0 + DAY_MS - 1, T0 + DAY_MS),
    ],
)
def test_window_end_rounds_unaligned_times_up(t: int, expected: int) -> None:
    assert window_end(t) == expected


@settings(max_examples=100, deadline=None)
@given(t=st.integers(min_value=0, max_value=2**45))
def test_window_end_is_the_next_grid_point(t: int) -> None:
    e = window_end(t)
    assert e % FINEST_MS == 0
    assert t <= e < t + FINEST_MS


@pytest.mark.parametrize(("window", "length"), [("1h", HOUR_MS), ("24h", DAY_MS), ("7d", 7 * DAY_MS)])
def test_window_bounds(window: str, length: int) -> None:
    assert window_bounds(T0 + 3 * DAY_MS, window) == (T0 + 3 * DAY_MS - length, T0 + 3 * DAY_MS)
    run = T0 + 3 * DAY_MS + 2 * MINUTE_MS  # a manual trigger between grid points
    assert window_bounds(run, window) == (T0 + 3 * DAY_MS + FINEST_MS - length, T0 + 3 * DAY_MS + FINEST_MS)


@pytest.mark.parametrize("window", ["", "1d", "7D", "30d", "24"])
def test_window_bounds_rejects_unknown_window(window: str) -> None:
    with pytest.raises(ValueError, match="window must be one of"):
        window_bounds(T0, window)


def test_levels_nest() -> None:
    sizes = sorted(LEVELS.values())
    assert sizes[0] == FINEST_MS
    for small, big in itertools.pairwise(sizes):
        assert big % small == 0


def test_a_newer_schedule_wins_but_a_time_beyond_the_clock_never_blocks() -> None:
    now = 10 * windows.HOUR_MS
    assert windows.keeps_newer(now, now - 1, now)  # the stored one is newer
    assert not windows.keeps_newer(now - 1, now, now) and not windows.keeps_newer(None, now, now)
    assert not windows.keeps_newer(now, now, now)  # the same schedule rewrites
    beyond = now + windows.MAX_SCHEDULE_SKEW_MS + 1
    assert not windows.keeps_newer(beyond, now, now)  # a bad clock's time is overwritten
    assert windows.keeps_newer(now + windows.MAX_SCHEDULE_SKEW_MS, now, now)  # within the skew it counts
    assert windows.trusted_marker(beyond, now) is None and windows.trusted_marker(now - 5, now) == now - 5
    assert windows.trusted_marker(None, now) is None


def test_cover_with_a_largest_level_goes_hour_by_hour() -> None:
    from opsloop.domain.windows import DAY_MS, HOUR_MS, Segment, cover

    start = 10 * DAY_MS - 10 * 60_000  # ten minutes before a day boundary
    segments = cover(start, start + DAY_MS + 10 * 60_000, largest="1h")
    assert segments == [Segment("5m", start, 10 * DAY_MS), Segment("1h", 10 * DAY_MS, 11 * DAY_MS)]
    assert [s.level for s in cover(start, start + DAY_MS + 10 * 60_000)] == ["5m", "1d"]
    assert sum(s.count for s in cover(0, 3 * HOUR_MS + 15 * 60_000, largest="5m")) == 39
    with pytest.raises(ValueError, match="largest"):
        cover(0, HOUR_MS, largest="1w")
