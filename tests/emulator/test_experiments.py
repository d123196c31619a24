"""Policy kinds on the real emulator: a params policy tuned by experiment, its registry, its bad input."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest

from opsloop.domain import trials
from opsloop.domain.errors import FailedPrecondition, InvalidArgument
from opsloop.services import experiments, rollouts, scoring, seed, tuning
from opsloop.services.record import record_batch
from opsloop.services.routing import Router
from opsloop.store.firestore_store import FirestoreStore
from tests.helpers import AUTOSCALER, just_now_ms, success_rate

pytestmark = pytest.mark.emulator

POLICY = "autoscaler-core"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def send(store: FirestoreStore, router: Router, n: int, seed_: int) -> None:
    """Requests as a component would handle them: assigned an arm, run with that version's params."""
    rng, ts, items = random.Random(seed_), just_now_ms(), []
    for i in range(n):
        arm = router.choose_arm(f"req-{seed_}-{i}", POLICY)
        params = router.params(POLICY, arm.version)
        ok = rng.random() < success_rate(params)
        items.append({"id": f"obs-{seed_}-{i}", "ts": ts, "component": "autoscaler:core",
                      "outcome": "success" if ok else "failure", "durationMs": round(rng.uniform(50, 150), 1),
                      "costUsd": 0.001, "policyVersion": f"{POLICY}@{arm.version}", "arm": arm.arm})
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})


@pytest.fixture()
def loop(seeded: FirestoreStore) -> FirestoreStore:
    assert seeded.policies.create_version(AUTOSCALER, {"actor": "test", "action": "seed", "id": POLICY,
                                                     "from": None, "to": "1.0.0"})
    seeded.configs.set("rollout", {"minSamples": 300, "guardrailMinSamples": 150, "safetyMinSamples": 100})
    seeded.configs.set_flags({"enabled": True, "autoActivatePolicies": True}, actor="alice")
    return seeded


def tune_autoscaler(store: FirestoreStore) -> tuning.TuneOutcome:
    result = tuning.auto_tune(store, now())
    return next(o for o in result.outcomes if o.policy_id == POLICY)


def test_a_params_policy_learns_by_experiment(loop: FirestoreStore) -> None:
    first = tune_autoscaler(loop)
    assert first.action == "drafted" and first.version == "1.0.1" and first.experiment_started
    draft = loop.policies.policy(POLICY, "1.0.1") or {}
    assert draft["kind"] == "params" and draft["search"] == AUTOSCALER["search"] and draft["status"] == "canary"
    assert draft["evidence"]["seed"] == trials.seed_for(POLICY, 0) and draft["evidence"]["trials"] == []
    head = loop.policies.head(POLICY)
    assert head.rollout is not None and head.rollout.stage == "canary" and head.rollout.split == 0.2
    # one experiment at a time
    assert tune_autoscaler(loop).reason == "experiment 1.0.1 is running"

    router = Router(loop.policies, ttl_s=0)
    for round_ in range(4):  # the split is salted by the random rollout id: traffic until a decision
        send(loop, router, 6000 if round_ == 0 else 3000, seed_=1 + round_)
        scoring.score_observations(loop, now())
        [outcome] = [o for o in rollouts.evaluate_rollouts(loop, now() + dt.timedelta(seconds=1))
                     if o.policy_id == POLICY]
        if outcome.outcome != "continue":
            break
    assert outcome.outcome in ("promote", "rollback") and outcome.carried_out, outcome.reason
    assert experiments.experiment(loop, head.rollout.rollout_id) is not None  # written with the decision
    [record] = experiments.experiments(loop, POLICY)
    assert record["experimentId"] == head.rollout.rollout_id and record["kind"] == "params"
    assert record["outcome"] == {"promote": "promoted", "rollback": "rolled_back"}[outcome.outcome]
    assert record["params"] == draft["params"] and record["championParams"] == AUTOSCALER["params"]
    assert record["nChallenger"] > 300 and record["decidedBy"] == "rollout-controller"
    truth = success_rate(draft["params"]) - success_rate(AUTOSCALER["params"])
    assert (record["meanChallenger"] - record["meanChampion"]) * truth > 0  # the experiment saw the truth's sign
    assert experiments.experiment(loop, record["experimentId"]) == record
    assert experiments.sync(loop) == 0  # recorded once

    second = tune_autoscaler(loop)
    assert second.action == "drafted" and second.version == "1.0.2" and second.experiment_started
    evidence = (loop.policies.policy(POLICY, "1.0.2") or {})["evidence"]
    assert [t["experimentId"] for t in evidence["trials"]] == [record["experimentId"]] * 2
    assert evidence["seed"] == trials.seed_for(POLICY, 1) and evidence["sampler"] == trials.SAMPLER


def test_an_experiment_without_a_decision_ends_inconclusive_after_max_duration(loop: FirestoreStore) -> None:
    loop.configs.set("rollout", {"minSamples": 300, "maxDurationHours": 0.001})  # 3.6 s
    assert tune_autoscaler(loop).experiment_started
    [outcome] = [o for o in rollouts.evaluate_rollouts(loop, now() + dt.timedelta(seconds=30))
                 if o.policy_id == POLICY]
    assert outcome.outcome == "inconclusive" and outcome.expired and outcome.carried_out
    assert "ended as inconclusive" in outcome.reason
    assert (loop.policies.policy(POLICY, "1.0.1") or {})["status"] == "rejected"
    assert loop.policies.head(POLICY).rollout is None
    [record] = experiments.experiments(loop, POLICY)
    assert record["outcome"] == "inconclusive" and record["nChallenger"] == 0
    assert [a["action"] for a in loop.audit.log(policy_id=POLICY)][:2] == ["conclude", "canary"]


