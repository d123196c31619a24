"""The use cases on the in-memory store (``tests/fakes.py``): the loop's services without the emulator.

The emulator tests prove the Firestore repositories; ``tests/emulator/test_repo_contract.py`` proves the
fake behaves like them. These run the services end to end in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest

from opsloop.client import Router
from opsloop.domain import audit as audit_domain
from opsloop.domain import trials
from opsloop.domain.errors import FailedPrecondition, InvalidArgument
from opsloop.services import audit, experiments, flags, policies, rollouts, scoring, tuning
from opsloop.services.record import record_batch
from opsloop.services.seed import load_seed
from tests.fakes import MemoryStore, seeded_memory_store
from tests.helpers import AUTOSCALER, success_rate

ROOT = Path(__file__).resolve().parents[2]
POLICY = "autoscaler-core"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture()
def store() -> MemoryStore:
    return seeded_memory_store()


def observations(n: int, seed: int, component: str = "router:gpt-5", **extra: Any) -> list[dict[str, Any]]:
    rng, ts = random.Random(seed), int(now().timestamp() * 1000)
    return [{"id": f"o-{seed}-{i}", "ts": ts, "component": component,
             "outcome": "success" if rng.random() < 0.9 else "failure", "durationMs": rng.uniform(50, 500),
             "costUsd": 0.002, **extra} for i in range(n)]


def test_seed_record_and_score_on_the_fake(store: MemoryStore) -> None:
    assert {d["version"] for d in store.policies.versions("router-core")} == {"1.0.0"}
    assert load_seed(store, ROOT / "seed")[0].action == "kept"  # idempotent
    result = record_batch(store, {"observations": observations(120, seed=1)})
    assert len(result.ids) == 120
    run = scoring.score_observations(store, now())
    assert run.scored == 120 and store.buckets.pending() == 0
    [day] = [d for d in store.stats.all("router:gpt-5") if d["window"] == "24h"]
    assert day["n"] == 120 and 0 < day["successRate"] < 1
    again = scoring.score_observations(store, now())
    assert again.scored == 0  # exactly once: the cursor moved past them


def test_activation_rollback_and_an_intact_audit_chain(store: MemoryStore) -> None:
    draft = {**store.policies.versions("router-core")[0], "version": "1.0.1", "status": "draft",
             "params": {"modelWeights": {"gpt-5": 0.2, "gemini": 0.4, "claude": 0.4}}}
    assert store.policies.create_version(draft, {"actor": "t", "action": "draft", "id": "router-core"})
    changed = policies.activate(store, "router-core", "1.0.1", "alice")
    assert changed.active == "1.0.1" and changed.previous == "1.0.0"
    back = policies.rollback(store, "router-core", None, "bob")
    assert back.active == "1.0.0"
    assert [e["action"] for e in store.audit.log(policy_id="router-core")].count("rollback") == 1
    report = audit.verify_audit_chain(store)
    assert report.ok and report.chains[audit_domain.policy_chain("router-core")] == 4  # seed, draft, 2 changes


def test_the_kill_switch_stops_tuning_but_not_an_admin(store: MemoryStore) -> None:
    with pytest.raises(InvalidArgument):
        flags.set_learning_flags(store, {"enabled": "no"}, "alice")
    first = flags.set_learning_flags(store, {"enabled": False}, "alice")
    assert first.changed and first.to_dict() == {"learning": {"enabled": False, "autoActivatePolicies": False},
                                                 "previous": {"enabled": True, "autoActivatePolicies": False},
                                                 "changed": True}
    assert flags.set_learning_flags(store, {"enabled": False}, "alice").changed is False
    result = tuning.auto_tune(store, now())
    assert not result.enabled and result.outcomes == []
    assert store.policies.create_version(AUTOSCALER, {"actor": "t", "action": "seed", "id": POLICY})
    draft = {**AUTOSCALER, "version": "1.0.1", "status": "draft", "params": {**AUTOSCALER["params"], "cooldownS": 30}}
    assert store.policies.create_version(draft, {"actor": "t", "action": "draft", "id": POLICY})
    with pytest.raises(FailedPrecondition, match="learning is disabled"):
        experiments.start_experiment(store, POLICY, "1.0.1", 0.2, "alice")
    assert policies.activate(store, POLICY, "1.0.1", "alice").active == "1.0.1"


def test_a_params_policy_learns_by_experiment_on_the_fake(store: MemoryStore) -> None:
    assert store.policies.create_version(AUTOSCALER, {"actor": "t", "action": "seed", "id": POLICY})
    store.configs.set("rollout", {"minSamples": 300, "guardrailMinSamples": 150, "safetyMinSamples": 100})
    flags.set_learning_flags(store, {"enabled": True, "autoActivatePolicies": True}, "alice")

    first = next(o for o in tuning.auto_tune(store, now()).outcomes if o.policy_id == POLICY)
    assert first.action == "drafted" and first.version == "1.0.1" and first.experiment_started
    draft = store.policies.policy(POLICY, "1.0.1") or {}
    assert draft["status"] == "canary" and draft["evidence"]["seed"] == trials.seed_for(POLICY, 0)
    rollout = store.policies.head(POLICY).rollout
    assert rollout is not None and rollout.split == 0.2

    router, rng = Router(store.policies, ttl_s=0), random.Random(1)
    for batch in range(5):  # the arms' split is salted by the random rollout id: traffic until a decision
        ts, items = int(now().timestamp() * 1000), []
        for i in range(3000):
            arm = router.choose_arm(f"req-{batch}-{i}", POLICY)
            ok = rng.random() < success_rate(router.params(POLICY, arm.version))
            items.append({"id": f"obs-{batch}-{i}", "ts": ts, "component": "autoscaler:core",
                          "outcome": "success" if ok else "failure", "durationMs": round(rng.uniform(50, 150), 1),
                          "costUsd": 0.001, "policyVersion": f"{POLICY}@{arm.version}", "arm": arm.arm})
        for i in range(0, len(items), 500):
            record_batch(store, {"observations": items[i : i + 500]})
        scoring.score_observations(store, now())
        [outcome] = [o for o in rollouts.evaluate_rollouts(store, now() + dt.timedelta(seconds=1))
                     if o.policy_id == POLICY]
        if outcome.outcome != "continue":
            break
    assert outcome.outcome in ("promote", "rollback") and outcome.carried_out, outcome.reason

    [record] = experiments.experiments(store, POLICY)
    assert record["experimentId"] == rollout.rollout_id and record["nChallenger"] > 300
    truth = success_rate(draft["params"]) - success_rate(AUTOSCALER["params"])
    assert (record["meanChallenger"] - record["meanChampion"]) * truth > 0
    assert experiments.sync(store) == 0

    second = next(o for o in tuning.auto_tune(store, now()).outcomes if o.policy_id == POLICY)
    assert second.action == "drafted" and second.version == "1.0.2"
    evidence = (store.policies.policy(POLICY, "1.0.2") or {})["evidence"]
    assert [t["experimentId"] for t in evidence["trials"]] == [record["experimentId"]] * 2


def test_each_component_is_scored_and_labelled_under_its_own_reward(store: MemoryStore) -> None:
    store.configs.set("reward_config", {"rules": [{"match": "router:*", "version": "quality-1", "terms": [
        {"name": "quality", "source": "metric:judge", "weight": 0.6, "direction": "higher",
         "range": {"min": 0, "max": 10}, "missing": "skip"},
        {"name": "latency", "source": "durationMs", "weight": 0.4, "direction": "lower", "bound": 1000}]}]})
    judged = observations(50, seed=7, component="router:gpt-5", metrics={"judge": 8})
    plain = observations(50, seed=8, component="autoscaler:core")
    record_batch(store, {"observations": judged + plain})
    assert store.observations.docs["o-7-0"]["metrics"] == {"judge": 8}
    scoring.score_observations(store, now())
    router_reward = store.observations.rewards["o-7-0"]
    assert router_reward["rewardVersion"] == "quality-1" and set(router_reward["details"]) == {"quality", "latency"}
    assert store.observations.rewards["o-8-0"]["rewardVersion"] == "1.0.0"
    versions = {(d["component"], d["window"]): d["rewardVersion"] for d in store.stats.all()}
    assert versions[("router:gpt-5", "24h")] == "quality-1" and versions[("autoscaler:core", "24h")] == "1.0.0"
    with pytest.raises(InvalidArgument):
        record_batch(store, {"observations": observations(1, seed=9, metrics={"judge": float("nan")})})


def test_a_component_below_its_retrain_threshold_alerts_once_and_tunes_what_governs_it(store: MemoryStore) -> None:
    from opsloop.services import retrain

    failing = [{**o, "outcome": "timeout", "policyVersion": "router-core@1.0.0"}
               for o in observations(60, seed=11, component="router:gpt-5")]
    healthy = [{**o, "outcome": "success", "durationMs": 50.0}
               for o in observations(60, seed=12, component="router:claude")]
    assert store.policies.create_version(AUTOSCALER, {"actor": "t", "action": "seed", "id": POLICY})
    scaler = [{**o, "outcome": "failure", "policyVersion": f"{POLICY}@1.0.0"}
              for o in observations(40, seed=13, component="autoscaler:core")]
    few = observations(5, seed=14, component="router:gemini", outcome="failure")
    record_batch(store, {"observations": failing + healthy + scaler + few})
    scoring.score_observations(store, now())
    at = now() + dt.timedelta(seconds=1)
    found = {r.component: r for r in retrain.check_retrain(store, at)}
    assert set(found) == {"router:gpt-5", "autoscaler:core"}  # claude is fine, gemini has too few
    gpt = found["router:gpt-5"]
    assert gpt.alerted and gpt.policies == ["router-core"] and gpt.avg_reward < gpt.threshold == 0.4
    assert [t.split(":")[0] for t in gpt.tuned] == ["router-core"]  # a tuning run of that policy only
    runs = [r for r in store.runs.runs.values() if r.get("kind") == "tune"]
    assert len(runs) == 1  # one tuning run for every policy the alerted components name
    assert found["autoscaler:core"].policies == [POLICY]  # from the versions its observations name
    [alert] = [a for a in store.alerts.recent() if a.get("component") == "router:gpt-5"]
    assert alert["kind"] == "retrain" and alert["policies"] == ["router-core"]
    again = {r.component: r for r in retrain.check_retrain(store, at)}
    assert not again["router:gpt-5"].alerted and again["router:gpt-5"].tuned == []  # once per hour


QUALITY_PROPOSAL: dict[str, Any] = {"rules": [{"match": "router:*", "version": "quality-1", "terms": [
    {"name": "quality", "source": "metric:judge", "weight": 0.8, "direction": "higher",
     "range": {"min": 0, "max": 10}, "missing": "skip"},
    {"name": "cost", "source": "costUsd", "weight": 0.2, "direction": "lower", "bound": 0.1},
    {"name": "grounding", "source": "metric:grounded", "weight": 0.0, "direction": "higher",
     "range": {"min": 0, "max": 1}, "missing": "skip"}]}]}


def test_what_if_re_scores_history_under_a_proposal_and_writes_nothing(store: MemoryStore) -> None:
    from opsloop.services import whatif

    fast = [{**o, "durationMs": 100.0, "outcome": "success", "metrics": {"judge": 2}}
            for o in observations(200, seed=21, component="router:gpt-5")]
    good = [{**o, "durationMs": 3500.0, "outcome": "success", "metrics": {"judge": 9}}
            for o in observations(200, seed=22, component="router:claude")]
    other = observations(50, seed=23, component="autoscaler:core")
    record_batch(store, {"observations": fast + good + other})
    scoring.score_observations(store, now())
    rewards, stats = dict(store.observations.rewards), [dict(d) for d in store.stats.all()]
    seen: list[int] = []
    result = whatif.what_if(store, QUALITY_PROPOSAL, days=1, progress=seen.append, page_size=100)
    assert result.observations == 450 and sum(seen) == 450
    by = {c.component: c for c in result.components}
    assert by["router:gpt-5"].before > by["router:claude"].before  # today: latency decides
    assert by["router:claude"].after > by["router:gpt-5"].after  # proposed: quality decides
    assert by["router:claude"].version_after == "quality-1" and by["autoscaler:core"].version_after == "1.0.0"
    assert by["autoscaler:core"].before == by["autoscaler:core"].after  # its formula did not change
    [policy] = result.policies
    assert [m for m, _ in policy.ranking_before][:2] == ["gpt-5", "claude"]
    assert policy.ranking_after[0][0] == "claude"
    assert policy.draft_after is not None and policy.draft_after["claude"] > policy.draft_after["gpt-5"]
    assert any("metric:grounded" in w for w in result.warnings)  # a term over a metric nobody sends
    assert not any("metric:judge" in w for w in result.warnings)
    assert store.observations.rewards == rewards and [dict(d) for d in store.stats.all()] == stats  # nothing written
    bad_term = {"name": "q", "source": "metric:Bad", "weight": 1, "direction": "higher", "range": {"min": 0, "max": 1}}
    with pytest.raises(InvalidArgument, match=r"rules\.0\.terms\.0"):
        whatif.what_if(store, {"rules": [{"match": "router:*", "version": "x", "terms": [bad_term]}]})
    with pytest.raises(InvalidArgument, match="days"):
        whatif.what_if(store, QUALITY_PROPOSAL, days=0)


def _router_traffic(store: MemoryStore) -> None:
    models = {"gpt-5": 0.99, "gemini": 0.97, "claude": 0.9}
    items = []
    for k, (m, ok) in enumerate(models.items()):
        items += [{**o, "outcome": "success" if i < ok * 400 else "failure", "durationMs": 300.0}
                  for i, o in enumerate(observations(400, seed=40 + k, component=f"router:{m}"))]
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})
    scoring.score_observations(store, now())


def test_the_router_tuner_judges_models_by_their_own_formulas_min_acceptable(store: MemoryStore) -> None:
    _router_traffic(store)
    lenient = next(o for o in tuning.auto_tune(store, now()).outcomes if o.policy_id == "router-core")
    assert "minAcceptable" not in lenient.reason  # every model clears the default 0.55
    strict_store = MemoryStore()
    load_seed(strict_store, ROOT / "seed")
    strict_store.configs.set("scoring", {"safetyMarginMs": 0})
    strict_store.configs.set("reward_config", {"rules": [{"match": "router:*", "version": "strict-1",
                                                          "thresholds": {"minAcceptable": 0.95, "retrain": 0.4}}]})
    _router_traffic(strict_store)
    strict = next(o for o in tuning.auto_tune(strict_store, now()).outcomes if o.policy_id == "router-core")
    assert "minAcceptable 0.95" in strict.reason, strict.reason


def test_the_scoring_schedule_tunes_on_a_change_and_survives_a_failing_tuner(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firebase_functions import scheduler_fn

    from opsloop.handlers import deps, schedules

    monkeypatch.setattr(deps, "store", lambda: store)
    at = now().replace(second=0, microsecond=0)
    at -= dt.timedelta(minutes=at.minute % 5)
    event = scheduler_fn.ScheduledEvent(job_name="score", schedule_time=at)
    seen: list[dt.datetime] = []

    def tune_on_change(s: Any, schedule_time: dt.datetime) -> tuning.TuneRunResult:
        assert s is store
        seen.append(schedule_time)
        return tuning.TuneRunResult(enabled=True)

    monkeypatch.setattr(tuning, "tune_on_change", tune_on_change)
    schedules.score(event)
    assert seen == [at]  # after scoring, event-driven tuning runs at the same schedule time

    def broken(s: Any, schedule_time: dt.datetime) -> tuning.TuneRunResult:
        raise RuntimeError("tuner down")

    monkeypatch.setattr(tuning, "tune_on_change", broken)
    schedules.score(event)  # the scoring run's work is done: a failing tuner is recorded, not raised
    assert any("tuneOnChange" in str(a.get("job")) and "tuner down" in str(a.get("error"))
               for a in store.alerts.recent())
