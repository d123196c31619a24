"""Tuning by experiment (domain/trials.py): experiment records, trials, and Optuna's next candidate."""

from __future__ import annotations

from typing import Any

from opsloop.domain import trials
from opsloop.domain.kinds import params as params_kind

DOC: dict[str, Any] = {
    "id": "autoscaler-core", "version": "1.0.0", "kind": "params",
    "params": {"targetCpu": 0.6, "minInstances": 2, "cooldownS": 60, "region": "eu"},
    "search": {"targetCpu": {"min": 0.3, "max": 0.9}, "minInstances": {"min": 1, "max": 10, "int": True},
               "cooldownS": {"choices": [30, 60, 120]}},
}
SPACE = params_kind.parse(DOC)


def reward(p: dict[str, Any]) -> float:
    """A smooth reward with its optimum at targetCpu 0.72, minInstances 4, cooldownS 120 (value 1.0)."""
    return 1.0 - 2.0 * (p["targetCpu"] - 0.72) ** 2 - 0.01 * (p["minInstances"] - 4) ** 2 \
        - {30: 0.08, 60: 0.04, 120: 0.0}.get(p["cooldownS"], 0.1)


def experiment(i: int, champion: dict[str, Any], challenger: dict[str, Any],
               outcome: str = "promoted") -> dict[str, Any]:
    rollout = {"rolloutId": f"autoscaler-core@1.0.{i}~ab", "id": "autoscaler-core", "version": f"1.0.{i}",
               "champion": f"1.0.{i - 1}", "split": 0.2, "startedAt": 1000 * i, "canaryStartedAt": 1000 * i,
               "endedAt": 1000 * i + 500, "status": outcome, "endedBy": "rollout-controller",
               "lastEvaluation": {"ts": 1000 * i + 400, "nChampion": 4000, "nChallenger": 1000, "diff": 0.01,
                                  "ciLow": 0.0, "ciHigh": 0.02, "reason": "r", "meanChampion": reward(champion),
                                  "meanChallenger": reward(challenger)}}
    return trials.record(rollout, {"params": challenger}, {"params": champion}, "params")


def test_an_experiment_record_has_both_arms_and_the_outcome() -> None:
    rec = experiment(1, DOC["params"], {**DOC["params"], "targetCpu": 0.7}, "rolled_back")
    assert rec["experimentId"] == "autoscaler-core@1.0.1~ab" and rec["outcome"] == "rolled_back"
    assert rec["params"]["targetCpu"] == 0.7 and rec["championParams"]["targetCpu"] == 0.6
    assert rec["nChallenger"] == 1000 and rec["meanChampion"] == reward(DOC["params"])
    assert rec["decidedBy"] == "rollout-controller" and rec["kind"] == "params"
    # a rollout rejected before any look has no means: recorded, but it teaches nothing
    bare = trials.record({"rolloutId": "x", "id": "p", "version": "1.0.1", "champion": "1.0.0",
                          "status": "rejected"}, {"params": {}}, None, "params")
    assert bare["meanChallenger"] is None and trials.trials_of([bare], SPACE.search) == []


def test_each_experiment_gives_two_trials_and_params_outside_the_space_are_left_out() -> None:
    a = experiment(1, DOC["params"], {**DOC["params"], "targetCpu": 0.7})
    b = experiment(2, {**DOC["params"], "targetCpu": 0.7}, {**DOC["params"], "cooldownS": 90})  # 90: not a choice
    got = trials.trials_of([b, a], SPACE.search)
    assert [t.params["targetCpu"] for t in got] == [0.6, 0.7, 0.7]  # in the order they ended
    broken = {**experiment(3, DOC["params"], {**DOC["params"], "targetCpu": 0.5}), "srm": True}
    assert trials.trials_of([a, broken], SPACE.search) == trials.trials_of([a], SPACE.search)  # untrusted data
    assert all(set(t.params) == {"targetCpu", "minInstances", "cooldownS"} for t in got)


def test_a_proposal_is_reproducible_inside_the_space_and_keeps_fixed_params() -> None:
    first = trials.propose("autoscaler-core", SPACE, [])
    again = trials.propose("autoscaler-core", SPACE, [])
    assert first is not None and again is not None and first.params == again.params
    assert first.seed == trials.seed_for("autoscaler-core", 0)
    assert first.params["region"] == "eu"
    assert params_kind.parse({**DOC, "params": first.params}).params == first.params  # valid in the space
    assert isinstance(first.params["minInstances"], int) and first.params["cooldownS"] in (30, 60, 120)
    assert first.params != DOC["params"]
    # a map read back from Firestore may list its keys in another order: the same proposal
    shuffled = params_kind.parse({**DOC, "search": dict(reversed(list(DOC["search"].items())))})
    assert trials.propose("autoscaler-core", shuffled, []) == first


def test_nothing_to_propose_without_a_search_space_or_once_every_point_was_tried() -> None:
    assert trials.propose("p", params_kind.parse({**DOC, "search": {}}), []) is None
    tiny = params_kind.parse({"params": {"mode": "a"}, "search": {"mode": {"choices": ["a", "b"]}}})
    tried = [trials.Trial({"mode": "b"}, 0.5, 100, "e1")]
    assert trials.propose("p", tiny, tried) is None
    assert trials.propose("p", tiny, [])  == trials.Proposal({"mode": "b"}, trials.seed_for("p", 0), [])


def test_an_experiment_that_measured_nothing_is_not_proposed_again() -> None:
    first = trials.propose("autoscaler-core", SPACE, [])
    assert first is not None
    empty = trials.record({"rolloutId": "e1", "id": "autoscaler-core", "version": "1.0.1", "champion": "1.0.0",
                           "status": "inconclusive"}, {"params": first.params}, {"params": DOC["params"]}, "params")
    again = trials.propose("autoscaler-core", SPACE, [], [empty])
    assert again is not None and again.params != first.params
    assert again.seed == trials.seed_for("autoscaler-core", 1) != first.seed


def test_tpe_finds_95_percent_of_the_optimum_within_15_experiments() -> None:
    """Noise-free trials of a smooth reward, both arms per experiment, the better arm kept (a promotion)."""
    champion: dict[str, Any] = dict(DOC["params"])
    records: list[dict[str, Any]] = []
    for i in range(1, 16):
        proposal = trials.propose("autoscaler-core", SPACE, trials.trials_of(records, SPACE.search), records)
        assert proposal is not None
        records.append(experiment(i, champion, proposal.params))
        if reward(proposal.params) > reward(champion):
            champion = proposal.params
    assert reward(champion) >= 0.95  # the optimum is 1.0; the seed params score 0.891
    assert reward(DOC["params"]) < reward(champion)