def test_a_params_draft_skips_the_shadow_and_goes_straight_to_canary(loop: FirestoreStore) -> None:
    loop.configs.set_flags({"enabled": True, "autoActivatePolicies": False}, actor="alice")
    drafted = tune_autoscaler(loop)
    assert drafted.action == "drafted" and not drafted.experiment_started
    assert tune_autoscaler(loop).reason == "draft 1.0.1 waits for its experiment"
    with pytest.raises(FailedPrecondition, match="no shadow stage"):
        rollouts.start_shadow(loop, POLICY, "1.0.1", actor="alice")
    started = rollouts.start_canary(loop, POLICY, "1.0.1", "canary10", actor="alice")
    assert started.rollout is not None and started.rollout["stage"] == "canary" and started.rollout["split"] == 0.1
    rollouts.reject(loop, POLICY, "1.0.1", "not this week", actor="alice")
    record = experiments.experiment(loop, started.rollout["rolloutId"])
    assert record is not None and record["outcome"] == "rejected" and record["decidedBy"] == "alice"

    # turned down before traffic too: the next draft tries something else, not the same params again
    drafted = tune_autoscaler(loop)
    assert drafted.action == "drafted" and drafted.version == "1.0.2"
    rollouts.reject(loop, POLICY, "1.0.2", "no", actor="alice")
    third = tune_autoscaler(loop)
    assert third.version == "1.0.3"
    params = [(loop.policies.policy(POLICY, v) or {})["params"] for v in ("1.0.1", "1.0.2", "1.0.3")]
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 3
    assert (loop.policies.policy(POLICY, "1.0.3") or {})["evidence"]["seed"] == trials.seed_for(POLICY, 2)


def test_seed_refuses_a_bad_params_policy_and_writes_nothing(store: FirestoreStore, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "ops_policies").mkdir()
    (tmp_path / "config" / "flags.json").write_text(json.dumps({"learning": {"enabled": True}}))
    bad = {**AUTOSCALER, "search": {**AUTOSCALER["search"], "maxInstances": {"min": 1, "max": 5}}}
    (tmp_path / "ops_policies" / f"{POLICY}@1.0.0.json").write_text(json.dumps(bad))
    with pytest.raises(InvalidArgument) as err:
        seed.load_seed(store, tmp_path)
    assert err.value.details["field"] == "search.maxInstances" and "autoscaler-core@1.0.0.json" in err.value.message
    assert store.policies.policy(POLICY, "1.0.0") is None and not store.configs.get("flags")


def test_the_cli_lists_and_shows_experiments(loop: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> None:
    from opsloop import cli

    assert cli.main(["experiments", "list"]) == 0
    assert "no experiments yet" in capsys.readouterr().out
    loop.configs.set("rollout", {"minSamples": 300, "maxDurationHours": 0.001})
    assert tune_autoscaler(loop).experiment_started
    rollouts.evaluate_rollouts(loop, now() + dt.timedelta(seconds=30))
    assert cli.main(["experiments", "list", "--id", POLICY]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith(POLICY))
    assert "1.0.0 → 1.0.1" in row and "inconclusive" in row and "targetCpu=" in row
    assert cli.main(["experiments", "list", "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert cli.main(["experiments", "show", doc["experimentId"]]) == 0
    assert json.loads(capsys.readouterr().out) == doc
    assert cli.main(["experiments", "show", "nope"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "E_LEARN_NOT_FOUND" in err and "nope" in err


def test_export_experiments_to_parquet(loop: FirestoreStore, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    from opsloop import cli

    loop.configs.set("rollout", {"minSamples": 300, "maxDurationHours": 0.001})
    assert tune_autoscaler(loop).experiment_started
    rollouts.evaluate_rollouts(loop, now() + dt.timedelta(seconds=30))
    out = tmp_path / "experiments.parquet"
    assert cli.main(["export", "--experiments", "--out", str(out), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["rows"] == 1 and manifest["outcomes"] == {"inconclusive": 1}
    assert json.loads((tmp_path / "experiments.parquet.manifest.json").read_text())["fileSha256"]
    [row] = pq.read_table(out).to_pylist()
    draft = loop.policies.policy(POLICY, "1.0.1") or {}
    assert row["id"] == POLICY and row["outcome"] == "inconclusive" and row["kind"] == "params"
    assert json.loads(row["params"]) == draft["params"] and json.loads(row["championParams"]) == AUTOSCALER["params"]
    # a window that holds no experiment writes an empty file; observations still need --since
    assert cli.main(["export", "--experiments", "--since", "2020-01-01", "--until", "2020-01-02", "--out",
                     str(out)]) == 0
    assert pq.read_table(out).num_rows == 0 and "wrote 0 experiments" in capsys.readouterr().out
    assert cli.main(["export", "--out", str(out)]) == cli.EXIT_USAGE
    assert "--since is required" in capsys.readouterr().err
