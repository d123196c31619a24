"""Scoring shards on the emulator: K concurrent scanners, exactly once; a change of K drained; task
workers handed the shards; a reward config change while shards score."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from typing import Any

import pytest
from google.cloud import firestore

from opsloop.domain import shards as shard_domain
from opsloop.services import scoring
from opsloop.services import shards as shard_service
from opsloop.store import paths
from opsloop.store.client import get_db
from opsloop.store.firestore_store import FirestoreStore
from tests.emulator.test_scoring import NOW, assert_counted_once, ingest, make_batch

pytestmark = pytest.mark.emulator

SMALL = {"chunkSize": 40, "safetyMarginMs": 0}


def configure(store: FirestoreStore, shards: int) -> FirestoreStore:
    """Set config/scoring.shards and return a store as a freshly started instance sees it (its own config
    cache: an instance started earlier keeps the shard count it read)."""
    store.configs.set("scoring", {**SMALL, "shards": shards})
    return FirestoreStore(get_db())


def stamps(store: FirestoreStore) -> Counter[str | None]:
    return Counter((s.to_dict() or {}).get("shard") for s in store.db.collection(paths.OBSERVATIONS).stream())


def rewards_per_observation(store: FirestoreStore) -> Counter[str]:
    return Counter(s.id for s in store.db.collection(paths.REWARDS).stream())


def test_four_shards_score_everything_once_and_stats_count_it_once(store: FirestoreStore) -> None:
    fresh = configure(store, 4)
    items = make_batch(400, seed=1)
    ingest(fresh, items)
    stamped = stamps(store)
    assert set(stamped) == set(shard_domain.keys(4)) and all(n > 50 for n in stamped.values()), stamped

    seen: list[int] = []
    result = scoring.score_observations(fresh, NOW, progress=seen.append)
    assert result.scored == 400 and result.invalid == 0
    # a new deployment: every observation has a key, and no global scanner reads unstamped ones
    assert sorted(result.shards) == sorted(map(str, shard_domain.keys(4)))
    assert seen and seen[-1] == 400 and seen == sorted(seen)  # progress over all shards, never backwards
    assert_counted_once(store, items, result.stats)
    for key in shard_domain.keys(4):  # each shard's own cursor, at its last observation
        assert fresh.observations.cursor(key).received_at is not None
    assert result.backlog == 0
    again = scoring.score_observations(fresh, NOW + dt.timedelta(seconds=1))
    assert again.scored == 0 and again.shards == {}  # no shard has a backlog: none is scanned


def test_concurrent_workers_per_shard_score_each_observation_once(store: FirestoreStore) -> None:
    """Two task workers per shard and a scheduled run at once: leases keep most apart, cursors the rest."""
    fresh = configure(store, 3)
    items = make_batch(600, seed=2)
    ingest(fresh, items)
    errors: list[BaseException] = []
    results: list[scoring.ScoreRunResult] = []

    def worker(key: str) -> None:
        try:
            results.append(scoring.score_shard(FirestoreStore(get_db()), key))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(key,)) for key in shard_domain.keys(3) * 2 if key]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    leftover = scoring.score_observations(fresh, NOW)  # whatever the workers left (none, usually)
    assert sum(r.scored for r in results) + leftover.scored == 600
    assert max(rewards_per_observation(store).values()) == 1
    assert_counted_once(store, items, leftover.stats)


def test_a_crashed_shard_run_leaves_whole_chunks_and_a_rerun_finishes_once(store: FirestoreStore) -> None:
    fresh = configure(store, 2)
    items = make_batch(300, seed=3)
    ingest(fresh, items)
    commits = 0

    def crash(name: str) -> None:
        nonlocal commits
        if name == "after-chunk-commit":
            commits += 1
            if commits == 3:
                raise SystemExit("killed")  # like kill -9 between two chunks, in one shard's thread

    with pytest.raises(SystemExit):
        scoring.score_observations(fresh, NOW, checkpoint=crash)
    for key in shard_domain.keys(2):  # the leases a killed worker held expire; here they were released
        assert fresh.runs.acquire_lease(f"score~{key}", "probe", 1)
        fresh.runs.release_lease(f"score~{key}", "probe")
    result = scoring.score_observations(fresh, NOW + dt.timedelta(seconds=1))
    assert max(rewards_per_observation(store).values()) == 1
    assert_counted_once(store, items, result.stats)


def as_legacy(store: FirestoreStore) -> None:
    """Make the observations stored so far what a version before every observation had a key left: no
    ``shard``, and its global cursor behind them (it had scored earlier ones)."""
    for snap in store.db.collection(paths.OBSERVATIONS).stream():
        snap.reference.update({"shard": firestore.DELETE_FIELD})
    store.db.collection(paths.RUNS).document(paths.SCORE_CURSOR_DOC).set(
        {"receivedAt": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "docId": "-"})


def test_changing_the_shard_count_drains_the_old_layout(store: FirestoreStore) -> None:
    old = configure(store, 1)
    first = make_batch(120, seed=4, components=3)
    ingest(old, first)
    as_legacy(store)  # an upgrade: the version before stamped nothing with one shard
    scoring.score_observations(old, NOW)  # adopts one shard ("1-0"); the global scanner drains the legacy
    layout = shard_service.Layout.from_doc(store.runs.get(paths.SHARD_LAYOUT_DOC))
    assert layout.current == 1 and set(layout.draining) == {shard_domain.LEGACY} and layout.legacy == "draining"
    assert store.count(paths.REWARDS) == 120

    four = configure(store, 4)
    # adopted now (the drain's end is counted from the adoption's real time)
    layout, _ = shard_service.adopt(four, scoring.ScoringSettings(safety_margin_ms=0, shards=4),
                                    dt.datetime.now(dt.UTC))
    assert layout.current == 4 and 1 in layout.draining
    second = make_batch(150, seed=5, components=3)
    ingest(four, second[:100])
    ingest(old, second[100:])  # an instance that still has shards = 1 cached: "1-0", in the drain
    two = configure(store, 2)
    third = make_batch(90, seed=6, components=3)
    ingest(two, third)  # the config says 2 before the scorer adopts it: waits for the next run
    assert set(stamps(store)) == {None, "1-0", *shard_domain.keys(4), *shard_domain.keys(2)}

    result = scoring.score_observations(two, NOW + dt.timedelta(seconds=1))
    layout = shard_service.Layout.from_doc(store.runs.get(paths.SHARD_LAYOUT_DOC))
    assert layout.current == 2 and set(layout.draining) == {shard_domain.LEGACY, 1, 4}
    everything = first + second + third
    assert max(rewards_per_observation(store).values()) == 1
    assert store.count(paths.REWARDS) == len(everything)
    assert result.stats["router:m0~1h"]["n"] == sum(1 for it in everything if it["component"] == "router:m0")

    # once past the drain's end (config cache + safety margin), a run retires the drained layouts, and
    # stamps the legacy observations (scored) with a key no scanner reads
    until = max(layout.draining.values())
    later = dt.datetime.fromtimestamp(until / 1000, dt.UTC) + dt.timedelta(seconds=2)
    # an instance of the version before, still recording after the legacy drain's end: never scored, told
    straggler = dt.datetime.fromtimestamp((layout.draining[shard_domain.LEGACY] + 1000) / 1000, dt.UTC)
    store.db.collection(paths.OBSERVATIONS).document("straggler").set(
        {**first[0], "id": "straggler", "receivedAt": straggler})
    last = scoring.score_observations(two, later, now=later)
    layout = shard_service.Layout.from_doc(store.runs.get(paths.SHARD_LAYOUT_DOC))
    assert layout.current == 2 and layout.draining == {} and layout.legacy == "done"
    assert last.legacy_stamped == 121 and last.scored == 0
    assert stamps(store)[shard_domain.MIGRATED] == 121 and None not in stamps(store)
    told = [a for a in store.alerts.recent() if a.get("item") == "observations without a shard key"]
    assert len(told) == 1 and "1 observation(s)" in told[0]["error"], told
    assert not store.db.collection(paths.REWARDS).document("straggler").get().exists
    assert layout.stored_keys() == [shard_domain.MIGRATED, "1-0", "2-0", "2-1", "4-0", "4-1", "4-2", "4-3"]
    assert (store.runs.get(paths.SHARD_LAYOUT_DOC) or {}).get("everSharded") is True
    assert max(rewards_per_observation(store).values()) == 1 and store.count(paths.REWARDS) == len(everything)


def test_a_dispatcher_gets_the_shards_and_the_run_keeps_the_rest(store: FirestoreStore) -> None:
    fresh = configure(store, 4)
    ingest(fresh, make_batch(80, seed=8))
    handed: list[tuple[list[Any], int]] = []

    def dispatch(jobs: list[shard_domain.Job], schedule_ms: int) -> list[str]:
        handed.append((jobs, schedule_ms))
        return [str(job.shard) for job in jobs]

    result = scoring.score_observations(fresh, NOW, dispatch=dispatch)
    assert result.scored == 0 and store.count(paths.REWARDS) == 0  # nothing scored here: all handed over
    assert sorted(result.dispatched) == sorted(str(k) for k in shard_domain.keys(4))
    assert handed[0][1] == int(NOW.timestamp() * 1000) and result.backlog is None
    for job in handed[0][0]:  # what a task worker then does
        scoring.score_shard(FirestoreStore(get_db()), str(job.shard), job.cap_ms)
    assert store.count(paths.REWARDS) == 80
    later = scoring.score_observations(fresh, NOW + dt.timedelta(seconds=1), dispatch=dispatch)
    assert later.dispatched == [] and later.stats["router:m0~1h"]["n"] == 20  # the next run's stats count them


def test_shards_the_task_queue_refuses_are_scored_by_the_run(store: FirestoreStore) -> None:
    fresh = configure(store, 2)
    ingest(fresh, make_batch(60, seed=10))
    result = scoring.score_observations(fresh, NOW, dispatch=lambda jobs, schedule_ms: [])  # nothing enqueued
    assert result.dispatched == [] and result.scored == 60 and store.count(paths.REWARDS) == 60
    assert result.stats["router:m0~1h"]["n"] == 15


def test_a_reward_change_while_shards_score_is_backfilled_once(store: FirestoreStore) -> None:
    """With shards the generation boundary is a time: what was scored before the change is re-scored,
    what a shard scores after it is scored under both, nothing twice."""
    fresh = configure(store, 2)
    items = make_batch(200, seed=9)
    ingest(fresh, items[:120])
    key = str(shard_domain.keys(2)[0])
    scoring.score_shard(fresh, key)  # one shard ahead of the other when the formula changes
    store.configs.set("reward_config", {"version": "2.0.0", "weights": {"latency": 0.1, "cost": 0.1,
                                                                        "success": 0.7, "error": 0.5}})
    ingest(fresh, items[120:])
    for i in range(6):  # adopt, score the rest under both generations, backfill, switch
        scoring.score_observations(fresh, NOW + dt.timedelta(seconds=i))
        doc = store.generations.get() or {}
        if doc.get("read") == doc.get("write") == 2:
            break
    assert doc.get("read") == doc.get("write") == 2, doc
    assert max(rewards_per_observation(store).values()) == 1
    for reward in store.db.collection(paths.REWARDS).stream():
        assert "g2" in (reward.to_dict() or {}).get("scores", {}), reward.id
    totals: Counter[str] = Counter()
    for snap in store.db.collection("ops_buckets").stream():
        d = snap.to_dict() or {}
        if d["component"].endswith("#g2") and d["level"] == "1d":
            totals[d["component"].split("#g")[0]] += d["n"]
    assert totals == Counter(it["component"] for it in items)


def test_one_shard_is_scored_by_the_run_itself_and_never_dispatched(store: FirestoreStore) -> None:
    fresh = configure(store, 1)
    ingest(fresh, make_batch(30, seed=12))
    called: list[Any] = []
    result = scoring.score_observations(fresh, NOW, dispatch=lambda jobs, ms: called.append(jobs) or [])
    assert called == [] and result.scored == 30 and result.shards == {}  # its stats count them at once
    assert result.stats["router:m0~1h"]["n"] == 8
    assert store.observations.cursor(shard_domain.SINGLE).received_at is not None
    assert store.observations.cursor(shard_domain.GLOBAL).received_at is None  # no legacy: never used


def test_a_layout_of_the_version_before_keys_is_migrated_and_its_retired_layouts_found(
    store: FirestoreStore, tmp_path: Any,
) -> None:
    """That version kept no list of the layouts it used: the stamping pass finds their keys, so that the
    readers of past observations (an export here) still see every observation."""
    from opsloop.services import export

    two = configure(store, 2)
    ingest(two, make_batch(40, seed=13))  # "2-i": a layout it retired long ago
    legacy_items = [{**it, "id": f"legacy-{i}"} for i, it in enumerate(make_batch(30, seed=14))]
    ingest(two, legacy_items)
    ids = {it["id"] for it in legacy_items}
    for snap in store.db.collection(paths.OBSERVATIONS).stream():
        if snap.id in ids:  # scored by its global scanner when K was 1
            snap.reference.update({"shard": firestore.DELETE_FIELD})
    four = configure(store, 4)
    ingest(four, make_batch(20, seed=15))
    store.db.collection(paths.RUNS).document(paths.SCORE_CURSOR_DOC).set(
        {"receivedAt": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "docId": "-"})
    store.runs.record(paths.SHARD_LAYOUT_DOC, {"current": 4, "sinceMs": 5, "draining": {}, "everSharded": True})

    result = scoring.score_observations(four, NOW)
    assert result.legacy_stamped == 30
    assert stamps(store)[shard_domain.MIGRATED] == 30 and None not in stamps(store)
    assert shard_service.stored_keys(four) == [shard_domain.MIGRATED, "2-0", "2-1", "4-0", "4-1", "4-2", "4-3"]
    out = export.export_dataset(four, tmp_path / "all.parquet", 0, 2**42)
    assert out.manifest["rows"] == 90


def test_a_keyed_export_holds_about_one_page_whatever_the_number_of_keys(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each key is read in pages of page_size / keys (at least 50), so what has been read and not yet handed
    on stays within about one page, not one page per key."""
    from opsloop.store.observations import FirestoreObservationRepo

    ts = int(NOW.timestamp() * 1000) - 60_000
    keys = [shard_domain.label(k) for k in shard_domain.keys(4)]
    docs = [(f"x{i:04d}", {"ts": ts + i % 97, "component": "c", "outcome": "success", "durationMs": 10,
                           "shard": keys[i % 4]}, True) for i in range(600)]
    seeded.observations.insert(docs)
    read = {"n": 0}
    real = FirestoreObservationRepo._pages

    def counted(self: FirestoreObservationRepo, *args: Any) -> Any:
        for page in real(self, *args):
            read["n"] += len(page)
            yield page

    monkeypatch.setattr(FirestoreObservationRepo, "_pages", counted)
    handed, held = 0, []
    rows = []
    for page in seeded.observations.pages(ts, ts + 100, page_size=200, keys=keys):
        handed += len(page)
        held.append(read["n"] - handed)
        rows += page
    assert handed == 600 and [(d["ts"], i) for i, d in rows] == sorted((d["ts"], i) for i, d in rows)
    assert max(held) <= 200  # four keys read 50 at a time: never more than a page ahead of the consumer
