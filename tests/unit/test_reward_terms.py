"""Composite rewards (issue 12): terms over fields, outcomes and metrics; per-component configs."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain import config
from opsloop.domain.config import ConfigInvalid
from opsloop.domain.observation import InvalidBatch, parse_batch
from opsloop.domain.reward import OUTCOMES, SUCCESS, RewardConfig, RewardRules, Term, legacy_terms, score

NOW_MS = 1_800_000_000_000


def legacy_score(outcome: str, duration_ms: float, cost_usd: float,
                 cfg: RewardConfig) -> tuple[float, dict[str, float]]:
    """The formula as it was before terms (frozen here, copied from domain/reward.py at 899cd91)."""
    success = outcome == SUCCESS
    success_boost = cfg.w_success if success else 0.0
    error_penalty = 0.0 if success else cfg.w_error
    latency_penalty = cfg.w_latency * min(duration_ms / cfg.max_latency_ms, 1.0)
    cost_penalty = cfg.w_cost * min(cost_usd / cfg.max_cost_usd, 1.0)
    base = 1.0 - cfg.w_success
    raw = base + success_boost - latency_penalty - cost_penalty - error_penalty
    return round(min(1.0, max(0.0, raw)), 6), {
        "successBoost": round(success_boost, 6), "latencyPenalty": round(latency_penalty, 6),
        "costPenalty": round(cost_penalty, 6), "errorPenalty": round(error_penalty, 6)}


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
configs = st.builds(RewardConfig, w_latency=unit, w_cost=unit, w_success=unit, w_error=unit,
                    max_latency_ms=st.floats(min_value=1.0, max_value=1e6),
                    max_cost_usd=st.floats(min_value=1e-4, max_value=100.0))


@settings(max_examples=400, deadline=None)
@given(cfg=configs, outcome=st.sampled_from(OUTCOMES),
       ms=st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False),
       usd=st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False))
def test_todays_formula_as_terms_gives_todays_scores_bit_for_bit(cfg: RewardConfig, outcome: str, ms: float,
                                                                  usd: float) -> None:
    want_score, want_details = legacy_score(outcome, ms, usd, cfg)
    got = score(outcome, ms, usd, cfg)
    assert (got.score, got.details()) == (want_score, want_details)
    # the same four terms written out as a config give the same too (a config of terms needs a weight)
    if any(t.weight > 0 for t in legacy_terms(cfg)):
        explicit = RewardConfig(version="x", terms=legacy_terms(cfg))
        assert score(outcome, ms, usd, explicit).score == want_score


def test_the_seeded_config_written_as_terms_parses_to_the_same_formula() -> None:
    doc = {"version": "1.0.0", "terms": [
        {"name": "successBoost", "source": "success", "weight": 0.6, "direction": "higher"},
        {"name": "latencyPenalty", "source": "durationMs", "weight": 0.25, "direction": "lower", "bound": 4000},
        {"name": "costPenalty", "source": "costUsd", "weight": 0.2, "direction": "lower", "bound": 0.1},
        {"name": "errorPenalty", "source": "error", "weight": 0.6, "direction": "lower"}]}
    parsed = config.parse("reward_config", doc).default
    assert parsed.effective_terms == legacy_terms(RewardConfig())
    for outcome, ms, usd in (("success", 4000, 0.1), ("success", 10, 0.0), ("timeout", 900, 0.02)):
        assert score(outcome, ms, usd, parsed) == score(outcome, ms, usd, RewardConfig())
    assert config.parse("reward_config", parsed.to_doc()).default == parsed  # round trip


def cfg_of(*terms: Term) -> RewardConfig:
    return RewardConfig(version="t", terms=terms)


def test_normalisations_and_outcome_indicators() -> None:
    quality = Term("quality", "metric:grounding", 0.5, "higher", range=(0.0, 10.0))
    tokens = Term("tokens", "tokensOut", 0.2, "lower", bound=1000)
    fit = Term("fit", "metric:cpu", 0.2, "higher", target=(0.7, 0.2))
    timeout = Term("timeoutPenalty", "outcome:timeout", 0.1, "lower")
    cfg = cfg_of(quality, tokens, fit, timeout)
    r = score("success", 10, 0.0, cfg, tokens_out=500, metrics={"grounding": 8, "cpu": 0.8})
    # base 1 - 0.7; + 0.5 * 0.8 - 0.2 * 0.5 + 0.2 * 0.5 - 0
    assert r.details() == {"quality": 0.4, "tokens": 0.1, "fit": 0.1, "timeoutPenalty": 0.0}
    assert r.score == pytest.approx(0.3 + 0.4 - 0.1 + 0.1)
    assert score("timeout", 10, 0.0, cfg, tokens_out=500, metrics={"grounding": 8, "cpu": 0.8}).details()[
        "timeoutPenalty"] == 0.1
    # out of range values clamp; a metric far from its target scores nothing for it
    far = score("success", 10, 0.0, cfg, tokens_out=5000, metrics={"grounding": 30, "cpu": 0.1})
    assert far.details() == {"quality": 0.5, "tokens": 0.2, "fit": 0.0, "timeoutPenalty": 0.0}


def test_a_missing_metric_is_skipped_and_the_rest_renormalised_or_takes_its_default() -> None:
    quality = Term("quality", "metric:thumbsUp", 0.5, "higher", range=(0.0, 1.0), missing="skip")
    speed = Term("speed", "durationMs", 0.5, "lower", bound=1000)
    cfg = cfg_of(quality, speed)
    with_it = score("success", 500, 0, cfg, metrics={"thumbsUp": 1})
    assert with_it.score == pytest.approx(0.75) and with_it.missing == ()
    without = score("success", 500, 0, cfg)
    assert without.missing == ("quality",) and without.details() == {"speed": 0.5}  # speed's weight doubled
    assert without.score == pytest.approx(0.5)
    defaulted = cfg_of(Term("quality", "metric:thumbsUp", 0.5, "higher", range=(0.0, 1.0), default=0.5), speed)
    assert score("success", 500, 0, defaulted).details() == {"quality": 0.25, "speed": 0.25}
    # a stored non-number counts as missing, never as a crash
    assert score("success", 500, 0, cfg, metrics={"thumbsUp": "yes"}).missing == ("quality",)
    assert score("success", 500, 0, cfg, metrics={"thumbsUp": math.nan}).missing == ("quality",)


def test_rules_pick_exact_then_longest_prefix_then_default() -> None:
    doc = {"version": "1.0.0", "rules": [
        {"match": "router:*", "version": "router-1", "weights": {"latency": 0.1}},
        {"match": "router:gpt*", "version": "gpt-1", "bounds": {"maxLatencyMs": 10000}},
        {"match": "autoscaler:core", "version": "as-1",
         "terms": [{"name": "slo", "source": "success", "weight": 1.0, "direction": "higher"}]}]}
    rules = config.parse("reward_config", doc)
    assert isinstance(rules, RewardRules)
    assert rules.for_component("router:gpt-5").version == "gpt-1"
    assert rules.for_component("router:claude").version == "router-1"
    assert rules.for_component("autoscaler:core").version == "as-1"
    assert rules.for_component("autoscaler:edge").version == "1.0.0"
    assert rules.versions() == {"*": "1.0.0", "router:*": "router-1", "router:gpt*": "gpt-1",
                                "autoscaler:core": "as-1"}
    assert score("failure", 10, 0, rules.for_component("autoscaler:core")).score == 0.0


TERM = {"name": "q", "source": "metric:quality", "weight": 0.5, "direction": "higher", "range": {"min": 0, "max": 1}}


@pytest.mark.parametrize(("doc", "field"), [
    ({"terms": [{**TERM, "source": "metric:Quality"}]}, "terms.0"),
    ({"terms": [{**TERM, "source": "latency"}]}, "terms.0"),
    ({"terms": [{**TERM, "source": "outcome:crash"}]}, "terms.0"),
    ({"terms": [{**TERM, "weight": 1.5}]}, "terms.0.weight"),
    ({"terms": [{**TERM, "weight": math.nan}]}, "terms.0.weight"),
    ({"terms": [{**TERM, "weight": 0.0}]}, "terms"),
    ({"terms": [TERM, TERM]}, "terms"),
    ({"terms": [{**TERM, "range": {"min": 1, "max": 1}}]}, "terms.0"),
    ({"terms": [{**TERM, "bound": 2.0}]}, "terms.0"),
    ({"terms": [{"name": "s", "source": "success", "weight": 0.5, "direction": "higher", "bound": 1}]}, "terms.0"),
    ({"terms": [{**TERM, "direction": "up"}]}, "terms.0.direction"),
    ({"terms": [TERM], "weights": {"latency": 0.3}}, "terms"),
    ({"terms": []}, "terms"),
    ({"rules": [{"match": "router:*", "version": "r1"}, {"match": "router:*", "version": "r2"}]}, "rules.1.match"),
    ({"rules": [{"match": "router/x", "version": "r1"}]}, "rules.0.match"),
    ({"rules": [{"match": "router:*", "version": "1.0.0"}]}, "rules.0.version"),
    ({"rules": [{"match": "router:*"}]}, "rules.0.version"),
    ({"rules": [{"match": "router:*", "version": "r1", "terms": [{**TERM, "source": "nope"}]}]}, "rules.0.terms.0"),
])
def test_a_bad_reward_config_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigInvalid) as info:
        config.parse("reward_config", doc)
    assert field in str(info.value), str(info.value)


def test_observations_carry_metrics_checked_at_the_door() -> None:
    base = {"component": "router:gpt-5", "outcome": "success", "durationMs": 10, "ts": NOW_MS}
    [obs] = parse_batch({**base, "metrics": {"thumbsUp": 1, "grounding": 0.75}}, NOW_MS)
    assert obs.metrics == {"thumbsUp": 1, "grounding": 0.75}
    for bad, why in (({"Thumbs": 1}, "metric name"), ({"x": math.inf}, "finite"), ({"x": True}, "number"),
                     ({"x": "1"}, "number"), ({f"m{i}": 1 for i in range(33)}, "at most 32"),
                     ({"x": 1e13}, "within")):
        with pytest.raises(InvalidBatch) as info:
            parse_batch({**base, "metrics": bad}, NOW_MS)
        [error] = info.value.errors
        assert error.field == "metrics" and why in error.message, error


def test_a_stored_observation_is_scored_under_its_components_config() -> None:
    from opsloop.domain.generations import Generations
    from opsloop.domain.ingest import StoredObservation
    from opsloop.services.reward_docs import reward_doc

    rules = config.parse("reward_config", {"rules": [{"match": "router:*", "version": "q-1", "terms": [
        {"name": "quality", "source": "metric:judge", "weight": 0.7, "direction": "higher",
         "range": {"min": 0, "max": 10}, "missing": "skip"},
        {"name": "cost", "source": "costUsd", "weight": 0.3, "direction": "lower", "bound": 0.1}]}]})
    now = dt.datetime.now(dt.UTC)
    ts = int(now.timestamp() * 1000)

    def _reward_doc(obs: StoredObservation, rules: RewardRules, at: dt.datetime) -> tuple[dict[str, Any], Any]:
        return reward_doc(obs, Generations(rules={1: rules}), at)

    judged = StoredObservation("a", {"ts": ts, "component": "router:gpt-5", "outcome": "success", "durationMs": 5,
                                     "costUsd": 0.05, "metrics": {"judge": 9}}, now)
    doc, summary = _reward_doc(judged, rules, now)
    assert doc["rewardVersion"] == "q-1" and doc["details"] == {"quality": 0.63, "cost": 0.15}
    assert summary is not None and doc["score"] == pytest.approx(0.3 + 0.63 - 0.15)
    unjudged = StoredObservation("b", {**judged.data, "metrics": {}}, now)
    doc, _ = _reward_doc(unjudged, rules, now)
    assert doc["missingTerms"] == ["quality"] and doc["details"] == {"cost": 0.5}
    assert doc["generation"] == 1 and doc["scores"] == {"g1": doc["score"]}
    other = StoredObservation("c", {**judged.data, "component": "autoscaler:core"}, now)
    assert _reward_doc(other, rules, now)[0]["rewardVersion"] == "1.0.0"
