"""Router weight proposals (domain/tuning.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain.tuning import (
    ArmStats,
    Piece,
    Proposal,
    TuningConfig,
    differ_p_value,
    equivalent,
    exploration_floor,
    find_shift,
    normalize,
    prob_best,
    propose_weights,
    recent,
)

CFG = TuningConfig(method="multiplicative")  # the seeded config/tuning values, with the earlier method
THOMPSON = TuningConfig()  # the default method
BOTH = pytest.mark.parametrize("cfg", [CFG, THOMPSON], ids=["multiplicative", "thompson"])
SEEDED_WEIGHTS = {"gpt-5": 0.6, "gemini": 0.25, "claude": 0.15}
UNIFORM = {"gpt-5": 1 / 3, "gemini": 1 / 3, "claude": 1 / 3}
MIN_ACCEPTABLE = 0.55


def assert_well_formed(p: Proposal, current: dict[str, float], cfg: TuningConfig = CFG) -> None:
    assert 0.0 < p.floor <= cfg.exploration_floor
    floor = min(p.floor, 1 / len(current))
    assert set(p.weights) == set(current)
    assert sum(p.weights.values()) == pytest.approx(1.0, abs=1e-9)
    for m, w in p.weights.items():
        assert w >= floor - 1e-9, (m, w)
    assert [e.model for e in p.evidence] == list(current)
    assert p.l1_change >= cfg.min_change
    assert p.l1_change == pytest.approx(
        sum(abs(p.weights[m] - normalize(current)[m]) for m in current), abs=1e-6
    )


# --- the design's case -----------------------------------------------------------------------------------


@BOTH
def test_failing_champion_loses_traffic_to_untried_models(cfg: TuningConfig) -> None:
    stats = {"gpt-5": ArmStats(n=120, avg_reward=0.0, reward_std=0.0)}
    p = propose_weights(SEEDED_WEIGHTS, stats, MIN_ACCEPTABLE, cfg)
    assert p is not None
    assert_well_formed(p, SEEDED_WEIGHTS)
    assert p.weights["gpt-5"] < 0.2  # cut hard
    assert p.weights["gemini"] > 0.25
    assert p.weights["claude"] > 0.15
    assert p.weights["gemini"] > p.weights["claude"]  # the untried models keep their relative order
    assert p.below_acceptable == ("gpt-5",)
    assert "gpt-5" in p.reason and "minAcceptable" in p.reason
    ev = {e.model: e for e in p.evidence}
    assert (ev["gpt-5"].eligible, ev["gpt-5"].n, ev["gpt-5"].avg_reward, ev["gpt-5"].old_weight) == (
        True, 120, 0.0, 0.6)
    assert (ev["gemini"].eligible, ev["gemini"].n, ev["gemini"].avg_reward) == (False, 0, None)
    assert ev["gemini"].new_weight == p.weights["gemini"]


@BOTH
def test_repeated_rounds_keep_cutting_a_failing_model_down_to_the_floor(cfg: TuningConfig) -> None:
    stats = {"gpt-5": ArmStats(n=500, avg_reward=0.0, reward_std=0.0)}
    weights = dict(SEEDED_WEIGHTS)
    for _ in range(10):
        p = propose_weights(weights, stats, MIN_ACCEPTABLE, cfg)
        if p is None:
            break
        assert p.weights["gpt-5"] <= weights["gpt-5"]
        weights = p.weights
    assert weights["gpt-5"] == pytest.approx(cfg.exploration_floor, abs=0.01)


# --- invariants ------------------------------------------------------------------------------------------

models = st.lists(st.sampled_from(["gpt-5", "gemini", "claude", "llama", "mistral", "qwen"]),
                  min_size=1, max_size=6, unique=True)
arm = st.builds(
    ArmStats,
    n=st.integers(min_value=0, max_value=2000),
    avg_reward=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)),
    reward_std=st.one_of(st.none(), st.floats(min_value=0.0, max_value=0.5)),
)


@BOTH
@settings(max_examples=150, deadline=None)
@given(data=st.data(), names=models)
def test_proposals_sum_to_one_and_respect_the_floor(data: st.DataObject, names: list[str], cfg: TuningConfig) -> None:
    current = {m: data.draw(st.floats(min_value=0.0, max_value=10.0), label=f"w[{m}]") for m in names}
    stats = {m: data.draw(arm, label=f"stats[{m}]") for m in names if data.draw(st.booleans())}
    p = propose_weights(current, stats, MIN_ACCEPTABLE, cfg)
    if p is not None:
        assert_well_formed(p, current)
        traffic = sum(s.n for s in stats.values())
        assert p.floor == min(cfg.exploration_floor, math.ceil(cfg.exploration_samples / traffic * 1e4) / 1e4)


@BOTH
def test_no_eligible_model_means_no_proposal(cfg: TuningConfig) -> None:
    assert propose_weights(SEEDED_WEIGHTS, {}, MIN_ACCEPTABLE, cfg) is None
    sparse = {m: ArmStats(n=cfg.min_samples - 1, avg_reward=0.0) for m in SEEDED_WEIGHTS}
    assert propose_weights(SEEDED_WEIGHTS, sparse, MIN_ACCEPTABLE, cfg) is None
    no_reward = {m: ArmStats(n=500, avg_reward=None) for m in SEEDED_WEIGHTS}
    assert propose_weights(SEEDED_WEIGHTS, no_reward, MIN_ACCEPTABLE, cfg) is None


@BOTH
def test_ineligible_model_is_treated_like_one_without_data(cfg: TuningConfig) -> None:
    base = {"gpt-5": ArmStats(n=120, avg_reward=0.0, reward_std=0.0)}
    with_sparse = {**base, "claude": ArmStats(n=5, avg_reward=0.0, reward_std=0.0)}
    a = propose_weights(SEEDED_WEIGHTS, base, MIN_ACCEPTABLE, cfg)
    b = propose_weights(SEEDED_WEIGHTS, with_sparse, MIN_ACCEPTABLE, cfg)
    assert a is not None and b is not None
    assert a.weights == b.weights
    assert a.l1_change == b.l1_change
    assert b.below_acceptable == ("gpt-5",)  # claude's 5 failures do not put it on the list
    claude = next(e for e in b.evidence if e.model == "claude")
    assert (claude.eligible, claude.n, claude.avg_reward) == (False, 5, 0.0)
    assert b.weights["claude"] > SEEDED_WEIGHTS["claude"]  # it still gains traffic from the failing model


def test_min_samples_is_the_eligibility_threshold() -> None:
    cfg = TuningConfig(min_samples=50)
    at = propose_weights(UNIFORM, {"gpt-5": ArmStats(n=50, avg_reward=0.0)}, MIN_ACCEPTABLE, cfg)
    below = propose_weights(UNIFORM, {"gpt-5": ArmStats(n=49, avg_reward=0.0)}, MIN_ACCEPTABLE, cfg)
    assert at is not None and at.weights["gpt-5"] < 1 / 3
    assert below is None


@BOTH
def test_stats_of_models_outside_the_policy_are_ignored(cfg: TuningConfig) -> None:
    stats = {"gpt-5": ArmStats(n=120, avg_reward=0.0), "llama": ArmStats(n=900, avg_reward=1.0)}
    p = propose_weights(SEEDED_WEIGHTS, stats, MIN_ACCEPTABLE, cfg)
    q = propose_weights(SEEDED_WEIGHTS, {"gpt-5": stats["gpt-5"]}, MIN_ACCEPTABLE, cfg)
    assert p is not None and q is not None
    assert set(p.weights) == set(SEEDED_WEIGHTS)
    assert p.weights == q.weights


# --- noise -----------------------------------------------------------------------------------------------


def _sampled(rng: np.random.Generator, mean: float, n: int) -> ArmStats:
    x = np.clip(rng.normal(mean, 0.2, n), 0.0, 1.0)
    return ArmStats(n=n, avg_reward=float(x.mean()), reward_std=float(x.std(ddof=1)))


@pytest.mark.parametrize(
    "current",
    [UNIFORM, SEEDED_WEIGHTS, {"gpt-5": 0.5, "gemini": 0.3, "claude": 0.2}],
    ids=["uniform", "seeded", "50-30-20"],
)
@BOTH
def test_identical_noisy_models_propose_nothing(current: dict[str, float], cfg: TuningConfig) -> None:
    spurious = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        stats = {m: _sampled(rng, 0.7, 300) for m in current}
        p = propose_weights(current, stats, MIN_ACCEPTABLE, cfg)
        if p is not None:
            spurious.append((seed, p.weights, p.reason))
    assert not spurious, f"{len(spurious)}/40 spurious proposals, first: {spurious[0]}"


@BOTH
def test_exactly_equal_models_propose_nothing(cfg: TuningConfig) -> None:
    # BUG: the exploration mix floor + (1 - K*floor) * w moves any non-uniform weighting toward uniform,
    # so a proposal is made with no evidence at all (l1 0.08 for the seeded weights)
    stats = {m: ArmStats(n=1000, avg_reward=0.7, reward_std=0.0) for m in SEEDED_WEIGHTS}
    assert propose_weights(SEEDED_WEIGHTS, stats, MIN_ACCEPTABLE, cfg) is None


def test_noise_shrinks_the_move() -> None:
    def l1(std: float) -> float:
        stats = {
            "gpt-5": ArmStats(n=60, avg_reward=0.9, reward_std=std),
            "gemini": ArmStats(n=60, avg_reward=0.6, reward_std=std),
            "claude": ArmStats(n=60, avg_reward=0.6, reward_std=std),
        }
        p = propose_weights(UNIFORM, stats, MIN_ACCEPTABLE, CFG)
        return 0.0 if p is None else p.l1_change

    moves = [l1(s) for s in (0.0, 0.1, 0.3, 0.5)]
    assert moves == sorted(moves, reverse=True)
    assert moves[0] > moves[-1]
    assert l1(5.0) == 0.0  # nothing clears that much noise


def test_clearly_better_model_gains_weight() -> None:
    rng = np.random.default_rng(7)
    stats = {"gpt-5": _sampled(rng, 0.9, 400), "gemini": _sampled(rng, 0.6, 400), "claude": _sampled(rng, 0.6, 400)}
    p = propose_weights(UNIFORM, stats, MIN_ACCEPTABLE, CFG)
    assert p is not None
    assert_well_formed(p, UNIFORM)
    assert p.weights["gpt-5"] > 0.5
    assert p.weights["gemini"] < 1 / 3 and p.weights["claude"] < 1 / 3
    assert p.below_acceptable == ()
    assert p.reason == "a better weighting is clear of noise"


def test_small_moves_are_not_proposed() -> None:
    stats = {
        "gpt-5": ArmStats(n=500, avg_reward=0.71, reward_std=0.0),
        "gemini": ArmStats(n=500, avg_reward=0.70, reward_std=0.0),
        "claude": ArmStats(n=500, avg_reward=0.70, reward_std=0.0),
    }
    assert propose_weights(UNIFORM, stats, MIN_ACCEPTABLE, CFG) is None  # l1 ~0.02 < 0.05
    p = propose_weights(UNIFORM, stats, MIN_ACCEPTABLE, TuningConfig(min_change=0.01))
    assert p is not None and p.weights["gpt-5"] > 1 / 3


@BOTH
def test_floor_is_capped_by_one_over_k(cfg: TuningConfig) -> None:
    names = [f"m{i}" for i in range(25)]  # 25 * 0.05 > 1, so the floor becomes 1/25
    current = {m: 1.0 for m in names}
    stats = {"m0": ArmStats(n=1000, avg_reward=0.0, reward_std=0.0)}
    p = propose_weights(current, stats, MIN_ACCEPTABLE, cfg)
    assert p is None  # every weight is pinned to the floor 1/25: there is nothing to move


# --- thompson: weights are each model's probability of being the best ---------------------------------


def test_probability_of_being_best_matches_the_normal_formula() -> None:
    w = {"a": 0.5, "b": 0.5}
    p = prob_best(w, {"a": 0.80, "b": 0.75}, {"a": 0.03, "b": 0.04}, {"a", "b"})
    exact = 0.5 * (1 + math.erf(0.05 / math.hypot(0.03, 0.04) / math.sqrt(2)))  # P(a - b > 0)
    assert p["a"] == pytest.approx(exact, abs=0.01) and p["a"] + p["b"] == pytest.approx(1.0)
    assert prob_best(w, {"a": 0.8, "b": 0.8}, {"a": 0.02, "b": 0.02}, {"a", "b"})["a"] == pytest.approx(0.5, abs=0.01)
    assert p == prob_best(w, {"a": 0.80, "b": 0.75}, {"a": 0.03, "b": 0.04}, {"a", "b"})  # reproducible


def test_models_not_judged_share_their_chance_by_current_weight() -> None:
    w = {"a": 0.4, "b": 0.45, "c": 0.15}
    p = prob_best(w, {"a": 0.2, "b": 0.55, "c": 0.55}, {"a": 0.01, "b": 0.0, "c": 0.0}, {"a"})
    assert p["a"] == pytest.approx(0.0, abs=1e-9)
    assert p["b"] == pytest.approx(0.75) and p["c"] == pytest.approx(0.25)


def test_thompson_moves_to_a_clearly_better_model_in_one_step() -> None:
    rng = np.random.default_rng(7)
    stats = {"gpt-5": _sampled(rng, 0.9, 400), "gemini": _sampled(rng, 0.8, 400), "claude": _sampled(rng, 0.6, 400)}
    p = propose_weights(SEEDED_WEIGHTS | {"gpt-5": 0.2, "gemini": 0.65}, stats, MIN_ACCEPTABLE, THOMPSON)
    assert p is not None
    assert p.weights == {"gpt-5": 0.9, "gemini": 0.05, "claude": 0.05}  # the rest of the mass is the floors
    assert "probability of being the best" in p.reason


def test_thompson_keeps_sharing_between_models_it_cannot_tell_apart() -> None:
    stats = {"gpt-5": ArmStats(n=200, avg_reward=0.80, reward_std=0.3),
             "gemini": ArmStats(n=200, avg_reward=0.79, reward_std=0.3),
             "claude": ArmStats(n=2000, avg_reward=0.40, reward_std=0.3)}
    p = propose_weights(UNIFORM, stats, MIN_ACCEPTABLE, THOMPSON)
    assert p is not None and p.weights["claude"] == 0.05
    assert 0.4 < p.weights["gpt-5"] < 0.6 and 0.35 < p.weights["gemini"] < 0.55  # 0.01 apart, se 0.02 each


def test_thompson_moves_less_the_noisier_the_evidence() -> None:
    def gpt5_weight(std: float) -> float:
        stats = {"gpt-5": ArmStats(n=60, avg_reward=0.8, reward_std=std),
                 "gemini": ArmStats(n=60, avg_reward=0.7, reward_std=std),
                 "claude": ArmStats(n=60, avg_reward=0.7, reward_std=std)}
        p = propose_weights(UNIFORM, stats, MIN_ACCEPTABLE, THOMPSON)
        return 1 / 3 if p is None else p.weights["gpt-5"]

    weights = [gpt5_weight(s) for s in (0.05, 0.15, 0.25, 0.35)]
    assert weights == sorted(weights, reverse=True) and weights[0] == 0.9 and weights[-1] < 0.8
    assert gpt5_weight(5.0) == 1 / 3  # nothing clears that much noise


def test_the_test_that_models_differ_has_its_nominal_size() -> None:
    """Under identical models the p-value is uniform, so the gate opens at rate alpha, for any k."""
    for k in (2, 4, 6):
        ps = []
        for seed in range(1000):
            rng = np.random.default_rng(seed)
            arms = {f"m{i}": _sampled(rng, 0.7, 300) for i in range(k)}
            ps.append(differ_p_value({m: a.avg_reward or 0.0 for m, a in arms.items()},
                                     {m: (a.reward_std or 0.0) / math.sqrt(a.n) for m, a in arms.items()}, set(arms)))
        assert np.mean(np.array(ps) < 0.05) == pytest.approx(0.05, abs=0.02), k
        assert np.mean(np.array(ps) < 0.001) <= 0.005, k


def test_models_that_differ_are_told_apart() -> None:
    means, ses = {"a": 0.83, "b": 0.88, "c": 0.76}, {"a": 0.025, "b": 0.004, "c": 0.025}
    assert differ_p_value(means, ses, {"a", "b", "c"}) < 1e-5  # the world of bench/tuning_sim.py
    assert differ_p_value({"a": 0.2, "b": 0.55}, {"a": 0.05, "b": 0.0}, {"a"}) < 1e-6  # below the not-judged
    assert differ_p_value({"a": 0.55, "b": 0.55}, {"a": 0.05, "b": 0.0}, {"a"}) == 0.5  # one-sided, at the level
    assert differ_p_value({"a": 0.95, "b": 0.55}, {"a": 0.001, "b": 0.0}, {"a"}) == 1.0  # above it: no evidence
    assert differ_p_value({"a": 0.7, "b": 0.7}, {"a": 0.01, "b": 0.01}, {"a", "b"}) == 1.0
    assert differ_p_value({"a": 0.7, "b": 0.75}, {"a": 0.001, "b": 0.001}, {"a", "b"}) < 1e-12


def test_a_new_sparse_model_does_not_open_the_gate_for_equal_good_models() -> None:
    """Judged models above minAcceptable are no evidence about how to split traffic among themselves."""
    stats = {m: ArmStats(n=2000, avg_reward=r, reward_std=0.2) for m, r in
             (("gpt-5", 0.901), ("gemini", 0.899), ("claude", 0.897))}
    current = {"gpt-5": 0.3, "gemini": 0.3, "claude": 0.3, "llama": 0.1}
    assert propose_weights(current, stats, MIN_ACCEPTABLE, THOMPSON) is None
    with_new = {**stats, "llama": ArmStats(n=10, avg_reward=0.95, reward_std=0.1)}
    assert propose_weights(current, with_new, MIN_ACCEPTABLE, THOMPSON) is None


def test_identical_rewards_do_not_make_a_small_sample_certain() -> None:
    stats = {"gpt-5": ArmStats(n=50, avg_reward=1.0, reward_std=0.0),
             "gemini": ArmStats(n=20_000, avg_reward=0.998, reward_std=0.0)}
    assert propose_weights({"gpt-5": 0.5, "gemini": 0.5}, stats, MIN_ACCEPTABLE, THOMPSON) is None


def test_the_method_is_validated() -> None:
    with pytest.raises(ValueError, match="method"):
        TuningConfig(method="greedy")
    with pytest.raises(ValueError, match="alpha"):
        TuningConfig(alpha=0.0)


def test_method_and_alpha_are_read_from_config_tuning() -> None:
    from opsloop.domain.config import parse

    cfg = parse("tuning", {"method": "multiplicative", "alpha": 0.01, "explorationSamples": 0})
    assert (cfg.method, cfg.alpha, cfg.exploration_samples) == ("multiplicative", 0.01, 0)
    default = parse("tuning", {})
    assert (default.method, default.alpha, default.exploration_samples) == ("thompson", 0.001, 150)
    assert (default.change_test, default.shift_alpha, default.shift_min_samples, default.probe_floor) == (
        True, 0.001, 5, 0.15)
    off = parse("tuning", {"changeTest": False, "shiftAlpha": 0.01, "shiftMinSamples": 10, "probeFloor": 0.2})
    assert (off.change_test, off.shift_alpha, off.shift_min_samples, off.probe_floor) == (False, 0.01, 10, 0.2)


@pytest.mark.parametrize("doc", [{"changeTest": "false"}, {"shiftAlpha": 0}, {"shiftMinSamples": 0},
                                 {"probeFloor": 0.5}])
def test_change_test_settings_are_validated(doc: dict) -> None:
    from opsloop.domain.config import ConfigInvalid, parse

    with pytest.raises(ConfigInvalid):
        parse("tuning", doc)


# --- the exploration floor follows traffic -----------------------------------------------------------------

BUSY = {"gpt-5": ArmStats(n=6000, avg_reward=0.88, reward_std=0.2),  # 6,400 observations in the window
        "gemini": ArmStats(n=200, avg_reward=0.70, reward_std=0.2),
        "claude": ArmStats(n=200, avg_reward=0.72, reward_std=0.2)}


def settle(stats: dict[str, ArmStats], cfg: TuningConfig, raised: dict[str, float] | None = None
           ) -> tuple[dict[str, float], list[float]]:
    """Apply proposals round after round (the multiplicative method moves in steps) until none is made."""
    weights, floors = dict(SEEDED_WEIGHTS), []
    for _ in range(30):
        p = propose_weights(weights, stats, MIN_ACCEPTABLE, cfg, raised_floors=raised)
        if p is None:
            break
        weights, floors = p.weights, [*floors, p.floor]
    return weights, floors


@BOTH
def test_a_busy_router_explores_only_what_keeps_every_model_judged(cfg: TuningConfig) -> None:
    weights, floors = settle(BUSY, cfg)
    assert floors and set(floors) == {0.0235}  # 150 / 6400 = 0.0234375: 150 observations of each next window
    assert weights["gemini"] == pytest.approx(0.0235, abs=0.002)
    assert weights["claude"] == pytest.approx(0.0235, abs=0.002)
    assert weights["gpt-5"] > 0.94


@BOTH
def test_a_quiet_router_or_a_fixed_floor_explores_at_exploration_floor(cfg: TuningConfig) -> None:
    quiet = {m: ArmStats(n=s.n // 40, avg_reward=s.avg_reward, reward_std=s.reward_std) for m, s in BUSY.items()}
    fixed = dataclasses.replace(cfg, exploration_samples=0)
    for stats, config in ((quiet, cfg), (BUSY, fixed)):
        weights, floors = settle(stats, config)
        if not floors:  # the quiet window's 150 + 5 + 5 observations may not tell the models apart
            assert stats is quiet and config.method == "thompson"
            continue
        assert set(floors) == {cfg.exploration_floor}
        assert min(weights.values()) == pytest.approx(cfg.exploration_floor, abs=0.002)
    # the traffic can be given (the service passes the whole window's when a model is judged since a change)
    told = propose_weights(SEEDED_WEIGHTS, BUSY, MIN_ACCEPTABLE, cfg, window_traffic=12_800)
    assert told is not None and told.floor == 0.0118  # 150 / 12,800 = 0.01171875, rounded up
    assert exploration_floor(cfg, 0) == cfg.exploration_floor  # no traffic seen: the configured floor
    assert exploration_floor(cfg, 1_000_000) == 0.0002  # 150 / 1e6, on the weights' 1e-4 grid


@BOTH
def test_raised_floors_still_lift_a_model_above_the_traffic_floor(cfg: TuningConfig) -> None:
    # (small steps allowed: the multiplicative method would otherwise stop within minChange of the floor)
    weights, floors = settle(BUSY, dataclasses.replace(cfg, min_change=0.001), raised={"gemini": 0.2})
    assert floors
    assert weights["gemini"] == pytest.approx(0.2, abs=0.002)
    assert weights["claude"] == pytest.approx(0.0235, abs=0.002)


# --- helpers ---------------------------------------------------------------------------------------------


def test_equivalent() -> None:
    assert equivalent({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5})
    assert equivalent({"a": 2, "b": 2}, {"a": 0.5, "b": 0.5})  # compared after normalising
    assert equivalent({"a": 0.6, "b": 0.4}, {"a": 0.61, "b": 0.39})
    assert not equivalent({"a": 0.6, "b": 0.4}, {"a": 0.63, "b": 0.37})
    assert not equivalent({"a": 0.6, "b": 0.4}, {"a": 0.62, "b": 0.38})  # the bound is strict
    assert equivalent({"a": 0.6, "b": 0.4}, {"a": 0.63, "b": 0.37}, tolerance=0.05)
    assert not equivalent({"a": 0.5, "b": 0.5}, {"a": 0.5, "c": 0.5})
    assert not equivalent({"a": 1.0}, {"a": 0.5, "b": 0.5})


def test_normalize() -> None:
    assert normalize({"a": 3, "b": 1}) == {"a": 0.75, "b": 0.25}
    assert normalize({"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    assert normalize({"a": 0.2}) == {"a": 1.0}


@pytest.mark.parametrize("bad", [{"a": -0.1, "b": 1.0}, {"a": math.nan}, {"a": math.inf, "b": 1.0}, {}])
def test_normalize_rejects_bad_weights(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        normalize(bad)


def test_propose_rejects_bad_current_weights() -> None:
    with pytest.raises(ValueError):
        propose_weights({"a": -1.0, "b": 2.0}, {"a": ArmStats(100, 0.5)}, MIN_ACCEPTABLE, CFG)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_samples": 0}, {"exploration_samples": -1},
     {"exploration_floor": -0.01}, {"exploration_floor": 0.5}, {"learning_rate": 0.0},
     {"learning_rate": math.nan}, {"min_change": 0.0}, {"min_change": math.inf},
     {"shift_alpha": 0.0}, {"shift_min_samples": 0}, {"probe_floor": 0.5}],
)
def test_tuning_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TuningConfig(**kwargs)


# --- recovery and change detection -------------------------------------------------------------------------

HOUR = 3_600_000


def hourly(rng: np.random.Generator, success: list[float], per_hour: list[int], good: float = 0.88,
           bad: float = 0.0) -> list[Piece]:
    """An hour-by-hour series of a model whose rewards are ``good`` on success and ``bad`` on failure."""
    out = []
    for h, (p, n) in enumerate(zip(success, per_hour, strict=True)):
        r = np.where(rng.random(n) < p, good, bad)
        out.append(Piece(h * HOUR, n, float(n), float(r.sum()), float((r * r).sum())))
    return out


def test_a_failed_model_at_the_floor_that_comes_back_is_found_within_an_hour() -> None:
    # 18 hours at 30 an hour failing (success 0.2), then one hour of six requests at 0.97: a recovery
    rng = np.random.default_rng(3)
    series = hourly(rng, [0.2] * 18 + [0.97], [30] * 18 + [6])
    shift = find_shift(series, THOMPSON)
    assert shift is not None and shift.start == 18 * HOUR and shift.z > 0 and shift.n_after == 6
    assert shift.p < THOMPSON.shift_alpha and shift.mean_after > shift.mean_before


def test_a_busy_model_that_degrades_is_found_at_the_split() -> None:
    rng = np.random.default_rng(4)
    series = hourly(rng, [0.97] * 20 + [0.6] * 2, [280] * 22)
    shift = find_shift(series, THOMPSON)
    assert shift is not None and shift.start == 20 * HOUR and shift.z < 0


@pytest.mark.parametrize(("success", "per_hour"), [(0.8, 6), (0.8, 30), (0.95, 280)])
def test_no_change_is_found_in_stationary_traffic_but_at_about_shift_alpha(success: float, per_hour: int) -> None:
    # 24 steady hours of a floor model, a probed one and a busy one: the scan over ~20 splits, Bonferroni,
    # stays quiet in all but a few of 500 runs (measured 0.2-0.3 %: rewards of two values are not normal)
    hits = sum(find_shift(hourly(np.random.default_rng(seed), [success] * 24, [per_hour] * 24), THOMPSON)
               is not None for seed in range(500))
    assert hits <= 5


def test_the_change_test_needs_min_samples_before_and_shift_min_samples_after() -> None:
    few_before = hourly(np.random.default_rng(5), [0.2] * 2 + [1.0], [20, 20, 30])  # 40 < minSamples before
    assert find_shift(few_before, THOMPSON) is None
    few_after = hourly(np.random.default_rng(5), [0.2] * 10 + [1.0], [30] * 10 + [4])  # 4 < shiftMinSamples
    assert find_shift(few_after, THOMPSON) is None
    assert find_shift(few_after, dataclasses.replace(THOMPSON, shift_min_samples=4)) is not None
    assert find_shift([], THOMPSON) is None


def test_equal_rewards_before_a_split_do_not_make_any_change_significant() -> None:
    # 60 identical rewards, then 5 a little lower: the spread before is floored (0.5/sqrt(n)), not zero
    series = [Piece(0, 60, 60.0, 60 * 0.8, 60 * 0.64), Piece(HOUR, 5, 5.0, 5 * 0.75, 5 * 0.5625)]
    assert find_shift(series, THOMPSON) is None


def test_recent_pools_buckets_back_until_min_samples() -> None:
    series = [Piece(h * HOUR, 6, 6.0, 4.8, 4.0) for h in range(24)]
    assert recent(series, 50) == 15 * HOUR  # 9 newest hours hold 54 >= 50
    assert recent(series, 6) == 23 * HOUR
    assert recent(series, 1000) is None
    assert recent(list(reversed(series)), 50) == 15 * HOUR  # order of the input does not matter


def test_a_model_over_the_latency_target_is_treated_as_below_acceptable() -> None:
    stats = {"gpt-5": ArmStats(n=500, avg_reward=0.80, reward_std=0.2),
             "claude": ArmStats(n=500, avg_reward=0.86, reward_std=0.2)}  # best on reward, but slow
    fast = propose_weights({"gpt-5": 0.5, "claude": 0.5}, stats, MIN_ACCEPTABLE, THOMPSON)
    assert fast is not None and fast.weights["claude"] > 0.9 and fast.below_acceptable == ()
    slow = propose_weights({"gpt-5": 0.5, "claude": 0.5}, stats, MIN_ACCEPTABLE, THOMPSON,
                           over_latency_target={"claude"})
    assert slow is not None and slow.weights["gpt-5"] > 0.9 and slow.below_acceptable == ("claude",)
    assert "latencyTargetMs: claude" in slow.reason
    # a model not judged (too few samples) is not penalised on a p95 it does not have the data for
    sparse = {**stats, "claude": ArmStats(n=10, avg_reward=0.86, reward_std=0.2)}
    assert propose_weights({"gpt-5": 0.5, "claude": 0.5}, sparse, MIN_ACCEPTABLE, THOMPSON,
                           over_latency_target={"claude"}) == propose_weights(
        {"gpt-5": 0.5, "claude": 0.5}, sparse, MIN_ACCEPTABLE, THOMPSON)


def test_a_model_back_from_an_outage_is_compared_with_its_outage_not_with_the_days_before() -> None:
    # 18 good hours at 280 an hour, 6 hours failing (pushed to the floor: 30 an hour), one good hour at 6:
    # against everything before it the last hour looks like the first 18; against the outage it is a change
    rng = np.random.default_rng(6)
    series = hourly(rng, [0.97] * 18 + [0.2] * 6 + [1.0], [280] * 18 + [30] * 6 + [6])  # six successes
    shift = find_shift(series, THOMPSON)
    assert shift is not None and shift.start == 24 * HOUR and shift.z > 0 and shift.mean_before < 0.3


def test_a_young_routers_window_traffic_is_taken_at_its_rate() -> None:
    from opsloop.domain.tuning import window_traffic

    day, hour = 86_400_000, 3_600_000
    assert window_traffic(900, day - 3 * hour, day, day) == 7200  # 3 hours of 300: a day of them
    assert window_traffic(100, day - 60_000, day, day) == 2400  # less than an hour counts as one
    assert window_traffic(7200, 0, day, day) == 7200  # a full window is counted as it is
    assert window_traffic(0, None, day, day) == 0
    assert exploration_floor(THOMPSON, window_traffic(900, day - 3 * hour, day, day)) == 0.0209


def test_judge_takes_a_changed_model_since_its_change_and_a_floor_model_on_its_recent_data() -> None:
    from opsloop.domain.stats import Summary, total
    from opsloop.domain.tuning import judge

    def hour(h: int, n: int, success: bool) -> tuple[int, Summary]:
        return h * HOUR, total([Summary.of(reward=0.9 if success else 0.0, success=success, cost_usd=0.01,
                                           duration_ms=500.0 + i) for i in range(n)])

    failed_then_back = [hour(h, 10, False) for h in range(10)] + [hour(10, 6, True)]
    j = judge(failed_then_back, THOMPSON, at_floor=True)
    assert j.shift is not None and j.start == 10 * HOUR and j.summary.n == 6  # since the change only
    steady = [hour(h, 10, h % 5 != 0) for h in range(12)]  # 12 hours, the same mix every hour
    at_floor = judge(steady, THOMPSON, at_floor=True)
    assert at_floor.shift is None and at_floor.start == 7 * HOUR and at_floor.summary.n == 50  # newest 50
    busy = judge(steady, THOMPSON, at_floor=False)
    assert busy.start is None and busy.summary.n == 120  # the whole window


def test_judge_pools_a_floor_model_beyond_a_short_window_but_not_a_change_before_it() -> None:
    from opsloop.domain.stats import Summary, total
    from opsloop.domain.tuning import judge

    def hour(h: int, n: int, success: bool) -> tuple[int, Summary]:
        return h * HOUR, total([Summary.of(reward=0.9 if success else 0.0, success=success, cost_usd=0.01,
                                           duration_ms=500.0 + i) for i in range(n)])

    steady = [hour(h, 15, h % 5 != 0) for h in range(24)]  # 15 an hour: a 1 h window never holds 50
    j = judge(steady, THOMPSON, at_floor=True, window_start=23 * HOUR)
    assert j.start == 20 * HOUR and j.summary.n == 60  # pooled back four hours, beyond the window
    busy = [hour(h, 300, h < 12) for h in range(24)]  # broke 12 hours ago: the 1 h window is all after it
    j = judge(busy, THOMPSON, at_floor=False, window_start=23 * HOUR)
    assert j.shift is None and j.start is None and j.summary.n == 300  # judged on its window, as asked
    j = judge(busy, THOMPSON, at_floor=False, window_start=0)
    assert j.shift is not None and j.start == 12 * HOUR  # a 24 h window: since the break
