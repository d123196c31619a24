"""Inputs that once stopped the loop for good (issue 11): each is now recorded and skipped, never a wedge."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.cloud import firestore

from opsloop.domain.errors import InvalidArgument
from opsloop.domain.ingest import Cursor
from opsloop.domain.stats import Summary
from opsloop.services import drift, rollouts, scoring, tuning
from opsloop.services.record import record_batch
from opsloop.store import paths
from opsloop.store.firestore_store import FirestoreStore
from tests.emulator.test_rollouts import WORLD, WORSE, send_traffic, shadow_then_canary

pytestmark = pytest.mark.emulator

SMALL = scoring.ScoringSettings(chunk_size=50, safety_margin_ms=0)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def now_ms() -> int:
    return int(now().timestamp() * 1000)


def stored(store: FirestoreStore, doc_id: str, **fields: Any) -> None:
    """An observation as a client writing straight to Firestore could leave it (no API validation; the
    rules hold it to a key of the layout in use, here one shard's)."""
    data = {"id": doc_id, "ts": now_ms() - 60_000, "component": "router:gpt-5", "outcome": "success",
            "durationMs": 100.0, "shard": "1-0", **fields, "receivedAt": firestore.SERVER_TIMESTAMP}
    store.db.collection(paths.OBSERVATIONS).document(doc_id).set(data)


def normal(n: int, prefix: str = "ok") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "component": "router:gemini", "outcome": "success", "durationMs": 300,
             "costUsd": 0.01, "ts": now_ms() - 60_000} for i in range(n)]


def rewards(store: FirestoreStore) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() or {} for s in store.db.collection(paths.REWARDS).stream()}


# ------------------------------------------------------------------------- 1. numbers that overflowed
def test_a_tiny_propensity_is_refused_by_the_api_and_never_wedges_the_scorer(seeded: FirestoreStore) -> None:
    with pytest.raises(InvalidArgument, match="propensity"):
        record_batch(seeded, {**normal(1)[0], "propensity": 1e-300})
    stored(seeded, "tiny-success", propensity=1e-300)  # already stored, or written past older rules
    stored(seeded, "tiny-failure", outcome="failure", propensity=1e-160)
    record_batch(seeded, {"observations": normal(20)})
    first = scoring.score_observations(seeded, now(), settings=SMALL)
    assert (first.scored, first.invalid) == (20, 2)
    got = rewards(seeded)
    assert got["tiny-success"]["invalid"] and "propensity" in got["tiny-success"]["error"]
    assert got["tiny-failure"]["invalid"]
    second = scoring.score_observations(seeded, now(), settings=SMALL)  # the next run is not stuck either
    assert second.lease_acquired and second.scored == second.invalid == 0


def test_the_smallest_accepted_propensity_keeps_every_sum_finite() -> None:
    one = Summary.of(reward=1.0, success=True, cost_usd=1e6, duration_ms=86_400_000, propensity=1e-6,
                     weight=1e6)
    assert one.finite()
    assert sum([one] * 1000, Summary()).finite()


# -------------------------------------------------------------------- 2. strings that became doc ids
@pytest.mark.parametrize("version", ["router-core@1.0.0/../x", "r" * 1600 + "@1.0.0", "Router@1.0.0",
                                     "router-core@01.0.0", "router-core@1.0.0\n"])
def test_a_policy_version_that_cannot_be_part_of_an_id_is_recorded_invalid(seeded: FirestoreStore,
                                                                           version: str) -> None:
    stored(seeded, "bad-version", policyVersion=version, arm="challenger")
    record_batch(seeded, {"observations": normal(10)})
    result = scoring.score_observations(seeded, now(), settings=SMALL)
    assert (result.scored, result.invalid) == (10, 1)
    assert rewards(seeded)["bad-version"]["invalid"]
    assert seeded.buckets.pending() == 0


