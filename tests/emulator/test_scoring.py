"""scoreObservations against the real emulator: exactly-once, late data, replay, stats accuracy."""

from __future__ import annotations

import datetime as dt
import random
import threading
from typing import Any

import numpy as np
import pytest

from opsloop.domain.reward import RewardConfig
from opsloop.domain.reward import score as reward_score
from opsloop.services import folding, scoring
from opsloop.services.record import record_batch
from opsloop.store.buckets import FirestoreBucketRepo
from opsloop.store.firestore_store import FirestoreStore
from opsloop.store.observations import FirestoreObservationRepo
from opsloop.store.runs import FirestoreRunRepo
from opsloop.store.stats import FirestoreStatsRepo

pytestmark = pytest.mark.emulator

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
NOW_MS = int(NOW.timestamp() * 1000)
SMALL = scoring.ScoringSettings(chunk_size=40, safety_margin_ms=0)


def make_batch(n: int, seed: int, ts_base: int = NOW_MS - 30 * 60_000, components: int = 4) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append({
            "component": f"router:m{i % components}",
            "outcome": rng.choice(["success", "success", "success", "failure", "timeout"]),
            "durationMs": round(rng.lognormvariate(6, 0.6), 3),
            "costUsd": round(rng.uniform(0, 0.12), 5),
            "ts": ts_base + rng.randrange(0, 20 * 60_000),
        })
    return out


def ingest(store: FirestoreStore, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})


def expected_rewards(items: list[dict[str, Any]]) -> dict[str, list[float]]:
    cfg = RewardConfig()
    out: dict[str, list[float]] = {}
    for it in items:
        out.setdefault(it["component"], []).append(
            reward_score(it["outcome"], it["durationMs"], it["costUsd"], cfg).score
        )
    return out


def bucket_totals(store: FirestoreStore) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for snap in store.db.collection("ops_buckets").stream():
        d = snap.to_dict()
        component, generation = d["component"].rsplit("#g", 1)  # a fresh store scores in generation 1 only
        assert generation == "1", d["component"]
        key = (component, d["level"])
        totals[key] = totals.get(key, 0) + d["n"]
    return totals


def assert_counted_once(store: FirestoreStore, items: list[dict[str, Any]], result_stats: dict[str, Any]) -> None:
    assert store.count("ops_rewards") == len(items)
    per_comp: dict[str, int] = {}
    for it in items:
        per_comp[it["component"]] = per_comp.get(it["component"], 0) + 1
    totals = bucket_totals(store)
    for comp, n in per_comp.items():
        for level in ("5m", "1h", "1d"):
            assert totals[(comp, level)] == n, (comp, level)
        assert result_stats[f"{comp}~1h"]["n"] == n


def test_scores_backlog_in_chunks_and_stats_match_exact_numbers(seeded: FirestoreStore) -> None:
    items = make_batch(300, seed=1)
    ingest(seeded, items)
    result = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert result.scored == 300 and result.chunks >= 300 // 40
    assert_counted_once(seeded, items, result.stats)
    exp = expected_rewards(items)
    for comp, rewards in exp.items():
        st = seeded.db.collection("ops_stats").document(f"{comp}~24h").get().to_dict()
        assert st["n"] == len(rewards)
        assert st["avgReward"] == pytest.approx(np.mean(rewards), abs=1e-6)
        lat = [it["durationMs"] for it in items if it["component"] == comp]
        for q, key in ((0.5, "p50Latency"), (0.95, "p95Latency")):
            exact = float(np.quantile(lat, q, method="lower"))
            assert abs(st[key] - exact) / exact <= 0.01, (comp, key, st[key], exact)
        successes = sum(1 for it in items if it["component"] == comp and it["outcome"] == "success")
        assert st["successRate"] == pytest.approx(successes / len(rewards))


