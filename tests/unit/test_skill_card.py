"""Skill card judgement: pure, from summaries."""

from __future__ import annotations

import numpy as np
import pytest

from opsloop.domain import skill_card
from opsloop.domain.reward import RewardConfig
from opsloop.domain.stats import Summary, total

DAY = 86_400_000
S = skill_card.CardSettings()


def summary(latencies: list[float], success: float = 1.0, cost: float = 0.01, reward: float = 0.9) -> Summary:
    n = len(latencies)
    return total([Summary.of(reward=reward, success=i < success * n, cost_usd=cost, duration_ms=lat,
                             failure="E" if i >= success * n else None) for i, lat in enumerate(latencies)])


def test_share_above_matches_the_exact_share_within_the_sketch_accuracy() -> None:
    rng = np.random.default_rng(3)
    lat = rng.lognormal(7, 0.8, 5000).tolist()
    s = summary(lat)
    for threshold in (500.0, 1096.0, 4000.0):
        exact = float(np.mean(np.array(lat) > threshold))
        assert abs(skill_card.share_above(s, threshold) - exact) < 0.01
    assert skill_card.share_above(s, 1e9) == 0.0 and skill_card.share_above(Summary(), 1.0) is None


def test_judge_names_strengths_and_weaknesses() -> None:
    cfg = RewardConfig()
    strong, weak = skill_card.judge(summary([100.0] * 100, success=0.99, cost=0.01), cfg, S)
    assert {s["code"] for s in strong} == {"high_success_rate", "within_cost_budget", "within_latency_budget"}
    assert weak == []
    lat = [100.0] * 80 + [9000.0] * 20  # 20 % far over budget, p99/p50 = 90
    strong, weak = skill_card.judge(summary(lat, success=0.5, cost=0.2, reward=0.3), cfg, S)
    assert strong == []
    assert {w["code"] for w in weak} == {"low_success_rate", "over_cost_budget", "over_latency_budget",
                                         "latency_outliers", "below_min_acceptable"}


def daily(rewards: list[float], n: int = 20) -> list[tuple[int, Summary]]:
    return [(d * DAY, total([Summary.of(reward=r, success=True, cost_usd=0, duration_ms=1)] * n))
            for d, r in enumerate(rewards)]


def test_trend_is_up_down_or_flat_only_when_significant() -> None:
    end = 30 * DAY
    up = skill_card.trend(daily([0.5 + 0.01 * d for d in range(30)]), 30, end, S)
    assert up["direction"] == "up" and abs(up["slopePerDay"] - 0.01) < 1e-9 and up["points"] == 30
    down = skill_card.trend(daily([0.9 - 0.02 * d for d in range(30)]), 7, end, S)
    assert down["direction"] == "down" and down["points"] == 7
    noisy = skill_card.trend(daily([0.5, 0.7, 0.4, 0.6, 0.5, 0.45, 0.65] * 5), 30, 35 * DAY, S)
    assert noisy["direction"] == "flat"
    assert skill_card.trend(daily([0.5, 0.6]), 7, 2 * DAY, S)["direction"] == "insufficient_data"
    sparse = skill_card.trend(daily([0.5 + 0.01 * d for d in range(30)], n=3), 30, end, S)
    assert sparse["direction"] == "insufficient_data"  # days under minDailySamples do not count


def test_best_model_needs_samples_and_calls_a_clear_winner_only_when_intervals_separate() -> None:
    rng = np.random.default_rng(1)

    def model(mean: float, n: int) -> Summary:
        return total([Summary.of(reward=float(np.clip(r, 0, 1)), success=True, cost_usd=0, duration_ms=1)
                      for r in rng.normal(mean, 0.1, n)])

    best = skill_card.best_model({"a": model(0.8, 400), "b": model(0.6, 400), "c": model(0.99, 10)}, S)
    assert best is not None and best["model"] == "a" and best["clearWinner"] is True
    assert [r["model"] for r in best["ranking"]] == ["a", "b"]  # c has too few samples to be judged
    close = skill_card.best_model({"a": model(0.70, 60), "b": model(0.705, 60)}, S)
    assert close is not None and close["clearWinner"] is False
    assert skill_card.best_model({"a": model(0.7, 5)}, S) is None


def test_slope_test_equals_scipy_linregress() -> None:
    from scipy import stats

    rng = np.random.default_rng(5)
    for n in (3, 7, 30):
        x = list(map(float, range(n)))
        y = (0.01 * np.arange(n) + rng.normal(0, 0.02, n)).tolist()
        slope, p = skill_card.slope_test(x, y)
        ref = stats.linregress(x, y)
        assert abs(slope - ref.slope) < 1e-12 and abs(p - ref.pvalue) < 1e-9
    assert pytest.approx(stats.norm.ppf(0.975), abs=1e-12) == skill_card.Z_95


def test_the_seeded_config_is_the_default() -> None:
    import json
    from pathlib import Path

    seeded = json.loads((Path(__file__).resolve().parents[2] / "seed" / "config" / "skill_cards.json").read_text())
    from opsloop.domain.config import parse

    assert parse("skill_cards", seeded) == skill_card.CardSettings()