# ------------------------------------------------------------------------- 3. component cardinality
def test_components_live_in_their_own_collection_and_a_legacy_cursor_map_is_migrated(
    seeded: FirestoreStore,
) -> None:
    # what older versions left: every component ever seen in one map on the cursor (~700 KB here); most are
    # older than the longest window (so migrated, not refreshed), ten are recent
    day = 86_400_000
    legacy = {f"legacy:{i:05d}:" + "x" * 110: now_ms() - (3_600_000 if i < 10 else 8 * day) for i in range(5000)}
    seeded.db.collection(paths.RUNS).document(paths.SCORE_CURSOR_DOC).set(
        {"receivedAt": None, "docId": "", "components": legacy})
    items = [{**o, "component": f"c{i % 100}:" + "y" * 120} for i, o in enumerate(normal(600))]
    for i in range(0, len(items), 500):
        record_batch(seeded, {"observations": items[i : i + 500]})
    result = scoring.score_observations(seeded, now(), settings=scoring.ScoringSettings(safety_margin_ms=0))
    assert result.scored == 600
    cursor = seeded.db.collection(paths.RUNS).document(paths.SCORE_CURSOR_DOC).get().to_dict() or {}
    assert not cursor.get("components")  # the cursor stays a few bytes however many components there are
    assert seeded.count(paths.COMPONENTS) == 5100
    active = seeded.observations.active_components(now_ms() - 2 * 3_600_000)
    assert len(active) == 110 and len(seeded.observations.active_components(0)) == 5100
    assert {s["component"] for s in result.stats.values()} == set(active)