@pytest.mark.parametrize("with_lease", [True, False], ids=["lease", "cursor-guard-only"])
def test_three_concurrent_runs_count_every_observation_once(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch, with_lease: bool
) -> None:
    items = make_batch(240, seed=2)
    ingest(seeded, items)
    if not with_lease:  # prove the transaction's cursor check alone keeps runs exactly-once
        monkeypatch.setattr(FirestoreRunRepo, "acquire_lease", lambda self, *a: True)
    results: list[scoring.ScoreRunResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(scoring.score_observations(seeded, NOW, settings=SMALL))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(r.scored for r in results) == 240
    final = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert final.scored == 0 and final.stats == {}  # nothing changed since the last run's stats
    assert_counted_once(seeded, items, {s.id: s.to_dict() for s in seeded.db.collection("ops_stats").stream()})


@pytest.mark.parametrize("crash_at", ["before-chunk-commit", "after-chunk-commit", "before-stats", "after-stats"])
def test_crash_then_rerun_loses_nothing_and_counts_nothing_twice(seeded: FirestoreStore, crash_at: str) -> None:
    items = make_batch(150, seed=3)
    ingest(seeded, items)
    hits = {"n": 0}

    def crash(name: str) -> None:
        if name == crash_at:
            hits["n"] += 1
            if hits["n"] == 2 or name.endswith("stats"):
                raise RuntimeError(f"injected crash at {name}")

    with pytest.raises(RuntimeError, match="injected crash"):
        scoring.score_observations(seeded, NOW, settings=SMALL, checkpoint=crash)
    rerun = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert_counted_once(seeded, items, rerun.stats)


def test_late_arriving_observations_are_still_scored_into_their_old_bucket(seeded: FirestoreStore) -> None:
    ingest(seeded, make_batch(50, seed=4))
    first = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert first.scored == 50
    old_ts = NOW_MS - 3 * 24 * 3600_000  # three days ago, reported only now
    ingest(seeded, [{"component": "router:m0", "outcome": "success", "durationMs": 10, "ts": old_ts}])
    second = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert second.scored == 1
    assert second.stats["router:m0~7d"]["n"] == first.stats["router:m0~7d"]["n"] + 1
    assert second.stats["router:m0~24h"]["n"] == first.stats["router:m0~24h"]["n"]


def test_replaying_a_past_schedule_time_reproduces_its_stats(seeded: FirestoreStore) -> None:
    earlier = NOW - dt.timedelta(hours=2)
    earlier_ms = int(earlier.timestamp() * 1000)
    ingest(seeded, make_batch(80, seed=5, ts_base=earlier_ms - 40 * 60_000))
    original = scoring.score_observations(seeded, earlier, settings=SMALL).stats
    ingest(seeded, make_batch(60, seed=6, ts_base=NOW_MS - 30 * 60_000))  # after the earlier windows
    current = scoring.score_observations(seeded, NOW, settings=SMALL).stats
    assert current["router:m0~24h"]["n"] > original["router:m0~24h"]["n"]
    replay = scoring.score_observations(seeded, earlier, settings=SMALL)
    assert replay.scored == 0
    assert replay.stats == original
    # the replay computed old windows but did not overwrite the newer stats documents
    assert seeded.db.collection("ops_stats").document("router:m0~24h").get().to_dict()["ts"] == NOW_MS


def test_safety_margin_defers_observations_still_landing(seeded: FirestoreStore) -> None:
    ingest(seeded, make_batch(10, seed=7))
    wide = scoring.ScoringSettings(chunk_size=40, safety_margin_ms=60_000)
    assert scoring.score_observations(seeded, NOW, settings=wide).scored == 0
    assert scoring.score_observations(seeded, NOW, settings=SMALL).scored == 10


def test_invalid_documents_written_directly_are_recorded_and_skipped(seeded: FirestoreStore) -> None:
    from google.cloud import firestore

    ingest(seeded, make_batch(5, seed=8))
    seeded.db.collection("ops_observations").document("bad").set(
        {"component": "router:m0", "outcome": "exploded", "durationMs": 10, "ts": NOW_MS, "shard": "1-0",
         "receivedAt": firestore.SERVER_TIMESTAMP}
    )
    result = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert result.scored == 5 and result.invalid == 1
    bad = seeded.db.collection("ops_rewards").document("bad").get().to_dict()
    assert bad["invalid"] is True and "outcome" in bad["error"]
    assert sum(s["n"] for k, s in result.stats.items() if k.endswith("~7d")) == 5


def test_a_run_writes_each_stats_document_once(seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest(seeded, make_batch(200, seed=9))
    writes: list[str] = []
    original = FirestoreStatsRepo.write

    def spy(self: FirestoreStatsRepo, docs: dict[str, Any], schedule_ms: int, now: int | None = None) -> int:
        writes.extend(docs)
        return original(self, docs, schedule_ms, now)

    monkeypatch.setattr(FirestoreStatsRepo, "write", spy)
    scoring.score_observations(seeded, NOW, settings=SMALL)
    assert len(writes) == len(set(writes)) == 4 * 3


def test_observations_and_rewards_expire_after_the_retention_period(seeded: FirestoreStore) -> None:
    seeded.configs.set("scoring", {"retentionDays": 7})
    before = dt.datetime.now(dt.UTC)
    record_batch(seeded, {"observations": make_batch(3, seed=10)})
    scoring.score_observations(seeded, NOW, settings=SMALL)
    for obs in seeded.db.collection("ops_observations").stream():
        expire = obs.to_dict()["expireAt"]
        assert abs(expire - before - dt.timedelta(days=7)) < dt.timedelta(minutes=1)
        assert seeded.db.collection("ops_rewards").document(obs.id).get().to_dict()["expireAt"] == expire


def test_a_bad_retention_setting_never_refuses_ingestion(seeded: FirestoreStore) -> None:
    """A derived setting gone bad: observations are still accepted (default retention), and it is alerted."""
    seeded.configs.set("scoring", {"retentionDays": 0})
    before = dt.datetime.now(dt.UTC)
    record_batch(seeded, {"observations": make_batch(2, seed=11)})
    assert seeded.count("ops_observations") == 2
    for obs in seeded.db.collection("ops_observations").stream():
        assert abs(obs.to_dict()["expireAt"] - before - dt.timedelta(days=30)) < dt.timedelta(minutes=1)
    [alert] = [a for a in seeded.alerts.recent() if a.get("kind") == "config"]
    assert alert["path"] == "config/scoring" and alert["field"] == "retentionDays"
    assert alert["code"] == "E_LEARN_CONFIG_INVALID"


def test_sampled_successes_keep_stats_unbiased(seeded: FirestoreStore) -> None:
    """10 % of successes reported (weight 10), every failure: stats match the full, unsampled truth."""
    from opsloop.services.reporter import Reporter, StoreSink

    rng = random.Random(12)
    truth = []
    for _ in range(20_000):
        ok = rng.random() < 0.8
        truth.append({"component": "router:m0", "outcome": "success" if ok else "failure",
                      "durationMs": round(rng.lognormvariate(6 if ok else 7, 0.4), 2),
                      "costUsd": round(rng.uniform(0.01, 0.03), 5), "ts": NOW_MS - rng.randrange(0, 20 * 60_000)})
    reporter = Reporter(StoreSink(seeded), batch_size=500, flush_interval_s=60, success_sample_rate=0.1,
                        rng=random.Random(13))
    for o in truth:
        reporter.report(**o)
    reporter.close()
    stored = seeded.count("ops_observations")
    assert stored < 6500  # about 1,600 successes + 4,000 failures written instead of 20,000
    stats = scoring.score_observations(seeded, NOW, settings=scoring.ScoringSettings(safety_margin_ms=0))
    st = stats.stats["router:m0~1h"]
    rewards = expected_rewards(truth)["router:m0"]
    assert st["samples"] == stored
    assert abs(st["n"] - 20_000) / 20_000 < 0.03
    assert st["successRate"] == pytest.approx(sum(o["outcome"] == "success" for o in truth) / 20_000, abs=0.01)
    assert st["avgReward"] == pytest.approx(float(np.mean(rewards)), abs=0.01)
    exact_p95 = float(np.quantile([o["durationMs"] for o in truth], 0.95))
    assert abs(st["p95Latency"] - exact_p95) / exact_p95 < 0.03
    # what the unweighted samples alone would have said: far off
    naive = sum(1 for o in truth if o["outcome"] == "failure") / stored
    assert naive > 0.6


def test_scoring_reads_only_the_fields_it_scores(seeded: FirestoreStore) -> None:
    """A projection: meta (up to 4 KiB) is neither sent nor decoded on the scoring path; tokens and metrics,
    which reward terms read, are."""
    from opsloop.domain.ingest import SCORED_FIELDS, Cursor

    ingest(seeded, [{**make_batch(1, seed=3)[0], "meta": {"prompt": "x" * 1000}, "tokensIn": 7, "errorCode": "E1",
                     "policyVersion": "router-core@1.0.0"}])
    (obs,) = seeded.observations.after(Cursor(), dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), 10)
    assert set(obs.data) <= set(SCORED_FIELDS) and "meta" not in obs.data and obs.data["tokensIn"] == 7
    assert obs.data["errorCode"] == "E1" and obs.data["policyVersion"] == "router-core@1.0.0"


def record_calls(monkeypatch: pytest.MonkeyPatch, method: str) -> list[tuple[tuple[Any, ...], Any]]:
    """Wrap a bucket repository method; returns the list its calls land in as (args, result)."""
    calls: list[tuple[tuple[Any, ...], Any]] = []
    real = getattr(FirestoreBucketRepo, method)

    def wrapped(self: FirestoreBucketRepo, *args: Any, **kwargs: Any) -> Any:
        out = real(self, *args, **kwargs)
        calls.append((args, out))
        return out

    monkeypatch.setattr(FirestoreBucketRepo, method, wrapped)
    return calls


@pytest.mark.parametrize("max_writes", [33, 5], ids=["folds-early", "one-chunk-too-big"])
def test_a_fold_stays_within_one_transaction_s_writes(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch, max_writes: int
) -> None:
    """Folds come early when the held buckets near the bound; a chunk over it alone is folded by reading."""
    # 20 minutes of the 1h window that cross no hour and start mid-bucket: 5 five-minute buckets, an hour
    # and a day per component whatever the clock says (a span starting on the 5-minute grid touches 4, and
    # all would fit one fold of 33; one across an hour, 2 hours)
    end = NOW_MS + (-NOW_MS) % 300_000
    start, boundary = end - 3_600_000, end - end % 3_600_000
    part = start if boundary - start >= end - boundary else boundary  # the longer side of the hour, >= 30 min
    items = make_batch(300, seed=14, ts_base=part + 150_000)
    ingest(seeded, items)
    monkeypatch.setattr(folding, "FOLD_MAX_WRITES", max_writes)
    own = record_calls(monkeypatch, "fold_own")
    result = scoring.score_observations(seeded, NOW, settings=SMALL)
    if max_writes == 33:  # one chunk touches ~28 buckets, all 8 would need ~36 writes
        assert len(own) > 1 and all(ok and len(ids) + len(parts) <= 33 for (ids, parts), ok in own)
    else:  # chunks are cut down until their delta alone can be folded within the bound
        assert result.chunks > 300 // SMALL.chunk_size
        assert all(ok and len(ids) + len(parts) <= 5 for (ids, parts), ok in own)
    assert seeded.buckets.pending() == 0
    assert_counted_once(seeded, items, result.stats)


def test_a_run_folds_its_own_deltas_from_memory_without_reading_them(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = make_batch(300, seed=11)
    ingest(seeded, items)
    monkeypatch.setattr(folding, "FOLD_EVERY", 3)
    own, generic = record_calls(monkeypatch, "fold_own"), record_calls(monkeypatch, "fold_pending")
    result = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert result.chunks == 8 and [(len(ids), ok) for (ids, _), ok in own] == [(3, True), (3, True), (2, True)]
    assert all(n == 0 for _, (n, _) in generic)  # the generic folds found nothing left to read
    assert seeded.buckets.pending() == 0
    assert_counted_once(seeded, items, result.stats)


def test_deltas_folded_by_another_run_meanwhile_are_counted_once(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run folds some of this run's deltas between its commits: its own fold must not add them."""
    items = make_batch(300, seed=12)
    ingest(seeded, items)
    monkeypatch.setattr(folding, "FOLD_EVERY", 4)
    own = record_calls(monkeypatch, "fold_own")
    commits = {"n": 0}

    def interfere(name: str) -> None:
        if name == "after-chunk-commit":
            commits["n"] += 1
            if commits["n"] == 2:
                assert seeded.buckets.fold_pending(max_docs=1)[0] == 1  # someone else takes the oldest pending delta

    result = scoring.score_observations(seeded, NOW, settings=SMALL, checkpoint=interfere)
    assert [ok for _, ok in own] == [False, True]  # read back after the interference, from memory afterwards
    assert seeded.buckets.pending() == 0
    assert_counted_once(seeded, items, result.stats)


def test_deltas_in_the_earlier_array_format_still_fold(seeded: FirestoreStore) -> None:
    from opsloop.domain.stats import Summary

    one = Summary.of(reward=0.5, success=True, cost_usd=0.01, duration_ms=120.0)
    ident = {"component": "router:old", "level": "1h", "start": NOW_MS - NOW_MS % 3_600_000}
    seeded.db.collection("ops_bucket_deltas").document("legacy").set(
        {"createdAt": 1, "buckets": [{"id": "router:old~1h~x", **ident, **one.to_doc()}]})
    assert seeded.buckets.fold_pending() == (1, 1)
    bucket = seeded.db.collection("ops_buckets").document("router:old~1h~x").get().to_dict()
    assert bucket["n"] == 1 and bucket["sumReward"] == 0.5 and seeded.buckets.pending() == 0


def test_chunks_shrink_until_their_delta_payload_fits(seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from opsloop.store.buckets import encode_deltas

    items = make_batch(200, seed=13, components=40)
    ingest(seeded, items)
    limit = 30_000
    monkeypatch.setattr(folding, "MAX_DELTA_BYTES", limit)
    sizes: list[int] = []
    real = FirestoreObservationRepo.commit_chunk

    def commit(self: FirestoreObservationRepo, expected: Any, cursor: Any, rewards: Any, deltas: Any, *a: Any) -> bool:
        sizes.append(len(encode_deltas(deltas)))
        return real(self, expected, cursor, rewards, deltas, *a)

    monkeypatch.setattr(FirestoreObservationRepo, "commit_chunk", commit)
    result = scoring.score_observations(seeded, NOW, settings=SMALL)
    assert result.chunks > 200 // 40 and max(sizes) <= limit
    assert_counted_once(seeded, items, result.stats)


def test_stats_carry_each_windows_chart_points_with_the_bucket_in_progress_counted_to_the_windows_end(
    seeded: FirestoreStore,
) -> None:
    from collections import Counter

    from opsloop.domain import windows

    minutes = (2, 7, 20, 65, 130, 190, 60 * 30)  # the last is outside every window but 7 d
    items = [{"component": "router:m0", "outcome": "success", "durationMs": 100 + k, "costUsd": 0.01,
              "ts": NOW_MS - k * 60_000 - j} for k in minutes for j in range(3)]
    ingest(seeded, items)
    scoring.score_observations(seeded, NOW, settings=SMALL)
    for window, level in scoring.SERIES_LEVELS.items():
        start, stop = windows.window_bounds(NOW_MS, window)
        first = windows.bucket_start(start, level)
        expected = Counter(windows.bucket_start(int(o["ts"]), level) for o in items if first <= o["ts"] < stop)
        doc = seeded.db.collection("ops_stats").document(f"router:m0~{window}").get().to_dict()
        assert doc["seriesLevel"] == level
        assert {p["t"]: p["n"] for p in doc["series"]} == dict(expected), window
        assert [p["t"] for p in doc["series"]] == sorted(expected)
        assert all(p["successRate"] == 1.0 and p["avgCostUsd"] == 0.01 for p in doc["series"])


@pytest.mark.parametrize("n", [300, 400], ids=["ends-on-a-short-page", "ends-on-an-empty-page"])
def test_a_scanner_reads_its_queue_several_chunks_per_query(seeded: FirestoreStore,
                                                            monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    items = make_batch(n, seed=15)
    ingest(seeded, items)
    limits = record_after_limits(monkeypatch)
    result = scoring.score_observations(seeded, NOW, settings=SMALL)
    page = SMALL.chunk_size * scoring.READ_CHUNKS
    assert result.chunks == -(-n // SMALL.chunk_size) and set(limits) == {page}
    assert len(limits) == n // page + 1  # full pages, then a short (or empty) one that ends the queue
    assert_counted_once(seeded, items, result.stats)


def test_a_run_whose_cursor_moves_mid_page_reads_again_from_where_the_other_left_it(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first page holds several chunks; another run scores the rest after this run's first commit, so
    the chunks still buffered (and the page read ahead) are dropped, not committed twice."""
    items = make_batch(300, seed=16)
    ingest(seeded, items)
    monkeypatch.setattr(FirestoreRunRepo, "acquire_lease", lambda self, *a: True)  # the cursor guard alone
    limits = record_after_limits(monkeypatch)
    other: list[scoring.ScoreRunResult] = []

    def interfere(name: str) -> None:
        if name == "after-chunk-commit" and not other:
            other.append(scoring.score_observations(seeded, NOW, settings=SMALL))

    result = scoring.score_observations(seeded, NOW, settings=SMALL, checkpoint=interfere)
    assert result.lost_races == 1 and result.chunks == 1 and result.scored == SMALL.chunk_size
    assert other[0].scored == 300 - SMALL.chunk_size
    assert len(limits) == 5  # this run's two pages, the other run's two, and this run's read from the moved cursor
    assert_counted_once(seeded, items, {s.id: s.to_dict() for s in seeded.db.collection("ops_stats").stream()})


def record_after_limits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the scanners' reads (not the run's one-observation probe of each key for a backlog)."""
    limits: list[int] = []
    real = FirestoreObservationRepo.after

    def after(self: FirestoreObservationRepo, cursor: Any, upper: Any, limit: int, shard: Any = None) -> Any:
        if limit > 1:
            limits.append(limit)
        return real(self, cursor, upper, limit, shard)

    monkeypatch.setattr(FirestoreObservationRepo, "after", after)
    return limits
