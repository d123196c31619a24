"""The router policy's own parameters on the real emulator: the cost cap reads the models' stats, a
fallback chain is recorded and scored try by try, a cooling model is skipped, bad settings are refused."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest

from opsloop.client import Router
from opsloop.domain.errors import InvalidArgument
from opsloop.services import scoring
from opsloop.services.record import record_batch
from opsloop.services.seed import load_seed
from opsloop.store.firestore_store import FirestoreStore
from opsloop.store.policy_reader import FirestorePolicyReader
from tests.helpers import just_now_ms

pytestmark = pytest.mark.emulator

COST = {"gpt-5": 0.12, "gemini": 0.01, "claude": 0.03}  # the seeded router-core caps cost at 0.09


def record_costs(store: FirestoreStore) -> None:
    rng, ts = random.Random(3), just_now_ms()
    items = [{"id": f"c-{m}-{i}", "ts": ts, "component": f"router:{m}", "outcome": "success",
              "durationMs": 500.0, "costUsd": round(c * rng.uniform(0.9, 1.1), 5)}
             for m, c in COST.items() for i in range(40)]
    record_batch(store, {"observations": items})
    scoring.score_observations(store, dt.datetime.now(dt.UTC))


def test_a_model_whose_stats_cost_more_than_max_cost_is_not_routed_to(seeded: FirestoreStore) -> None:
    record_costs(seeded)
    router = Router(FirestorePolicyReader(seeded.db), ttl_s=60)
    picks = {router.route(f"req-{i}", "router-core").model for i in range(300)}
    assert picks == {"gemini", "claude"}
    status = {s.model: s for s in router.status("router-core")}
    assert status["gpt-5"].over_budget and status["gpt-5"].expected_cost_usd == pytest.approx(0.12, rel=0.05)
    assert status["gpt-5"].weight == 0.6 and not status["gemini"].over_budget


def test_a_fallback_chain_is_recorded_try_by_try_and_scored(seeded: FirestoreStore) -> None:
    router = Router(FirestorePolicyReader(seeded.db), ttl_s=60)
    ts, items, chains = just_now_ms(), [], []
    for i in range(20):
        call = router.route(f"fb-{i}", "router-core")  # seeded fallbackOn: timeout, rate_limit
        chain = []
        while call is not None:
            outcome = "rate_limit" if call.attempt == 0 else "success"
            items.append(call.observation(id=f"fb-{i}-{call.attempt}", ts=ts, outcome=outcome, durationMs=300.0,
                                          costUsd=0.01))
            chain.append(call.model)
            call = router.next(call, outcome)
        chains.append(chain)
    assert all(len(c) == 2 and c[0] != c[1] for c in chains)
    assert len(record_batch(seeded, {"observations": items}).created) == 40
    scoring.score_observations(seeded, dt.datetime.now(dt.UTC))
    first = seeded.db.collection("ops_observations").document("fb-0-0").get().to_dict() or {}
    second = seeded.db.collection("ops_observations").document("fb-0-1").get().to_dict() or {}
    assert first["component"] == f"router:{chains[0][0]}" and first["propensity"] > 0
    assert second["component"] == f"router:{chains[0][1]}" and second.get("propensity") is None
    assert second["meta"]["fallbackOf"] == chains[0][0] and second["meta"]["attempt"] == 1
    rewards = [seeded.db.collection("ops_rewards").document(f"fb-0-{k}").get() for k in (0, 1)]
    assert all(r.exists for r in rewards)
    # the rate limits count against the model (a cooldown followed), each try once in its model's stats
    counted = sum(int((seeded.db.collection("ops_stats").document(f"router:{m}~1h").get().to_dict() or {})
                      .get("samples", 0)) for m in ("gpt-5", "gemini", "claude"))
    assert counted == 40


def test_a_model_failing_three_times_in_a_minute_is_skipped_then_probed(seeded: FirestoreStore) -> None:
    clock = {"t": 100.0}
    router = Router(FirestorePolicyReader(seeded.db), ttl_s=60, clock=lambda: clock["t"])
    gpt = next(c for i in range(50) if (c := router.route(f"cd-{i}", "router-core")).model == "gpt-5")
    for _ in range(3):
        router.next(gpt, "failure")  # seeded: cooldownMs 30000, allowedFails default 3
    assert {s.model: s.state for s in router.status("router-core")}["gpt-5"] == "cooling"
    assert "gpt-5" not in {router.route(f"cd2-{i}", "router-core").model for i in range(200)}
    clock["t"] += 31
    assert "gpt-5" in {router.route(f"cd3-{i}", "router-core").model for i in range(50)}


def test_a_seed_with_bad_router_settings_is_refused_with_the_field_named(store: FirestoreStore,
                                                                         tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    seed = json.loads((root / "seed" / "ops_policies" / "router-core@1.0.0.json").read_text())
    for params, field in (({"fallbackOn": ["timeout", "overloaded"]}, "params.fallbackOn"),
                          ({"cooldownMs": -1}, "params.cooldownMs"), ({"maxCostUsd": 0}, "params.maxCostUsd")):
        (tmp_path / "ops_policies").mkdir(exist_ok=True)
        (tmp_path / "ops_policies" / "router-core@1.0.0.json").write_text(
            json.dumps({**seed, "params": {**seed["params"], **params}}))
        with pytest.raises(InvalidArgument) as err:
            load_seed(store, tmp_path)
        assert err.value.details["field"] == field and field in err.value.message
    assert store.policies.versions("router-core") == []  # nothing written


def test_a_version_stored_with_settings_the_schema_now_refuses_is_still_tuned(seeded: FirestoreStore) -> None:
    from opsloop.services import tuning

    seeded.db.collection("ops_policies").document("router-core@1.0.0").update(
        {"params.fallbackOn": "timeout"})  # stored before the router settings were checked
    rng, ts = random.Random(9), just_now_ms()
    items = [{"id": f"t-{m}-{i}", "ts": ts, "component": f"router:{m}",
              "outcome": "success" if rng.random() < ok else "failure", "durationMs": 600.0, "costUsd": 0.01}
             for m, ok in (("gpt-5", 0.3), ("gemini", 0.98), ("claude", 0.97)) for i in range(120)]
    record_batch(seeded, {"observations": items})
    scoring.score_observations(seeded, dt.datetime.now(dt.UTC))
    outcome = tuning.auto_tune(seeded, dt.datetime.now(dt.UTC)).outcomes[0]
    assert outcome.action == "drafted", outcome.reason
    draft = seeded.policies.policy("router-core", outcome.version or "") or {}
    assert draft["params"]["fallbackOn"] == "timeout"  # carried over as it was; the Router ignores it, logged
