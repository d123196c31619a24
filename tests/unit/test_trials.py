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


def test_each_point_measured_is_one_trial_and_params_outside_the_space_are_left_out() -> None:
    a = experiment(1, DOC["params"], {**DOC["params"], "targetCpu": 0.7})
    b = experiment(2, {**DOC["params"], "targetCpu": 0.7}, {**DOC["params"], "cooldownS": 90})  # 90: not a choice
    got = trials.trials_of([b, a], SPACE.search)
    assert [t.params["targetCpu"] for t in got] == [0.6, 0.7]  # one per point, in the order first measured
    assert [t.experiment_id for t in got] == [a["experimentId"], b["experimentId"]]  # the last that measured it
    assert got[1].n == 1000 + 4000  # challenger of a, champion of b
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
    assert trials.propose("p", tiny, [trials.Trial({"mode": "b"}, 0.5, 100, "e1")]) is None
    assert trials.propose("p", tiny, [], [{"mode": "b"}]) is None
    assert trials.propose("p", tiny, [])  == trials.Proposal({"mode": "b"}, trials.seed_for("p", 0), [])


def test_a_candidate_tried_before_is_not_proposed_again_measured_or_not() -> None:
    first = trials.propose("autoscaler-core", SPACE, [])
    assert first is not None
    # its experiment measured nothing, or an admin turned the draft down before it reached traffic
    again = trials.propose("autoscaler-core", SPACE, [], [first.params], attempt=1)
    assert again is not None and again.params != first.params
    assert again.seed == trials.seed_for("autoscaler-core", 1) != first.seed


def test_a_small_discrete_space_is_tried_point_by_point_until_exhausted() -> None:
    """TPE returns to the best region of a small discrete space; an untried point is taken instead."""
    space = params_kind.parse({"params": {"mode": 0}, "search": {"mode": {"choices": [0, 1, 2, 3, 4, 5]}}})
    tried: list[dict[str, Any]] = []
    learned: list[trials.Trial] = []
    for i in range(5):
        proposal = trials.propose("p", space, learned, tried, attempt=i)
        assert proposal is not None, f"gave up after {i} of 5 untried choices"
        tried.append(proposal.params)
        learned.append(trials.Trial({"mode": proposal.params["mode"]}, 1.0 - 0.1 * i, 500, f"e{i}"))
    assert sorted(p["mode"] for p in tried) == [1, 2, 3, 4, 5]
    assert trials.propose("p", space, learned, tried, attempt=5) is None


def test_an_int_given_as_a_whole_float_is_the_same_point() -> None:
    space = params_kind.parse({"params": {"n": 2.0}, "search": {"n": {"min": 1, "max": 3, "int": True}}})
    assert space.params == {"n": 2} and isinstance(space.params["n"], int)
    seen = set()
    for i in range(2):
        proposal = trials.propose("p", space, [], [{"n": v} for v in seen], attempt=i)
        assert proposal is not None and proposal.params["n"] != 2  # never the champion against itself
        seen.add(proposal.params["n"])
    assert seen == {1, 3} and trials.propose("p", space, [], [{"n": 1.0}, {"n": 3}], attempt=2) is None


def test_an_arm_measured_on_few_requests_teaches_nothing() -> None:
    rec = experiment(1, DOC["params"], {**DOC["params"], "targetCpu": 0.7})
    few = {**rec, "nChallenger": trials.MIN_TRIAL_SAMPLES - 1}
    assert [t.params["targetCpu"] for t in trials.trials_of([few], SPACE.search)] == [0.6]


def test_tpe_finds_95_percent_of_the_optimum_within_15_experiments() -> None:
    """Noise-free trials of a smooth reward, both arms per experiment, the better arm kept (a promotion)."""
    champion: dict[str, Any] = dict(DOC["params"])
    records: list[dict[str, Any]] = []
    for i in range(1, 16):
        proposal = trials.propose("autoscaler-core", SPACE, trials.trials_of(records, SPACE.search),
                                  [r["params"] for r in records], attempt=len(records))
        assert proposal is not None
        records.append(experiment(i, champion, proposal.params))
        if reward(proposal.params) > reward(champion):
            champion = proposal.params
    assert reward(champion) >= 0.95  # the optimum is 1.0; the seed params score 0.891
    assert reward(DOC["params"]) < reward(champion)


def measured(i: int, champion: dict[str, Any], challenger: dict[str, Any], mean_champion: float,
             mean_challenger: float, outcome: str = "promoted") -> dict[str, Any]:
    return {**experiment(i, champion, challenger, outcome), "meanChampion": mean_champion,
            "meanChallenger": mean_challenger}


def test_values_come_from_paired_differences_not_from_the_hour_an_experiment_ran() -> None:
    """A daily cycle: the evening experiment's arms both read 0.3 higher. B beats A by 0.02 in the morning,
    C loses to A by 0.01 in the evening; by absolute means C would look best."""
    a, b, c = (dict(DOC["params"], targetCpu=x) for x in (0.5, 0.6, 0.7))
    records = [measured(1, a, b, 0.50, 0.52, "promoted"), measured(2, b, a, 0.82, 0.80, "rolled_back"),
               measured(3, b, c, 0.81, 0.78, "rolled_back")]
    got = {t.params["targetCpu"]: t.value for t in trials.trials_of(records, SPACE.search)}
    assert got[0.6] > got[0.5] > got[0.7]
    assert abs((got[0.6] - got[0.5]) - 0.02) < 1e-3 and abs((got[0.6] - got[0.7]) - 0.03) < 1e-3
    # the level is the arms' average (anchors), not any one hour's
    assert 0.5 < sum(got.values()) / 3 < 0.82


def test_a_challenger_rolled_back_despite_a_better_reward_counts_as_worse() -> None:
    a, b = dict(DOC["params"], targetCpu=0.5), dict(DOC["params"], targetCpu=0.6)
    got = {t.params["targetCpu"]: t.value for t in
           trials.trials_of([measured(1, a, b, 0.50, 0.53, "rolled_back")], SPACE.search)}
    assert got[0.6] < got[0.5] and abs((got[0.5] - got[0.6]) - 0.03) < 1e-3
    promoted = {t.params["targetCpu"]: t.value for t in
                trials.trials_of([measured(1, a, b, 0.50, 0.53, "promoted")], SPACE.search)}
    assert promoted[0.6] > promoted[0.5]
