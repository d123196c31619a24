"""The record of which buckets hold data (domain/presence) and what a refresh gets from it."""

from __future__ import annotations

from opsloop.domain import presence, windows
from opsloop.services import bucket_index

H, D, F = windows.HOUR_MS, windows.DAY_MS, windows.LEVELS["5m"]
T0 = 1_780_000_000_000 - 1_780_000_000_000 % D  # a midnight


def delta(key: str, level: str, start: int) -> tuple[dict[str, object], None]:
    return {"component": key, "level": level, "start": start}, None


def test_a_commit_records_the_five_minute_starts_of_its_components_per_generation() -> None:
    deltas = {str(i): d for i, d in enumerate([
        delta("svc:a", "5m", T0), delta("svc:a", "1h", T0), delta("svc:a#g3", "5m", T0 + F),
        delta("policy:router", "5m", T0), delta("arm:r@1.0.0:champion", "5m", T0), delta("svc:b", "5m", T0 - D)])}
    assert presence.touched(deltas, {"svc:a", "svc:b"}) == {
        "svc:a": {"g0": [T0], "g3": [T0 + F]}, "svc:b": {"g0": [T0 - D]}}
    # from a floor on, and a component whose starts all lie before it is still named (its record's floor)
    assert presence.touched(deltas, {"svc:a", "svc:b"}, floor=T0) == {
        "svc:a": {"g0": [T0], "g3": [T0 + F]}, "svc:b": {"g0": []}}


def test_hours_and_days_holding_data_follow_from_the_five_minute_starts() -> None:
    p = presence.Presence.of([T0 + H + 2 * F, T0 + 5, T0 + D + F, "x", True], valid_from=T0)
    assert p.fives == (T0 + 5, T0 + H + 2 * F, T0 + D + F)  # what is not an integer is ignored
    assert p.within("1h", T0, T0 + D) == [T0, T0 + H] and p.within("1d", T0, T0 + 2 * D) == [T0, T0 + D]
    assert p.holds(T0 + H + 2 * F + 10) and not p.holds(T0 + 3 * H) and p.holds(T0 - D)  # before: not known


def test_a_window_needs_the_buckets_of_its_cover_and_chart_that_hold_data() -> None:
    end = T0 + 2 * D + 3 * H + 2 * F
    p = presence.Presence.of([end - F, end - H - F, end - 2 * D + 7 * F, end - 30 * D], valid_from=0)
    plan = windows.window_plan(*windows.window_bounds(end, "24h"), "1h")
    cover = presence.held(p, plan.cover)
    assert cover == [(seg.level, t) for seg in plan.cover for t in range(seg.start, seg.end, windows.LEVELS[seg.level])
                     if t in set(p.within(seg.level, seg.start, seg.end))]
    assert ("5m", end - F) in cover and ("5m", end - 30 * D) not in cover
    assert presence.held(p, [plan.series]) == [("1h", windows.bucket_start(end - H - F, "1h"))]
    assert plan.in_progress == windows.bucket_start(end, "1h") and presence.held(p, plan.tail) == [("5m", end - F)]
    # a window's oldest 5-minute bucket leaves it, or one ahead of the end enters
    assert presence.next_change(p.first, end, None) == end - H - F + F + D  # the 24h window's oldest leaves
    assert presence.next_change(p.first, end, end - F) == end + H  # the 1h window's first point leaves sooner
    ahead = presence.Presence.of([end + 3 * F], valid_from=0)
    assert presence.next_change(ahead.first, end, None) == end + 4 * F


def test_a_record_is_trusted_from_when_it_is_complete_and_not_past_a_bucket_it_misses() -> None:
    doc = {"p": {"g2": [T0, T0 + F], "g1": [T0]}, "pi": {"g2": T0 - D}, "lastTs": T0 + F + 10}
    record = presence.trusted({}, doc, 2)
    assert record is not None and record.valid_from == T0 - D and record.generations == (1, 2)
    assert presence.trusted({}, doc, 1) is None  # no flag, no build, not a new deployment
    assert presence.trusted({"built": {"g1": T0 - 2 * D}}, doc, 1) is None  # its newest bucket is not listed
    assert presence.trusted({"built": {"g1": T0 - 2 * D}}, {**doc, "lastTs": T0 + 1}, 1) is not None
    assert presence.trusted({"complete": True}, {}, 3) == presence.Presence((), 0)  # nothing scored yet
    assert presence.trusted({"complete": True}, {**doc, "lastTs": T0 + 2 * F}, 2) is None


def test_old_entries_are_dropped_once_a_day_of_them_gathered_and_dead_generations_always() -> None:
    end = T0 + 10 * D
    floor = presence.backfill_floor(end)
    few = presence.Presence.of([floor - F, end - F], valid_from=0, generations=(2,))
    assert bucket_index.pruning(few, end, read=2) is None
    many = presence.Presence.of([floor - (i + 1) * F for i in range(bucket_index.PRUNE_AT)] + [end - F], 0, (1, 2))
    drop = bucket_index.pruning(many, end, read=2)
    assert drop is not None and len(drop.starts) == bucket_index.PRUNE_AT and drop.valid_from == floor
    assert drop.dead == (1,)
    assert bucket_index.pruning(few, end, read=3) == presence.Pruning([], 0, (2,))
