"""Reward generations (``domain/generations``): when a changed reward config starts a backfill, and what
each reader reads meanwhile."""

from __future__ import annotations

import datetime as dt

from opsloop.domain import config
from opsloop.domain import generations as g
from opsloop.domain.ingest import Cursor
from opsloop.domain.reward import RewardRules

AT = Cursor(dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "obs-9")
QUALITY = {"version": "2.0.0", "rules": [{"match": "router:*", "version": "q-1", "terms": [
    {"name": "quality", "source": "metric:judge", "weight": 0.6, "direction": "higher",
     "range": {"min": 0, "max": 10}, "missing": "skip"},
    {"name": "near", "source": "durationMs", "weight": 0.2, "direction": "lower", "target": {"value": 0,
                                                                                            "tolerance": 900}},
    {"name": "thumbs", "source": "metric:thumbs", "weight": 0.2, "direction": "higher", "bound": 1,
     "default": 0.5}]}]}


def rules(doc: dict[str, object] | None = None) -> RewardRules:
    parsed: RewardRules = config.parse("reward_config", doc or {})
    return parsed


def test_rules_round_trip_through_their_document() -> None:
    for doc in ({}, QUALITY, {"weights": {"latency": 0.3}, "bounds": {"maxLatencyMs": 900}, "version": "3"}):
        parsed = rules(doc)
        assert rules(parsed.to_doc()) == parsed


def test_a_fresh_store_starts_at_generation_one_with_nothing_to_backfill() -> None:
    state = g.adopt(None, rules(), Cursor(), 1)
    assert state is not None and state.read == state.write == 1 and not state.backfilling
    assert state.read_key("router:gpt-5") == "router:gpt-5#g1" and state.live == (1,)


def test_a_store_that_scored_before_generations_reads_its_old_buckets_until_the_backfill() -> None:
    state = g.adopt(None, rules(), AT, 1)
    assert state is not None and (state.read, state.write, state.boundary) == (0, 1, AT)
    assert state.read_key("c") == "c" and state.live == (0, 1)  # the unversioned buckets, and generation 1


def test_a_changed_config_starts_the_next_generation_and_the_same_one_changes_nothing() -> None:
    first = g.adopt(None, rules(), Cursor(), 1)
    assert first is not None and g.adopt(first, rules(), AT, 2) is None
    changed = g.adopt(first, rules(QUALITY), AT, 3)
    assert changed is not None and (changed.read, changed.write, changed.boundary) == (1, 2, AT)
    assert changed.config("router:x").version == "1.0.0"  # readers: the old formula until the backfill ends
    assert changed.config("router:x", 2).version == "q-1" and changed.live == (1, 2)
    again = g.Generations.from_doc(changed.to_doc(), rules)
    assert again == changed


def test_changing_again_abandons_the_backfill_and_changing_back_cancels_it() -> None:
    first = g.adopt(None, rules(), Cursor(), 1)
    assert first is not None
    second = g.adopt(first, rules(QUALITY), AT, 2)
    assert second is not None
    third = g.adopt(second, rules({"version": "9"}), AT, 3)
    assert third is not None and (third.read, third.write) == (1, 3) and set(third.rules) == {1, 3}
    back = g.adopt(second, rules(), AT, 4)
    assert back is not None and (back.read, back.write) == (1, 1) and not back.backfilling
    # generation 2's abandoned buckets and reward scores exist: a later change starts 3, not 2 again
    stored = g.Generations.from_doc(back.to_doc(), rules)
    assert stored.highest == 2
    later = g.adopt(stored, rules(QUALITY), AT, 5)
    assert later is not None and (later.read, later.write) == (1, 3)
    done = g.Generations.from_doc(later.switched(6).to_doc(), rules)
    assert (done.read, done.write) == (3, 3) and g.adopt(done, rules(), AT, 7).write == 4  # type: ignore[union-attr]


def test_readers_switch_at_once_after_the_backfill_caught_up() -> None:
    first = g.adopt(None, rules(), Cursor(), 1)
    assert first is not None
    changed = g.adopt(first, rules(QUALITY), AT, 2)
    assert changed is not None
    half = changed.advanced(Cursor(AT.received_at, "obs-3"), 40, done=False)
    assert (half.read, half.scored, half.position, half.caught_up) == (1, 40, Cursor(AT.received_at, "obs-3"), False)
    caught_up = half.advanced(AT, 10, done=True)
    assert (caught_up.read, caught_up.write, caught_up.scored, caught_up.caught_up) == (1, 2, 50, True)
    assert g.Generations.from_doc(caught_up.to_doc(), rules) == caught_up  # readers wait for the fold
    done = caught_up.switched(now_ms=6)
    assert (done.read, done.write, done.scored, done.finished_at, done.backfilling) == (2, 2, 50, 6, False)
    assert set(done.rules) == {2} and done.config("router:x").version == "q-1"


def test_split_deltas_keeps_every_entry_in_parts_that_fit() -> None:
    from opsloop.domain.stats import Summary
    from opsloop.services import folding

    deltas = {f"c~5m~{i}": ({"component": "c", "level": "5m", "start": i},
                             Summary.of(reward=0.5, success=True, cost_usd=0.01, duration_ms=100.0 + i))
              for i in range(1500)}
    parts = folding.split_deltas(deltas)
    assert len(parts) >= 3 and all(folding.delta_fits(p) for p in parts)
    assert [k for p in parts for k in p] == list(deltas)
    assert folding.split_deltas({}) == []


def test_a_stored_formula_that_no_longer_parses_is_read_as_the_default_not_a_crash() -> None:
    from opsloop.services import generations

    state = {"read": 3, "write": 3, "rules": {"3": {"weights": {"latency": 5}}}}  # weight out of range
    gens = generations.parse(state)
    assert gens.read == 3 and gens.read_rules == RewardRules() and gens.read_key("c") == "c#g3"