@pytest.fixture()
def commit_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of writes of every transaction committed while the test runs."""
    sizes: list[int] = []
    original = firestore.Transaction._commit

    def counting(self: Any) -> Any:
        sizes.append(len(self._write_pbs))
        return original(self)

    monkeypatch.setattr(firestore.Transaction, "_commit", counting)
    return sizes


def test_a_chunk_of_many_components_stays_within_the_commit_and_fold_limits(
    seeded: FirestoreStore, commit_sizes: list[int]
) -> None:
    items = [{**o, "component": f"many-{i % 200}"} for i, o in enumerate(normal(400))]  # 600 buckets a chunk
    record_batch(seeded, {"observations": items})
    result = scoring.score_observations(seeded, now(), settings=scoring.ScoringSettings(safety_margin_ms=0))
    assert result.scored == 400 and result.chunks > 1
    assert max(commit_sizes) <= 500
    assert sum(s["n"] for s in result.stats.values() if s["window"] == "1h") == 400


def test_an_oversized_delta_left_by_an_older_version_is_split_and_counted_once(
    seeded: FirestoreStore, commit_sizes: list[int]
) -> None:
    one = Summary.of(reward=0.5, success=True, cost_usd=0.0, duration_ms=10.0)
    start = now_ms() - now_ms() % 300_000
    deltas = {paths.bucket_id(f"old-{i}", "5m", start): ({"component": f"old-{i}", "level": "5m", "start": start},
                                                         one) for i in range(700)}
    assert seeded.observations.commit_chunk(seeded.observations.cursor(), Cursor(None, ""), [], deltas)
    commit_sizes.clear()
    scoring.fold_all(seeded)
    assert seeded.buckets.pending() == 0 and max(commit_sizes) <= 500
    buckets = [s.to_dict() or {} for s in seeded.db.collection(paths.BUCKETS).stream()]
    assert len(buckets) == 700 and all(b["n"] == 1 for b in buckets)


# ------------------------------------------------------- 4. one bad rollout, drift or config document
def test_a_broken_rollout_and_bad_configs_do_not_block_a_safety_rollback(seeded: FirestoreStore) -> None:
    seeded.configs.set("rollout", {"minSamples": 300, "minShadowSamples": 200, "guardrailMinSamples": 150,
                                  "safetyMinSamples": 100, "denyCanaryIfShadowWorse": False})
    router = shadow_then_canary(seeded, WORSE)
    # a second policy whose shadow lost its modelWeights, and one whose shadow version was deleted
    for policy_id in ("router-b", "router-c"):
        base = seeded.policies.policy("router-core", "1.0.0") or {}
        seeded.policies.create_version({**base, "id": policy_id, "status": "active"},
                                     {"actor": "t", "action": "seed", "id": policy_id, "from": None, "to": "1.0.0"})
        seeded.policies.create_version({**base, "id": policy_id, "version": "1.0.1", "status": "draft"},
                                     {"actor": "t", "action": "draft", "id": policy_id, "from": "1.0.0", "to": "1.0.1"})
        rollouts.start_shadow(seeded, policy_id, "1.0.1", actor="alice")
    seeded.db.collection(paths.POLICIES).document("router-b@1.0.1").update({"params": {}})
    seeded.db.collection(paths.POLICIES).document("router-c@1.0.1").delete()
    seeded.configs.set("drift", {"latest": "2h"})
    seeded.configs.set("rollout", {"shadowWindow": "48h"})
    outage = {**WORLD, "gpt-5": (0.1, 2600.0, 0.06)}
    send_traffic(seeded, router, 600, seed=6, world=outage)
    scoring.score_observations(seeded, now())

    outcomes = {o.policy_id: o for o in rollouts.evaluate_rollouts(seeded, now())}
    assert outcomes["router-core"].outcome == "rollback" and outcomes["router-core"].carried_out
    assert outcomes["router-b"].outcome == outcomes["router-c"].outcome == "error"
    assert "modelWeights" in outcomes["router-b"].reason and "does not exist" in outcomes["router-c"].reason
    assert seeded.policies.policy("router-core", "1.0.1")["status"] == "rolled_back"
    drift.check_drift(seeded, now())  # a bad config/drift falls back; it does not raise
    [drift_run] = [r.to_dict() or {} for r in seeded.db.collection(paths.RUNS).stream() if r.id.startswith("drift-")]
    assert drift_run["configErrors"] and drift_run["configErrors"][0].startswith("config/drift.latest")
    alerts = seeded.alerts.recent()
    failed = {a["item"] for a in alerts if a.get("kind") == "item_failed"}
    assert failed == {f"rollout {r['rolloutId']}" for r in seeded.rollouts.running()}
    assert {a["path"] for a in alerts if a.get("kind") == "config"} == {"config/drift", "config/rollout"}
    again = {o.policy_id: o.outcome for o in rollouts.evaluate_rollouts(seeded, now())}
    assert again == {"router-b": "error", "router-c": "error"}  # still recorded, still not blocking
    assert max(a.get("count", 1) for a in seeded.alerts.recent() if a.get("kind") == "item_failed") == 2


# ------------------------------------------------------------------------ 5. schedule times ahead
def test_a_schedule_time_far_ahead_is_refused_and_a_stored_future_marker_does_not_block(
    seeded: FirestoreStore,
) -> None:
    record_batch(seeded, {"observations": normal(5)})
    ahead = now() + dt.timedelta(days=2)
    with pytest.raises(InvalidArgument, match="ahead of the clock"):
        scoring.score_observations(seeded, ahead, settings=SMALL)
    with pytest.raises(InvalidArgument, match="ahead of the clock"):
        tuning.auto_tune(seeded, ahead)
    with pytest.raises(InvalidArgument, match="ahead of the clock"):
        rollouts.evaluate_rollouts(seeded, ahead)
    runs = [s.id for s in seeded.db.collection(paths.RUNS).stream()]
    assert seeded.count(paths.REWARDS) == 0 and runs == [paths.CONFIG_GOOD_DOC]  # nothing of a run written
    # what a run stamped two days ahead by an older version left behind
    future_ms = int(ahead.timestamp() * 1000)
    seeded.db.collection(paths.STATS).document(paths.stats_id("router:gemini", "1h")).set(
        {"component": "router:gemini", "window": "1h", "ts": future_ms, "n": 0})
    seeded.db.collection(paths.RUNS).document(paths.SKILL_CARDS_RUN_DOC).set({"scheduleMs": future_ms})
    result = scoring.score_observations(seeded, now(), settings=SMALL)
    assert result.scored == 5
    assert seeded.stats.for_window(["router:gemini"], "1h")["router:gemini"]["n"] == 5
    assert result.cards_written > 0


# ------------------------------------------------------------------------------ 6. the kill switch
@pytest.mark.parametrize("flags", [{"learning": {"enabled": "false"}}, {"learning": "off"},
                                   {"learning": {"enabled": True, "autoActivatePolicies": "true"}},
                                   {"learning": {"enabled": 1}}, {"learning": {"enbled": True}}])
def test_an_unreadable_kill_switch_means_learning_is_off(seeded: FirestoreStore, flags: dict[str, Any]) -> None:
    router = shadow_then_canary_free_traffic(seeded)
    seeded.configs.set("tuning", {"minSamples": 20})  # as in the control below, which does draft
    seeded.configs.set("flags", flags, merge=False)
    result = tuning.auto_tune(seeded, now())
    assert not result.enabled and result.outcomes == []
    assert {p["version"] for p in seeded.policies.versions("router-core")} == {"1.0.0"}
    assert [a["path"] for a in seeded.alerts.recent() if a.get("kind") == "config"] == ["config/flags"]
    assert router is not None


def test_an_unreadable_kill_switch_is_off_inside_transactions_and_the_callable_repairs_it(
    seeded: FirestoreStore,
) -> None:
    from opsloop.domain.errors import FailedPrecondition
    from opsloop.services.flags import set_learning_flags

    seeded.configs.set("flags", {"learning": {"enabled": "false"}}, merge=False)
    base = seeded.policies.policy("router-core", "1.0.0") or {}
    draft = {**base, "version": "1.0.1", "status": "draft"}
    with pytest.raises(FailedPrecondition, match="does not parse") as info:
        seeded.policies.create_version(draft, {"actor": "t", "action": "draft", "id": "router-core"},
                                     require_learning=True)
    assert info.value.code == "E_LEARN_DISABLED"
    seeded.configs.set("flags", {"learning": "off"}, merge=False)
    result = set_learning_flags(seeded, {"enabled": True}, actor="alice")  # was a 500 on a non-map
    assert result.changed and result.previous == {"enabled": False, "autoActivatePolicies": False}
    assert seeded.configs.get("flags") == {"learning": {"enabled": True, "autoActivatePolicies": False}}
    assert seeded.policies.create_version(draft, {"actor": "t", "action": "draft", "id": "router-core"},
                                        require_learning=True)


def shadow_then_canary_free_traffic(store: FirestoreStore) -> Any:
    """Traffic that would make the tuner draft (gpt-5 fails), scored."""
    from opsloop.services.routing import Router

    router = Router(store.policies, ttl_s=0)
    send_traffic(store, router, 600, seed=3, world={**WORLD, "gpt-5": (0.2, 2600.0, 0.06)})
    scoring.score_observations(store, now())
    return router


def test_with_good_flags_the_same_traffic_is_drafted(seeded: FirestoreStore) -> None:
    """The control for the kill-switch test: with readable flags the tuner does draft."""
    shadow_then_canary_free_traffic(seeded)
    seeded.configs.set("tuning", {"minSamples": 20})
    [outcome] = tuning.auto_tune(seeded, now()).outcomes
    assert outcome.action == "drafted"
    [run] = [r.to_dict() or {} for r in seeded.db.collection(paths.RUNS).stream() if r.id.startswith("tune-")]
    assert (run["itemCount"], run["failedCount"], run["items"][0]["action"]) == (1, 0, "drafted")


# ------------------------------------------------------------------------ 11. a run's time budget
def test_a_run_stops_taking_chunks_at_its_budget_and_the_next_run_goes_on(seeded: FirestoreStore) -> None:
    record_batch(seeded, {"observations": normal(20, prefix="early")})
    scoring.score_observations(seeded, now(), settings=SMALL)
    record_batch(seeded, {"observations": normal(120)})
    out_of_time = scoring.ScoringSettings(chunk_size=50, safety_margin_ms=0, run_budget_s=0.0)
    seeded.db.collection(paths.RUNS).document(paths.STATS_RUN_DOC).delete()  # every component's stats are due
    first = scoring.score_observations(seeded, now(), settings=out_of_time)
    assert first.budget_exhausted and first.scored == 0
    assert first.stats_written == 3 and first.stats_full  # the stats are still refreshed, from what is scored
    run = seeded.db.collection(paths.RUNS).document(first.run_id).get().to_dict() or {}
    assert run["status"] == "done" and run["budgetExhausted"] is True
    second = scoring.score_observations(seeded, now(), settings=SMALL)
    assert not second.budget_exhausted and second.scored == 120
    assert seeded.stats.for_window(["router:gemini"], "1h")["router:gemini"]["n"] == 140


def test_the_budget_running_out_with_a_commit_in_flight_loses_and_repeats_nothing(seeded: FirestoreStore) -> None:
    items = normal(300)
    record_batch(seeded, {"observations": items})
    commits = {"n": 0}

    def count(name: str) -> None:
        if name == "before-chunk-commit":
            commits["n"] += 1

    # the clock passes the budget once the third commit is submitted: that commit is still in flight
    first = scoring.score_observations(seeded, now(), settings=scoring.ScoringSettings(chunk_size=40,
                                       safety_margin_ms=0, run_budget_s=100.0), checkpoint=count,
                                       monotonic=lambda: 1000.0 if commits["n"] >= 3 else 0.0)
    assert first.budget_exhausted and first.scored == 120 and first.chunks == 3
    assert seeded.buckets.pending() == 0
    second = scoring.score_observations(seeded, now(), settings=SMALL)
    assert second.scored == 180
    assert seeded.count(paths.REWARDS) == 300
    assert seeded.stats.for_window(["router:gemini"], "1h")["router:gemini"]["n"] == 300


def harmful_canary(store: FirestoreStore) -> None:
    """A 50 % canary of a version that favours gpt-5 while gpt-5 fails 90 % of its calls, scored."""
    store.configs.set("rollout", {"minSamples": 300, "minShadowSamples": 200, "guardrailMinSamples": 150,
                                 "safetyMinSamples": 100, "denyCanaryIfShadowWorse": False})
    router = shadow_then_canary(store, WORSE)
    send_traffic(store, router, 600, seed=6, world={**WORLD, "gpt-5": (0.1, 2600.0, 0.06)})
    scoring.score_observations(store, now())


def test_a_safety_rollback_runs_while_the_kill_switch_is_unreadable(seeded: FirestoreStore) -> None:
    harmful_canary(seeded)
    seeded.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": "true"}}, merge=False)
    [outcome] = rollouts.evaluate_rollouts(seeded, now())
    assert outcome.outcome == "rollback" and outcome.carried_out and "safety" in outcome.reason
    assert seeded.policies.policy("router-core", "1.0.1")["status"] == "rolled_back"
    run = [r.to_dict() for r in seeded.db.collection(paths.RUNS).stream() if r.id.startswith("evaluate-")]
    assert len(run) == 1 and run[0]["configErrors"] and run[0]["failedCount"] == 0


def test_an_explicit_kill_switch_still_freezes_every_decision(seeded: FirestoreStore) -> None:
    harmful_canary(seeded)
    seeded.configs.set("flags", {"learning": {"enabled": False}}, merge=False)
    [outcome] = rollouts.evaluate_rollouts(seeded, now())
    assert outcome.outcome == "rollback" and not outcome.carried_out


@pytest.mark.parametrize("extreme", [{"tau": 10}, {"tau": 1e-9}, {"alpha": 0.49, "srmAlpha": 1e-300},
                                     {"minSamples": 100_000_000, "safetyMinSamples": 100_000_000}])
def test_the_most_extreme_accepted_rollout_config_still_evaluates(seeded: FirestoreStore,
                                                                  extreme: dict[str, Any]) -> None:
    seeded.configs.set("rollout", {"minShadowSamples": 200, "denyCanaryIfShadowWorse": False})
    router = shadow_then_canary(seeded, WORSE)
    send_traffic(seeded, router, 300, seed=8)
    scoring.score_observations(seeded, now())
    seeded.configs.set("rollout", extreme)
    [outcome] = rollouts.evaluate_rollouts(seeded, now())
    assert outcome.outcome in ("continue", "rollback", "inconclusive"), outcome.reason
    assert not [a for a in seeded.alerts.recent() if a.get("kind") in ("config", "item_failed")]
