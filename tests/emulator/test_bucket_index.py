"""The stats refresh gets a component's buckets by id from its record of the buckets holding data
(``domain/presence``, ``services/bucket_index``): the same figures as the queries, without a query; a
store bucketed by a version before the record builds it once, and old entries are dropped."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from opsloop.domain import presence, windows
from opsloop.services import bucket_index, generations, scoring
from opsloop.store import paths
from opsloop.store.buckets import FirestoreBucketRepo
from opsloop.store.firestore_store import FirestoreStore
from tests.emulator.test_quiet_components import at, last_mark, obs
from tests.emulator.test_scoring import ingest

pytestmark = pytest.mark.emulator

DAY = windows.DAY_MS


def now_ms() -> int:
    return windows.ms(dt.datetime.now(dt.UTC))


def spread(n: int, seed: int, since: int, until: int, components: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [obs(f"svc:c{i % components}", rng.randrange(since, until), ok=rng.random() < 0.8) for i in range(n)]


def figures(ws: scoring.WindowSummaries) -> tuple[Any, ...]:
    totals = {c: {w: s.to_doc() for w, s in per.items()} for c, per in ws.totals.items()}
    series = {c: {w: [(t, s.to_doc()) for t, s in pts] for w, pts in per.items()} for c, per in ws.series.items()}
    return totals, series, ws.due


def bucket_queries(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    real = FirestoreBucketRepo._range

    def counted(self: FirestoreBucketRepo, *args: Any) -> Any:
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(FirestoreBucketRepo, "_range", counted)
    return calls


def by_queries(store: FirestoreStore, schedule_ms: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """The window summaries as the queries find them (every record taken as incomplete)."""
    with monkeypatch.context() as m:
        m.setattr(FirestoreBucketRepo, "presence", lambda self, keys: {})
        return figures(scoring.window_summaries(store, schedule_ms, generations.current(store)))


def as_before_the_record(store: FirestoreStore) -> None:
    """What a version before the record leaves: buckets, and components without a record or an index doc."""
    from google.cloud import firestore

    for snap in store.db.collection(paths.COMPONENTS).stream():
        snap.reference.update({"p": firestore.DELETE_FIELD, "pi": firestore.DELETE_FIELD})
    store.db.collection(paths.RUNS).document(paths.BUCKET_INDEX_DOC).delete()


def test_stats_from_the_record_equal_the_queries_and_need_none(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = last_mark()  # an hour mark in the past: data after it is "ahead" of the windows
    ingest(seeded, spread(400, 1, base - 8 * DAY, now_ms() - 1000))
    first = scoring.score_observations(seeded, at(base))
    index = seeded.runs.get(paths.BUCKET_INDEX_DOC) or {}
    assert index.get("complete") is True  # nothing was bucketed before: complete from the start
    for schedule in (base, base + 7 * 60_000, base - 3 * DAY + 35 * 60_000):
        queries = bucket_queries(monkeypatch)
        fast = figures(scoring.window_summaries(seeded, schedule, generations.current(seeded)))
        assert queries == []
        monkeypatch.undo()
        assert fast == by_queries(seeded, schedule, monkeypatch)
        assert sum(fast[0][c]["7d"]["n"] for c in fast[0]) > 0
        assert fast[2] and all(d is not None and d > windows.window_end(schedule) for d in fast[2].values())
    assert first.stats == scoring.stats_docs(scoring.window_summaries(seeded, base, generations.current(seeded)),
                                             base, generations.current(seeded))


def test_a_store_bucketed_before_the_record_builds_it_once_old_versions_are_gone(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = last_mark()
    ingest(seeded, spread(200, 2, base - 6 * DAY, base - 1000))
    scoring.score_observations(seeded, at(base))
    as_before_the_record(seeded)
    ingest(seeded, spread(60, 3, base, base + 5 * 60_000, components=3))  # new data for 3 of the 5

    queries = bucket_queries(monkeypatch)
    upgraded = scoring.score_observations(seeded, at(base + 5 * 60_000))  # the new version's first run
    index = seeded.runs.get(paths.BUCKET_INDEX_DOC) or {}
    assert index.get("complete") is False and index.get("built") == {} and upgraded.indexed == 0
    assert queries  # the records are not whole yet (the 2 quiet ones have none): by queries, as before
    monkeypatch.undo()
    assert figures(scoring.window_summaries(seeded, base + 5 * 60_000, generations.current(seeded))) == \
        by_queries(seeded, base + 5 * 60_000, monkeypatch)

    later = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=bucket_index.INDEX_AFTER_MS + 60_000)
    built = scoring.score_observations(seeded, at(base + 10 * 60_000), now=later)
    assert built.indexed == 5
    index = seeded.runs.get(paths.BUCKET_INDEX_DOC) or {}
    assert index["built"] == {"g1": presence.needed_from(base + 10 * 60_000) - DAY}
    assert scoring.score_observations(seeded, at(base + 10 * 60_000), now=later).indexed == 0  # once

    queries = bucket_queries(monkeypatch)
    fast = figures(scoring.window_summaries(seeded, base + 10 * 60_000, generations.current(seeded)))
    assert queries == []
    monkeypatch.undo()
    assert fast == by_queries(seeded, base + 10 * 60_000, monkeypatch)
    assert sum(fast[0][c]["7d"]["n"] for c in fast[0]) == 260


def test_a_build_out_of_budget_goes_on_in_the_next_run(seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch) -> None:
    base = last_mark()
    ingest(seeded, spread(100, 4, base - 2 * DAY, base - 1000))
    scoring.score_observations(seeded, at(base))
    as_before_the_record(seeded)
    index = seeded.buckets.index_state(now_ms() - bucket_index.INDEX_AFTER_MS - 60_000)
    gens = generations.current(seeded)
    left = iter([True, True, True, False])  # the budget ends after two components
    assert bucket_index.build(seeded, index, gens, base, now_ms(), lambda: next(left, False)) == 2
    assert (seeded.runs.get(paths.BUCKET_INDEX_DOC) or {}).get("built") == {}
    assert bucket_index.build(seeded, index, gens, base, now_ms(), lambda: True) == 3
    assert set((seeded.runs.get(paths.BUCKET_INDEX_DOC) or {})["built"]) == {"g1"}
    fast = figures(scoring.window_summaries(seeded, base, gens))
    assert fast == by_queries(seeded, base, monkeypatch)


def test_entries_no_window_needs_are_dropped(seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch) -> None:
    base = last_mark()
    old = presence.needed_from(base) - DAY
    ingest(seeded, spread(40, 5, old - 2 * DAY, old, components=1))  # older than any window needs
    ingest(seeded, spread(40, 6, base - DAY, base, components=1))
    monkeypatch.setattr(bucket_index, "PRUNE_AT", 1)
    scoring.score_observations(seeded, at(base))
    doc = seeded.db.collection(paths.COMPONENTS).document("svc:c0").get().to_dict() or {}
    assert doc["pi"] == {"g1": old} and min(doc["p"]["g1"]) >= old
    queries = bucket_queries(monkeypatch)
    fast = figures(scoring.window_summaries(seeded, base, generations.current(seeded)))
    assert queries == [] and fast[0]["svc:c0"]["24h"]["n"] == 40
    monkeypatch.undo()
    assert fast == by_queries(seeded, base, monkeypatch)
    # a replay of a schedule time the record no longer covers is answered by queries
    queries = bucket_queries(monkeypatch)
    scoring.window_summaries(seeded, base - 3 * DAY, generations.current(seeded))
    assert queries


def test_a_backfilled_generation_has_its_record(seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch) -> None:
    base = last_mark()
    items = spread(120, 7, base - 3 * DAY, base - 1000, components=3)
    items += spread(12, 10, base - 11 * DAY, base - 10 * DAY, components=3)  # before the backfill's floor
    ingest(seeded, [{**it, "policyVersion": "router-core@1.0.0"} if i % 2 else it for i, it in enumerate(items)])
    scoring.score_observations(seeded, at(base))
    before = seeded.db.collection(paths.COMPONENTS).document("svc:c0").get().to_dict() or {}
    seeded.configs.set("reward_config", {"rules": [{"match": "*", "version": "v-2", "terms": [
        {"name": "latency", "source": "durationMs", "weight": 1.0, "direction": "lower", "bound": 1000}]}]},
        merge=False)
    run = scoring.score_observations(seeded, at(base))
    assert run.backfill == 132 and run.generation == 2
    doc = seeded.db.collection(paths.COMPONENTS).document("svc:c0").get().to_dict() or {}
    # the backfill recorded the same buckets under g2; g1's record, no longer read, was dropped
    assert set(before["p"]) == {"g1"} and set(doc["p"]) == {"g2"} and "g1" not in doc["pi"]
    floor = doc["pi"]["g2"]  # from 8 days back: older buckets no refresh reads
    assert now_ms() - 9 * DAY <= floor <= now_ms() - 7 * DAY
    assert sorted(doc["p"]["g2"]) == sorted(s for s in before["p"]["g1"] if s >= floor)
    assert any(s < floor for s in before["p"]["g1"])
    # a policy's buckets (policy:<id>) are not a component's: no record
    assert not seeded.db.collection(paths.COMPONENTS).document("policy:router-core").get().exists
    queries = bucket_queries(monkeypatch)
    fast = figures(scoring.window_summaries(seeded, base, generations.current(seeded)))
    assert queries == []
    monkeypatch.undo()
    assert fast == by_queries(seeded, base, monkeypatch)


def test_a_writer_that_does_not_record_is_caught_at_its_newest_bucket(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older CLI or instance scoring after the record is trusted: its newest bucket is missing from the
    record while ``lastTs`` points at it, so that component is read by queries."""
    from opsloop.store import observations as observations_store

    base = last_mark()
    ingest(seeded, spread(60, 8, base - DAY, base - 10 * 60_000, components=2))
    scoring.score_observations(seeded, at(base))
    with monkeypatch.context() as m:  # a version before the record commits a chunk
        m.setattr(observations_store, "presence_fields", lambda starts: {})
        ingest(seeded, [obs("svc:c0", base - 2 * 60_000)])
        scoring.score_observations(seeded, at(base))
    gens = generations.current(seeded)
    assert set(seeded.buckets.presence([gens.read_key("svc:c0"), gens.read_key("svc:c1")])) == {
        gens.read_key("svc:c1")}
    queries = bucket_queries(monkeypatch)
    fast = figures(scoring.window_summaries(seeded, base, gens))
    assert {q[0] for q in queries} == {gens.read_key("svc:c0")}
    monkeypatch.undo()
    assert fast == by_queries(seeded, base, monkeypatch)
    assert fast[0]["svc:c0"]["1h"]["n"] == 1 + sum(1 for it in spread(60, 8, base - DAY, base - 10 * 60_000, 2)
                                                    if it["component"] == "svc:c0" and it["ts"] >= base - 3_600_000)


