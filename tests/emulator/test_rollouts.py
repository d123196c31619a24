"""Shadow, canary, evaluation, promotion and rollback, and drift, against the real emulator."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from opsloop.domain.errors import FailedPrecondition, InvalidArgument
from opsloop.services import drift, rollouts, scoring, tuning
from opsloop.services.record import record_batch
from opsloop.services.routing import Router
from opsloop.store.firestore_store import FirestoreStore
from tests.helpers import just_now_ms

pytestmark = pytest.mark.emulator

# hidden truth of the simulated models: (success rate, median latency ms, cost)
WORLD = {"gpt-5": (0.70, 2600.0, 0.06), "gemini": (0.97, 600.0, 0.01), "claude": (0.95, 900.0, 0.02)}
BETTER = {"gpt-5": 0.1, "gemini": 0.55, "claude": 0.35}
WORSE = {"gpt-5": 0.9, "gemini": 0.05, "claude": 0.05}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def add_draft(store: FirestoreStore, version: str, weights: dict[str, float]) -> None:
    base = store.policies.policy("router-core", "1.0.0") or {}
    doc = {"id": "router-core", "version": version, "status": "draft", "createdBy": "test",
           "params": {**base["params"], "modelWeights": weights}}
    assert store.policies.create_version(doc, {"actor": "test", "action": "draft", "id": "router-core",
                                              "from": "1.0.0", "to": version})


def send_traffic(store: FirestoreStore, router: Router, n: int, seed: int, world: dict[str, Any] = WORLD) -> None:
    """Route ``n`` requests like a component would and record what happened."""
    rng = random.Random(seed)
    ts = just_now_ms()
    items = []
    for i in range(n):
        call = router.route(f"req-{seed}-{i}", "router-core")
        assert call.model is not None
        success_rate, median, cost = world[call.model]
        ok = rng.random() < success_rate
        items.append({
            "id": f"obs-{seed}-{i}", "ts": ts, "component": f"router:{call.model}",
            "outcome": "success" if ok else "failure", "durationMs": round(median * rng.lognormvariate(0, 0.3), 1),
            "costUsd": cost, "policyVersion": call.policy_version, "arm": call.arm,
            "propensity": call.model_propensity,
        })
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})


@pytest.fixture()
def rollout_store(seeded: FirestoreStore) -> FirestoreStore:
    seeded.configs.set("rollout", {"minSamples": 300, "minShadowSamples": 200, "guardrailMinSamples": 150,
                                  "safetyMinSamples": 100})
    return seeded


def shadow_then_canary(store: FirestoreStore, weights: dict[str, float], split: Any = 0.5) -> Router:
    add_draft(store, "1.0.1", weights)
    router = Router(store.policies, ttl_s=0)
    send_traffic(store, router, 600, seed=1)  # the champion logs decisions with propensities
    scoring.score_observations(store, now())
    shadow = rollouts.start_shadow(store, "router-core", "1.0.1", actor="alice")
    assert shadow.rollout is not None and shadow.shadow_estimate is not None
    assert shadow.rollout["stage"] == "shadow" and shadow.shadow_estimate["n"] == 600
    assert shadow.to_dict()["shadowEstimate"] == shadow.shadow_estimate and shadow.audit is not None
    rollouts.start_canary(store, "router-core", "1.0.1", split, actor="alice")
    return router


def test_shadow_estimates_offline_and_canary_needs_it(rollout_store: FirestoreStore) -> None:
    add_draft(rollout_store, "1.0.1", BETTER)
    add_draft(rollout_store, "1.0.2", WORSE)
    router = Router(rollout_store.policies, ttl_s=0)
    send_traffic(rollout_store, router, 100, seed=2)
    scoring.score_observations(rollout_store, now())
    rollouts.start_shadow(rollout_store, "router-core", "1.0.1", actor="alice")
    # live traffic keeps the champion during a shadow
    assert {router.choose_arm(f"r{i}", "router-core").version for i in range(200)} == {"1.0.0"}
    with pytest.raises(FailedPrecondition, match="already running"):
        rollouts.start_shadow(rollout_store, "router-core", "1.0.2", actor="alice")
    with pytest.raises(FailedPrecondition) as missing:
        rollouts.start_canary(rollout_store, "router-core", "1.0.1", 0.1, actor="alice")
    assert missing.value.details["code"] == "E_LEARN_DATA_MISSING"

    send_traffic(rollout_store, router, 500, seed=3)
    scoring.score_observations(rollout_store, now())
    outcomes = rollouts.evaluate_rollouts(rollout_store, now() + dt.timedelta(seconds=1))
    assert [o.stage for o in outcomes] == ["shadow"]
    est = (rollout_store.policies.policy("router-core", "1.0.1") or {})["shadowEstimate"]
    # the challenger shifts traffic to better models: its off-policy estimate beats the logged mean
    assert est["n"] == 600 and est["snips"] > est["loggedMean"] and est["snipsCi"][0] < est["snips"]
    with pytest.raises(InvalidArgument):
        rollouts.start_canary(rollout_store, "router-core", "1.0.1", 0.7, actor="alice")
    rollouts.start_canary(rollout_store, "router-core", "1.0.1", "canary20", actor="alice")
    head = rollout_store.policies.head("router-core")
    assert head.rollout is not None and head.rollout.stage == "canary" and head.rollout.split == 0.2
    share = sum(router.choose_arm(f"r{i}", "router-core").arm == "challenger" for i in range(5000)) / 5000
    assert abs(share - 0.2) < 0.02
    audit = [a for a in rollout_store.audit.log(policy_id="router-core") if a["action"] == "canary"]
    assert audit[0]["evidence"]["shadowEstimate"]["n"] == 600 and audit[0]["evidence"]["split"] == 0.2


def test_offline_estimate_clearly_worse_denies_the_canary(rollout_store: FirestoreStore) -> None:
    add_draft(rollout_store, "1.0.1", WORSE)
    router = Router(rollout_store.policies, ttl_s=0)
    send_traffic(rollout_store, router, 800, seed=4)
    scoring.score_observations(rollout_store, now())
    rollouts.start_shadow(rollout_store, "router-core", "1.0.1", actor="alice")
    with pytest.raises(FailedPrecondition) as denied:
        rollouts.start_canary(rollout_store, "router-core", "1.0.1", 0.1, actor="alice")
    assert denied.value.details["code"] == "E_LEARN_ROLLOUT_DENIED"
    assert (rollout_store.policies.policy("router-core", "1.0.1") or {})["status"] == "shadow"


def test_better_challenger_is_promoted_by_the_controller(rollout_store: FirestoreStore) -> None:
    rollout_store.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": True}})
    router = shadow_then_canary(rollout_store, BETTER)
    send_traffic(rollout_store, router, 1400, seed=5)
    scoring.score_observations(rollout_store, now())
    [outcome] = rollouts.evaluate_rollouts(rollout_store, now())
    assert outcome.outcome == "promote" and outcome.carried_out, outcome
    versions = {p["version"]: p["status"] for p in rollout_store.policies.versions("router-core")}
    assert versions == {"1.0.0": "archived", "1.0.1": "active"}
    head = rollout_store.policies.head("router-core")
    assert head.active == "1.0.1" and head.rollout is None
    rollout = rollout_store.rollouts.get(outcome.rollout_id) or {}
    assert rollout["status"] == "promoted" and rollout["endedBy"] == "rollout-controller"
    [ev] = rollout_store.rollouts.evaluations(outcome.rollout_id)
    assert ev["outcome"] == "promote" and ev["nChallenger"] >= 300 and ev["diff"] > 0 and ev["msprtP"] < 0.05
    promote_audit = next(a for a in rollout_store.audit.log(policy_id="router-core") if a["action"] == "promote")
    assert promote_audit["actor"] == "rollout-controller" and promote_audit["evidence"]["welchP"] < 0.05


def test_harmful_canary_is_rolled_back_at_once_even_without_auto_activation(rollout_store: FirestoreStore) -> None:
    # let a canary start against the offline evidence, to see the online safety net catch it
    rollout_store.configs.set("rollout", {"denyCanaryIfShadowWorse": False})
    router = shadow_then_canary(rollout_store, WORSE)
    outage = {**WORLD, "gpt-5": (0.1, 2600.0, 0.06)}  # gpt-5, which the challenger favours, is failing
    send_traffic(rollout_store, router, 600, seed=6, world=outage)
    scoring.score_observations(rollout_store, now())
    [outcome] = rollouts.evaluate_rollouts(rollout_store, now())
    assert outcome.outcome == "rollback" and outcome.carried_out and "safety" in outcome.reason
    versions = {p["version"]: p["status"] for p in rollout_store.policies.versions("router-core")}
    assert versions == {"1.0.0": "active", "1.0.1": "rolled_back"}
    assert rollout_store.policies.head("router-core").rollout is None
    assert {router.choose_arm(f"x{i}", "router-core").version for i in range(100)} == {"1.0.0"}


def test_promotion_waits_for_an_admin_without_auto_activation(rollout_store: FirestoreStore) -> None:
    router = shadow_then_canary(rollout_store, BETTER)
    send_traffic(rollout_store, router, 1400, seed=7)
    scoring.score_observations(rollout_store, now())
    [outcome] = rollouts.evaluate_rollouts(rollout_store, now())
    assert outcome.outcome == "promote" and not outcome.carried_out
    assert (rollout_store.policies.policy("router-core", "1.0.1") or {})["status"] == "canary"
    result = rollouts.promote(rollout_store, "router-core", "1.0.1", actor="alice")
    assert result.action == "promote" and (result.rollout or {})["status"] == "promoted"
    audit = next(a for a in rollout_store.audit.log(policy_id="router-core") if a["action"] == "promote")
    assert audit["actor"] == "alice" and audit["evidence"]["outcome"] == "promote"


def test_reject_ends_the_rollout_and_kill_switch_freezes_decisions(rollout_store: FirestoreStore) -> None:
    router = shadow_then_canary(rollout_store, BETTER)
    rollout_store.configs.set_flags({"enabled": False, "autoActivatePolicies": True}, actor="alice")
    send_traffic(rollout_store, router, 1400, seed=8)
    scoring.score_observations(rollout_store, now())  # scoring goes on
    [outcome] = rollouts.evaluate_rollouts(rollout_store, now())
    assert outcome.outcome == "promote" and not outcome.carried_out  # learning disabled: decide, don't act
    with pytest.raises(FailedPrecondition) as disabled:
        rollouts.promote(rollout_store, "router-core", "1.0.1", actor="alice")
    assert disabled.value.details["code"] == "E_LEARN_DISABLED"
    assert (rollout_store.policies.policy("router-core", "1.0.1") or {})["status"] == "canary"
    with pytest.raises(InvalidArgument):
        rollouts.reject(rollout_store, "router-core", "1.0.1", "", actor="alice")
    rollouts.reject(rollout_store, "router-core", "1.0.1", "business said no", actor="alice")
    assert (rollout_store.policies.policy("router-core", "1.0.1") or {})["status"] == "rejected"
    assert rollout_store.policies.head("router-core").rollout is None
    assert rollouts.evaluate_rollouts(rollout_store, now()) == []


def test_drift_alerts_once_per_episode_and_raises_the_exploration_floor(rollout_store: FirestoreStore) -> None:
    t = now()
    t_ms = int(t.timestamp() * 1000)
    rng = random.Random(9)

    def batch(n: int, ts: int, median: float) -> list[dict[str, Any]]:
        return [{"component": "router:claude", "outcome": "success", "durationMs": median * rng.lognormvariate(0, .2),
                 "costUsd": 0.02, "ts": ts - rng.randrange(0, 50 * 60_000)} for _ in range(n)]

    record_batch(rollout_store, {"observations": batch(400, t_ms - 2 * 24 * 3600_000, 900)})  # baseline
    record_batch(rollout_store, {"observations": batch(200, t_ms - 60_000, 900)})  # latest hour: normal
    scoring.score_observations(rollout_store, t)
    first = drift.check_drift(rollout_store, t)
    assert [d.drifting for d in first] == [[]]
    record_batch(rollout_store, {"observations": batch(300, t_ms - 60_000, 2500)})  # claude slows down
    scoring.score_observations(rollout_store, t)
    second = drift.check_drift(rollout_store, t)
    assert "latency" in second[0].drifting and "latency" in second[0].alerted
    third = drift.check_drift(rollout_store, t)
    assert "latency" in third[0].drifting and third[0].alerted == []  # same episode: no new alert
    alerts = rollout_store.alerts.recent()
    assert [(a["component"], a["metric"]) for a in alerts if a["metric"] == "latency"] == [("router:claude", "latency")]
    assert alerts[0]["p"] < 0.001

    # the tuner keeps exploring the drifting model: its floor is raised (the tuner without its change test:
    # with it, a probe replaces this raised floor, tests/emulator/test_recovery.py)
    rollout_store.configs.set("tuning", {"changeTest": False})
    record_batch(rollout_store, {"observations": [
        {"component": "router:gpt-5", "outcome": "failure", "durationMs": 4000, "ts": t_ms - 1000}] * 120})
    scoring.score_observations(rollout_store, t)
    out = tuning.auto_tune(rollout_store, t).outcomes[0]
    draft = rollout_store.policies.policy("router-core", out.version or "") or {}
    assert draft["evidence"]["raisedFloors"] == {"claude": 0.15}
    assert draft["params"]["modelWeights"]["claude"] >= 0.15


def test_router_caches_heads_for_the_ttl(rollout_store: FirestoreStore) -> None:
    clock = {"t": 0.0}
    router = Router(rollout_store.policies, ttl_s=300, clock=lambda: clock["t"])
    for i in range(50):
        router.route(f"r{i}", "router-core")
    assert router.reads == 2  # one head, one version's params
    add_draft(rollout_store, "1.0.1", BETTER)
    rollout_store.configs.set("rollout", {"minShadowSamples": 0})
    rollouts.start_shadow(rollout_store, "router-core", "1.0.1", actor="alice")
    rollouts.start_canary(rollout_store, "router-core", "1.0.1", 0.5, actor="alice")
    assert {router.choose_arm(f"r{i}", "router-core").version for i in range(100)} == {"1.0.0"}  # cached
    clock["t"] = 301.0
    assert {router.choose_arm(f"r{i}", "router-core").version for i in range(100)} == {"1.0.0", "1.0.1"}


def good_day_then_break(store: FirestoreStore) -> tuple[dt.datetime, int]:
    """20 hours of router traffic recorded up to now (on the 5-minute grid): gpt-5 good for 18 hours, then
    broken for the last hour (200 calls); gemini and claude steady. Returns the time and its ms."""
    t = now().replace(second=0, microsecond=0)
    t -= dt.timedelta(minutes=t.minute % 5)  # on the 5-minute grid, never in the future
    t_ms = int(t.timestamp() * 1000)
    rng = random.Random(21)

    def obs(model: str, n: int, start: int, span: int, ok: float, median: float) -> list[dict[str, Any]]:
        return [{"component": f"router:{model}", "outcome": "success" if rng.random() < ok else "failure",
                 "durationMs": round(median * rng.lognormvariate(0, 0.3), 1), "costUsd": 0.01,
                 "ts": start + rng.randrange(0, span)} for _ in range(n)]

    hour = 3_600_000
    items = (obs("gpt-5", 1500, t_ms - 20 * hour, 18 * hour, 0.99, 500)  # a good day ...
             + obs("gpt-5", 200, t_ms - hour + 60_000, hour - 120_000, 0.2, 500)  # ... then it breaks
             + obs("gemini", 400, t_ms - 20 * hour, 20 * hour, 0.85, 700)
             + obs("claude", 400, t_ms - 20 * hour, 20 * hour, 0.80, 1200))
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})
    return t, t_ms


def test_a_model_that_changed_is_judged_on_its_data_since_the_change(rollout_store: FirestoreStore) -> None:
    """After gpt-5 breaks, the tuner looks at gpt-5's hours since the break, not at its good day before.

    Two hours later the drift state has gone stale (too little traffic to re-test) and the raised floor
    is gone, but the change point still bounds gpt-5's data: 24 h of mostly good history does not win
    its traffic back.
    """
    t, t_ms = good_day_then_break(rollout_store)
    hour = 3_600_000
    # 2 % of the window's 2,500 observations; the drift check's change point and raised floor, as the tuner
    # uses them without its own change test (with it: tests/emulator/test_recovery.py)
    rollout_store.configs.set("tuning", {"explorationSamples": 50, "changeTest": False})
    scoring.score_observations(rollout_store, t)
    [gpt5] = [d for d in drift.check_drift(rollout_store, t) if d.component == "router:gpt-5"]
    assert "successRate" in gpt5.alerted
    assert rollout_store.drift.get_many(["router:gpt-5"])["router:gpt-5"]["changedAt"] == t_ms
    stats_24h = rollout_store.stats.for_window(["router:gpt-5", "router:gemini"], "24h")
    assert stats_24h["router:gpt-5"]["avgReward"] > stats_24h["router:gemini"]["avgReward"]  # the day hides it

    first = tuning.auto_tune(rollout_store, t).outcomes[0]
    draft = rollout_store.policies.policy("router-core", first.version or "") or {}
    start = t_ms - hour  # the start of the 1 h window that revealed the change
    assert draft["evidence"]["judgedSinceChange"] == {"router:gpt-5": start}
    assert draft["evidence"]["models"]["gpt-5"]["n"] == 200
    assert draft["evidence"]["raisedFloors"] == {"gpt-5": 0.15}
    assert draft["params"]["modelWeights"]["gpt-5"] == 0.15
    # the floor is sized by the whole window's traffic, not by the 1,000 left when gpt-5 counts since the change
    assert draft["evidence"]["explorationFloor"] == 0.02

    rollout_store.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": True}})
    later = t + dt.timedelta(hours=3)
    scoring.score_observations(rollout_store, later, now=later)  # three hours on: the clock moves too
    second = tuning.auto_tune(rollout_store, later, now=later).outcomes[0]
    assert second.action == "drafted" and second.activated
    weights = (rollout_store.policies.policy("router-core", second.version or "") or {})["params"]["modelWeights"]
    assert weights["gpt-5"] == 0.02  # the stale state no longer raises its floor; its new self keeps it low
    assert weights["gemini"] > 0.5


def test_a_sample_ratio_mismatch_freezes_the_canary_and_raises_an_alert(rollout_store: FirestoreStore) -> None:
    router = shadow_then_canary(rollout_store, BETTER)
    # a component that drops a third of the challenger's requests before reporting them: 50/50 looks like 40/60
    rng = random.Random(9)
    items = []
    for i in range(3000):
        call = router.route(f"srm-{i}", "router-core")
        if call.arm == "challenger" and rng.random() < 1 / 3:
            continue
        items.append({"id": f"srm-{i}", "ts": just_now_ms(), "component": f"router:{call.model}",
                      "outcome": "success", "durationMs": 500.0, "costUsd": 0.01,
                      "policyVersion": call.policy_version, "arm": call.arm})
    for i in range(0, len(items), 500):
        record_batch(rollout_store, {"observations": items[i : i + 500]})
    scoring.score_observations(rollout_store, now())
    [outcome] = rollouts.evaluate_rollouts(rollout_store, now())
    assert outcome.outcome == "inconclusive" and "sample ratio mismatch" in outcome.reason
    [alert] = [a for a in rollout_store.alerts.recent() if a.get("kind") == "srm"]
    assert alert["rolloutId"] == outcome.rollout_id and alert["srmP"] < 0.005
    running = rollout_store.rollouts.get(outcome.rollout_id) or {}
    assert running["srmP"] == alert["srmP"] and running["status"] == "running"


def test_the_tuners_change_test_finds_a_break_without_the_drift_check(rollout_store: FirestoreStore) -> None:
    """The same good day and break as above, with the tuner's own change test (the default) and no drift
    check run: the break is found, gpt-5 is judged on its data since it and gets no raised floor."""
    t, t_ms = good_day_then_break(rollout_store)
    hour = 3_600_000
    rollout_store.configs.set("tuning", {"explorationSamples": 50})
    scoring.score_observations(rollout_store, t)
    first = tuning.auto_tune(rollout_store, t).outcomes[0]
    draft = rollout_store.policies.policy("router-core", first.version or "") or {}
    shift = draft["evidence"]["shifts"]["router:gpt-5"]
    assert shift["z"] < 0 and t_ms - 2 * hour < shift["start"] <= t_ms - hour + 60_000
    assert draft["evidence"]["judgedSinceChange"]["router:gpt-5"] == shift["start"]
    assert 200 <= draft["evidence"]["models"]["gpt-5"]["n"] < 300  # the break, not the good day
    assert draft["evidence"]["raisedFloors"] == {}  # judged on 200: no probe, and no drift floor
    assert draft["params"]["modelWeights"]["gpt-5"] == draft["evidence"]["explorationFloor"]
