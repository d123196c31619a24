"""The reward formula of domain/reward.py: bounds, monotonicity, the seeded anchors and golden values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain.config import ConfigInvalid
from opsloop.domain.config import parse as parse_config
from opsloop.domain.reward import OUTCOMES, SUCCESS, RewardConfig, score

ROOT = Path(__file__).resolve().parents[2]
SEED_DOC = json.loads((ROOT / "seed" / "config" / "reward_config.json").read_text())
SEEDED = parse_config("reward_config", SEED_DOC).default
NON_SUCCESS = tuple(o for o in OUTCOMES if o != SUCCESS)

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
configs = st.builds(
    RewardConfig,
    w_latency=unit,
    w_cost=unit,
    w_success=unit,
    w_error=unit,
    max_latency_ms=st.floats(min_value=1.0, max_value=1e6),
    max_cost_usd=st.floats(min_value=1e-4, max_value=100.0),
)
# inputs reach well past the seeded bounds so the min(.., 1) saturation is exercised too
latencies = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
costs = st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False)
outcomes = st.sampled_from(OUTCOMES)

FAST = settings(max_examples=150, deadline=None)


# --- properties -------------------------------------------------------------------------------------


@FAST
@given(cfg=configs, outcome=outcomes, ms=latencies, usd=costs)
def test_score_is_always_within_unit_interval(cfg: RewardConfig, outcome: str, ms: float, usd: float) -> None:
    r = score(outcome, ms, usd, cfg)
    assert 0.0 <= r.score <= 1.0


@FAST
@given(cfg=configs, outcome=outcomes, a=latencies, b=latencies, usd=costs)
def test_more_latency_never_raises_the_score(
    cfg: RewardConfig, outcome: str, a: float, b: float, usd: float
) -> None:
    lo, hi = sorted((a, b))
    assert score(outcome, hi, usd, cfg).score <= score(outcome, lo, usd, cfg).score


@FAST
@given(cfg=configs, outcome=outcomes, ms=latencies, a=costs, b=costs)
def test_more_cost_never_raises_the_score(cfg: RewardConfig, outcome: str, ms: float, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert score(outcome, ms, hi, cfg).score <= score(outcome, ms, lo, cfg).score


@FAST
@given(cfg=configs, other=st.sampled_from(NON_SUCCESS), ms=latencies, usd=costs)
def test_success_never_scores_below_a_non_success(cfg: RewardConfig, other: str, ms: float, usd: float) -> None:
    assert score(SUCCESS, ms, usd, cfg).score >= score(other, ms, usd, cfg).score


@FAST
@given(outcome=outcomes, ms=latencies, usd=costs)
def test_penalties_are_reported_and_bounded_by_their_weights(outcome: str, ms: float, usd: float) -> None:
    r = score(outcome, ms, usd, SEEDED)
    assert 0.0 <= r.details()["latencyPenalty"] <= SEEDED.w_latency
    assert 0.0 <= r.details()["costPenalty"] <= SEEDED.w_cost
    if outcome == SUCCESS:
        assert (r.details()["successBoost"], r.details()["errorPenalty"]) == (SEEDED.w_success, 0.0)
    else:
        assert (r.details()["successBoost"], r.details()["errorPenalty"]) == (0.0, SEEDED.w_error)
        assert r.score == 0.0  # with the seeded weights any non-success scores 0
    assert set(r.details()) == {"successBoost", "latencyPenalty", "costPenalty", "errorPenalty"}
    assert r.details()["latencyPenalty"] == r.details()["latencyPenalty"]


# --- anchors of the seeded config ----------------------------------------------------------------------


def test_seed_file_is_the_default_config() -> None:
    assert RewardConfig() == SEEDED
    assert (SEEDED.max_latency_ms, SEEDED.max_cost_usd, SEEDED.min_acceptable) == (4000.0, 0.10, 0.55)


def test_success_at_the_bounds_scores_exactly_min_acceptable() -> None:
    r = score("success", SEEDED.max_latency_ms, SEEDED.max_cost_usd, SEEDED)
    assert r.score == pytest.approx(0.55, abs=1e-9)
    assert r.score == pytest.approx(SEEDED.min_acceptable, abs=1e-9)
    assert (r.details()["latencyPenalty"], r.details()["costPenalty"]) == (0.25, 0.2)


def test_penalties_saturate_beyond_the_bounds() -> None:
    at_bound = score("success", 4000, 0.10, SEEDED).score
    assert score("success", 4_000_000, 50.0, SEEDED).score == at_bound


def test_free_instant_success_scores_one() -> None:
    r = score("success", 0, 0, SEEDED)
    assert r.score == 1.0
    assert (r.details()["latencyPenalty"], r.details()["costPenalty"], r.details()["errorPenalty"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("outcome", NON_SUCCESS)
@pytest.mark.parametrize(("ms", "usd"), [(0, 0), (1000, 0.02), (4000, 0.1)])
def test_non_success_scores_zero_with_seeded_weights(outcome: str, ms: float, usd: float) -> None:
    assert score(outcome, ms, usd, SEEDED).score == 0.0


# --- golden values, by hand from the docstring formula ---------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "ms", "usd", "cfg", "expected"),
    [
        # 0.4 + 0.6 - 0.25*(1000/4000) - 0.2*(0.02/0.1) = 1 - 0.0625 - 0.04
        ("success", 1000, 0.02, SEEDED, 0.8975),
        # 1 - 0.25*0.5 - 0.2*0.5
        ("success", 2000, 0.05, SEEDED, 0.775),
        # 1 - 0.25*0.75 - 0.2*0 (int inputs are fine)
        ("success", 3000, 0, SEEDED, 0.8125),
        # custom weights: base 0.7, failure pays w_error 0.1 -> 0.6 - 0.2*(500/1000) - 0.1*(1/2)
        ("failure", 500, 1.0, RewardConfig(w_latency=0.2, w_cost=0.1, w_success=0.3, w_error=0.1,
                                           max_latency_ms=1000, max_cost_usd=2.0), 0.45),
        # same config, success: 0.7 + 0.3 - 0.1 - 0.05
        ("success", 500, 1.0, RewardConfig(w_latency=0.2, w_cost=0.1, w_success=0.3, w_error=0.1,
                                           max_latency_ms=1000, max_cost_usd=2.0), 0.85),
        # negative raw is clamped to 0: 0.4 - 0.6 - 0.25 - 0.2
        ("timeout", 9000, 0.3, SEEDED, 0.0),
    ],
)
def test_golden_values(outcome: str, ms: float, usd: float, cfg: RewardConfig, expected: float) -> None:
    assert score(outcome, ms, usd, cfg).score == pytest.approx(expected, abs=1e-9)


def test_components_are_rounded_to_six_digits() -> None:
    r = score("success", 1, 0.0000001, SEEDED)  # 0.25/4000 and 0.2*1e-6
    assert r.details()["latencyPenalty"] == 0.000063
    assert r.details()["costPenalty"] == 0.0
    assert r.score == round(1 - 0.25 / 4000 - 0.2 * 1e-6, 6)


# --- bad inputs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "usd"),
    [(math.nan, 0.0), (0.0, math.nan), (-1.0, 0.0), (0.0, -0.01), (math.inf, 0.0), (0.0, math.inf), (-math.inf, 0)],
)
def test_bad_numbers_raise_value_error(ms: float, usd: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        score("success", ms, usd, SEEDED)


@pytest.mark.parametrize("outcome", ["", "SUCCESS", "ok", "error", None])
def test_unknown_outcome_raises_value_error(outcome: str) -> None:
    with pytest.raises(ValueError, match="outcome must be one of"):
        score(outcome, 0, 0, SEEDED)


# --- config document -------------------------------------------------------------------------------------


def test_to_doc_shape() -> None:
    assert RewardConfig().to_doc() == {
        "version": "1.0.0",
        "weights": {"latency": 0.25, "cost": 0.2, "success": 0.6, "error": 0.6},
        "bounds": {"maxLatencyMs": 4000.0, "maxCostUsd": 0.10},
        "thresholds": {"minAcceptable": 0.55, "retrain": 0.40},
    }


@settings(max_examples=60, deadline=None)
@given(cfg=configs, version=st.sampled_from(["1.0.0", "2.3.4", "10.0.12"]),
       min_acceptable=unit, retrain=unit)
def test_doc_round_trip(cfg: RewardConfig, version: str, min_acceptable: float, retrain: float) -> None:
    doc = cfg.to_doc()
    doc["version"] = version
    doc["thresholds"] = {"minAcceptable": min_acceptable, "retrain": retrain}
    back = parse_config("reward_config", doc).default
    assert back.to_doc() == doc
    assert parse_config("reward_config", cfg.to_doc()).default == cfg


@pytest.mark.parametrize("doc", [None, {}])
def test_from_empty_doc_gives_defaults(doc: dict | None) -> None:
    assert parse_config("reward_config", doc).default == RewardConfig()


def test_from_partial_doc_keeps_other_defaults() -> None:
    cfg = parse_config("reward_config", {"weights": {"latency": 0.5}, "bounds": {"maxCostUsd": 1}}).default
    assert cfg.w_latency == 0.5
    assert cfg.max_cost_usd == 1.0
    assert (cfg.w_cost, cfg.w_success, cfg.max_latency_ms) == (0.2, 0.6, 4000.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"w_latency": -0.1}, {"w_cost": 1.5}, {"w_success": math.nan}, {"w_error": math.inf},
        {"max_latency_ms": 0.0}, {"max_cost_usd": -1.0}, {"max_latency_ms": math.nan},
        {"min_acceptable": 1.2}, {"retrain": -0.01},
    ],
)
def test_invalid_config_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RewardConfig(**kwargs)


def test_invalid_weights_in_doc_rejected() -> None:
    with pytest.raises(ConfigInvalid, match="w_success"):
        parse_config("reward_config", {"weights": {"success": 2}})
    with pytest.raises(ConfigInvalid):
        parse_config("reward_config", {"bounds": {"maxLatencyMs": 0}})
    with pytest.raises(ConfigInvalid, match=r"weights\.success"):
        parse_config("reward_config", {"weights": {"success": "0.6"}})
