"""The pure parts of bench/autoscaler_sim.py: its hidden world and the baselines' candidates (no emulator)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from bench import autoscaler_sim as sim
from opsloop.domain.kinds import params as params_kind
from opsloop.domain.reward import RewardConfig, score


@pytest.fixture(scope="module")
def best() -> tuple[dict[str, Any], float]:
    return sim.optimum(step=0.005)


def test_optimum_is_interior(best: tuple[dict[str, Any], float]) -> None:
    params, reward = best
    cpu, instances = float(params["targetCpu"]), int(params["minInstances"])
    assert sim.SEARCH["targetCpu"]["min"] + 0.1 < cpu < sim.SEARCH["targetCpu"]["max"] - 0.1
    assert sim.SEARCH["minInstances"]["min"] < instances < sim.SEARCH["minInstances"]["max"]
    assert params["cooldownS"] == 60  # the middle choice: 30 flaps, 120 reacts too late
    assert 0.8 < reward < 1.0
    # the dense search's optimum beats each of its neighbours and every corner of the space
    for dt_, dm in ((0.02, 0), (-0.02, 0), (0, 1), (0, -1)):
        assert sim.true_reward({**params, "targetCpu": cpu + dt_, "minInstances": instances + dm}) < reward
    for t in (0.3, 0.9):
        for m in (1, 10):
            for c in sim.COOLDOWNS:
                assert sim.true_reward({"targetCpu": t, "minInstances": m, "cooldownS": c}) < 0.97 * reward


def test_seed_params_are_clearly_suboptimal(best: tuple[dict[str, Any], float]) -> None:
    share = sim.true_reward(sim.SEED_PARAMS) / best[1]
    assert 0.84 < share < 0.90


def test_daily_cycle_moves_the_reward() -> None:
    """The seed params are fine at the peak and time out at night: the tuner cannot ignore the hour."""
    assert sim.load(2) == pytest.approx(0.6) and sim.load(14) == pytest.approx(1.4)
    night, peak = sim.expected_reward(sim.SEED_PARAMS, 2), sim.expected_reward(sim.SEED_PARAMS, 13)
    assert peak - night > 0.2


def test_closed_form_matches_simulated_requests() -> None:
    cfg = RewardConfig()
    rng = np.random.default_rng(3)
    for params, hour in ((sim.SEED_PARAMS, 2), (sim.SEED_PARAMS, 13), ({"targetCpu": 0.5, "minInstances": 7,
                                                                        "cooldownS": 30}, 20)):
        draws = [sim.outcome_of(params, hour, float(u), float(zl), float(zc))
                 for u, zl, zc in zip(rng.random(20_000), rng.standard_normal(20_000), rng.standard_normal(20_000),
                                      strict=True)]
        mean = sum(score(o, lat, cost, cfg).score for o, lat, cost in draws) / len(draws)
        assert mean == pytest.approx(sim.expected_reward(params, hour, cfg), abs=0.006)
        assert all(o in ("success", "failure", "timeout") and lat <= sim.TIMEOUT_MS and cost >= 0
                   for o, lat, cost in draws)


def test_random_candidates_stay_in_the_space_and_fit_the_policy_kind() -> None:
    space = params_kind.parse(sim.policy_doc(0))
    for seed in range(5):
        points = sim.random_candidates(seed, 40)
        assert len(points) == 40 and all(sim.in_space(p) for p in points)
        for p in points:
            assert all(not space.search[k].problem(p[k]) for k in space.search)
        assert points == sim.random_candidates(seed, 40)  # reproducible per seed
    assert sim.random_candidates(0, 15) != sim.random_candidates(1, 15)
    cpus = [p["targetCpu"] for s in range(20) for p in sim.random_candidates(s, 15)]
    assert min(cpus) < 0.35 and max(cpus) > 0.85  # the whole range is drawn


def test_grid_candidates_stay_in_the_space_in_one_fixed_order() -> None:
    space = params_kind.parse(sim.policy_doc(0))
    grid = sim.grid_candidates(15)
    assert len(grid) == 15 and grid == sim.grid_candidates(15)
    assert len({tuple(sorted(p.items())) for p in grid}) == 15  # no point twice
    assert sim.SEED_PARAMS not in grid
    for p in grid:
        assert sim.in_space(p) and all(not space.search[k].problem(p[k]) for k in space.search)
    full = sim.grid_points(3)
    assert {p["targetCpu"] for p in full} == {0.4, 0.6, 0.8}
    assert {p["minInstances"] for p in full} == {3, 6, 9}
    assert {p["cooldownS"] for p in full} == set(sim.COOLDOWNS)
    big = sim.grid_candidates(40)  # a budget beyond the 3-level grid takes a finer one
    assert len(big) == 40 and all(sim.in_space(p) for p in big)


def test_reach_and_local_hours() -> None:
    assert sim.reach([0.5, 0.9, 0.96, 0.94], 0.95) == 3
    assert sim.reach([0.5, 0.9], 0.95) is None
    assert [sim.local_hour(s, 0) for s in range(5)] == [6, 13, 20, 3, 10]
    assert sim.local_hour(2, 5) == 1
    assert math.isclose(sim.true_reward(sim.SEED_PARAMS),
                        sum(sim.expected_reward(sim.SEED_PARAMS, h) for h in range(24)) / 24)