def test_shard_workers_and_late_feedback_keep_the_record_whole(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks committed by shard task workers and feedback corrections: the record still lists every bucket."""
    from opsloop.services import feedback
    from tests.emulator.test_feedback import QUALITY

    seeded.configs.set("reward_config", QUALITY, merge=False)
    seeded.configs.set("scoring", {"safetyMarginMs": 0, "shards": 2, "chunkSize": 40})
    store = FirestoreStore(seeded.db)
    base = last_mark()
    items = [{**it, "id": f"o{i}", "component": f"router:m{i % 3}"}
             for i, it in enumerate(spread(150, 9, base - 2 * DAY, base - 1000))]
    ingest(store, items)
    scoring.score_observations(store, at(base), dispatch=lambda jobs, _ms: [])  # the first run: adoption
    ingest(store, [{**obs("router:m1", base - 3 * 60_000), "id": "late"}])
    for key in ("2-0", "2-1"):  # what the task workers would do
        scoring.score_shard(FirestoreStore(seeded.db), key)
    got = feedback.record_feedback(store, {"feedback": [{"id": "f1", "observationId": "o4",
                                                         "metrics": {"judge": 9}}]})
    assert got.corrected == 1
    scoring.score_observations(store, at(base + 5 * 60_000))
    gens = generations.current(store)
    queries = bucket_queries(monkeypatch)
    fast = figures(scoring.window_summaries(store, base + 5 * 60_000, gens))
    assert queries == []
    monkeypatch.undo()
    assert fast == by_queries(store, base + 5 * 60_000, monkeypatch)
    assert sum(fast[0][c]["7d"]["n"] for c in fast[0]) == 151
