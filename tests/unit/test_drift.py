"""Drift tests from window summaries (domain/drift.py): sketch KS against scipy, proportions, compare()."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ddsketch import DDSketch
from scipy import stats as sps

from opsloop.domain.drift import DriftConfig, MetricTest, compare, ks_sketch, proportions_p
from opsloop.domain.stats import SKETCH_RELATIVE_ACCURACY, Summary, total

N = 5000


def sketch(values: np.ndarray) -> DDSketch:
    s = DDSketch(SKETCH_RELATIVE_ACCURACY)
    for v in values:
        s.add(float(v))
    return s


def window(latency: np.ndarray, reward: np.ndarray, success: np.ndarray) -> Summary:
    """The summary of one window, built directly (Summary.of per row is slow for thousands of rows)."""
    return Summary(
        n=len(latency), successes=int(success.sum()), sum_reward=float(reward.sum()),
        sum_reward2=float((reward**2).sum()), sum_latency=float(latency.sum()),
        latency=sketch(latency), reward=sketch(reward),
    )


def latencies(rng: np.random.Generator, n: int, median: float = 800.0) -> np.ndarray:
    return median * rng.lognormal(0.0, 0.4, n)


def rewards(rng: np.random.Generator, n: int, success_rate: float = 0.9, mean: float = 0.75) -> np.ndarray:
    """Like the loop's rewards: a failure scores 0, a success somewhere in (0, 1]."""
    ok = rng.random(n) < success_rate
    return np.where(ok, np.clip(rng.normal(mean, 0.12, n), 1e-3, 1.0), 0.0)


def traffic(rng: np.random.Generator, n: int, median: float = 800.0, success_rate: float = 0.9,
            mean: float = 0.75) -> Summary:
    ok = rng.random(n) < success_rate
    reward = np.where(ok, np.clip(rng.normal(mean, 0.12, n), 1e-3, 1.0), 0.0)
    return window(latencies(rng, n, median), reward, ok)


def assert_matches_scipy(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    d, p = ks_sketch(sketch(a), sketch(b))
    ref = sps.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(float(ref.statistic), abs=0.01)
    return d, p, float(ref.statistic), float(ref.pvalue)


# --- KS from sketches ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_sketch_identical_latency_distributions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    _, p, _, ref_p = assert_matches_scipy(latencies(rng, N), latencies(rng, N))
    assert p > 0.05 and ref_p > 0.05


@pytest.mark.parametrize(("shift", "seed"), [(1.1, 0), (1.25, 1), (0.8, 2)])
def test_ks_sketch_shifted_latency(shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    d, p, _, ref_p = assert_matches_scipy(latencies(rng, N), latencies(rng, N, 800.0 * shift))
    assert p < 0.001 and ref_p < 0.001
    assert d > 0.05


def test_ks_sketch_p_value_is_the_asymptotic_kolmogorov_p() -> None:
    rng = np.random.default_rng(5)
    a, b = latencies(rng, 3000), latencies(rng, 1000, 840.0)
    d, p = ks_sketch(sketch(a), sketch(b))
    assert p == pytest.approx(float(sps.kstwo.sf(d, round(3000 * 1000 / 4000))), rel=1e-9)
    ref = sps.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(float(ref.statistic), abs=0.01)
    assert math.log10(p) == pytest.approx(math.log10(float(ref.pvalue)), abs=1.0)  # same ballpark


def test_ks_sketch_is_symmetric_and_zero_on_itself() -> None:
    rng = np.random.default_rng(9)
    a, b = sketch(latencies(rng, 2000)), sketch(latencies(rng, 1500, 900.0))
    assert ks_sketch(a, b) == pytest.approx(ks_sketch(b, a))
    d, p = ks_sketch(a, a)
    assert d == 0.0 and p == 1.0


def test_ks_sketch_needs_values() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        ks_sketch(DDSketch(SKETCH_RELATIVE_ACCURACY), sketch(latencies(rng, 10)))
    with pytest.raises(ValueError):
        ks_sketch(sketch(latencies(rng, 10)), DDSketch(SKETCH_RELATIVE_ACCURACY))


def test_ks_sketch_zeros_sort_below_every_value() -> None:
    # half zeros and half 0.9 against all 0.1: the CDFs differ by 0.5 at most (at 0.1, and just below it)
    a = np.concatenate([np.zeros(500), np.full(500, 0.9)])
    b = np.full(1000, 0.1)
    d, _, ref_d, _ = assert_matches_scipy(a, b)
    assert ref_d == pytest.approx(0.5)
    assert d == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_sketch_identical_reward_distributions_with_zero_rewards(seed: int) -> None:
    """Failures score 0: both windows hold ~10 % zeros. Their smallest positive rewards differ by chance,
    which must not matter: zeros are below every positive reward in *both* windows."""
    rng = np.random.default_rng(seed)
    _, p, _, ref_p = assert_matches_scipy(rewards(rng, N), rewards(rng, N))
    assert ref_p > 0.05
    assert p > 0.05


def test_ks_sketch_shifted_rewards() -> None:
    rng = np.random.default_rng(3)
    _, p, _, ref_p = assert_matches_scipy(rewards(rng, N), rewards(rng, N, mean=0.70))
    assert p < 0.001 and ref_p < 0.001


def test_ks_sketch_with_zero_latency() -> None:
    rng = np.random.default_rng(4)
    a = np.concatenate([np.zeros(200), latencies(rng, 2000)])
    b = latencies(rng, 2200)
    assert_matches_scipy(a, b)


# --- success rates --------------------------------------------------------------------------------------------


def test_proportions_p_matches_scipy() -> None:
    chi2, p = proportions_p(900, 1000, 850, 1000)
    ref = sps.chi2_contingency([[900, 100], [850, 150]], correction=False)
    assert chi2 == pytest.approx(float(ref[0]))
    assert p == pytest.approx(float(ref[1]))
    assert p < 0.001
    chi2, p = proportions_p(900, 1000, 1800, 2000)
    assert chi2 == pytest.approx(0.0, abs=1e-12) and p == pytest.approx(1.0)


@pytest.mark.parametrize(("s1", "n1", "s2", "n2"), [(10, 10, 20, 20), (0, 10, 0, 20), (0, 0, 5, 5)])
def test_proportions_p_degenerate_tables(s1: int, n1: int, s2: int, n2: int) -> None:
    assert proportions_p(s1, n1, s2, n2) == (0.0, 1.0)


# --- compare ----------------------------------------------------------------------------------------------------


def test_compare_needs_min_samples_on_both_sides() -> None:
    rng = np.random.default_rng(0)
    cfg = DriftConfig(min_samples=100)
    big, small = traffic(rng, 1000), traffic(rng, 99)
    assert compare(small, big, cfg) == []
    assert compare(big, small, cfg) == []
    assert compare(Summary(), big, cfg) == []
    assert [t.metric for t in compare(traffic(rng, 100), big, cfg)] == ["latency", "reward", "successRate"]


def test_compare_flags_a_latency_shift() -> None:
    rng = np.random.default_rng(1)
    baseline = total([traffic(rng, 4000) for _ in range(3)])  # a week of buckets, merged
    latest = traffic(rng, 2000, median=1000.0)
    tests = {t.metric: t for t in compare(latest, baseline, DriftConfig())}
    assert set(tests) == {"latency", "reward", "successRate"}
    assert tests["latency"].drifted is True
    assert tests["latency"].p < 1e-10
    assert tests["latency"].statistic > 0.1
    assert tests["successRate"].drifted is False
    for t in tests.values():
        assert isinstance(t, MetricTest) and 0.0 <= t.p <= 1.0


def test_compare_flags_a_success_rate_drop() -> None:
    rng = np.random.default_rng(2)
    baseline, latest = traffic(rng, 8000), traffic(rng, 2000, success_rate=0.8)
    tests = {t.metric: t for t in compare(latest, baseline, DriftConfig())}
    assert tests["successRate"].drifted is True
    assert tests["latency"].drifted is False


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_compare_does_not_flag_unchanged_traffic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tests = compare(traffic(rng, 2000), traffic(rng, 8000), DriftConfig())
    assert [t.metric for t in tests] == ["latency", "reward", "successRate"]
    assert [t.metric for t in tests if t.drifted] == []


def test_drift_config_from_doc() -> None:
    from opsloop.domain.config import ConfigInvalid, parse

    assert parse("drift", {}) == DriftConfig()
    cfg = parse("drift", {"latest": "24h", "baselineDays": 3, "alpha": 0.01, "minSamples": 50.0,
                          "driftExplorationFloor": 0.3})
    assert cfg == DriftConfig(latest="24h", baseline_days=3, alpha=0.01, min_samples=50, drift_exploration_floor=0.3)
    for bad in ({"latest": "6h"}, {"minSamples": "50"}, {"baselineDays": 2.5}, {"alpha": True}):
        with pytest.raises(ConfigInvalid):
            parse("drift", bad)


def test_drift_episodes_open_once_close_and_keep_the_change_point() -> None:
    from opsloop.domain.drift import advance_episodes

    def test(drifted: bool) -> dict[str, object]:
        return {"drifted": drifted, "statistic": 0.3 if drifted else 0.01, "p": 1e-6 if drifted else 0.5}

    first = advance_episodes("router:gpt-5", {}, {"latency": test(True), "reward": test(False)}, 1000)
    assert first.raised == ["latency"] and list(first.alerts) == ["router:gpt-5~latency~1000"]
    assert first.state["drifting"] and first.state["changedAt"] == 1000
    assert first.state["metrics"]["latency"]["since"] == 1000 and first.state["metrics"]["reward"]["since"] is None
    again = advance_episodes("router:gpt-5", first.state, {"latency": test(True)}, 2000)
    assert again.alerts == {} and again.state["metrics"]["latency"]["since"] == 1000  # the same episode
    assert again.state["metrics"]["reward"] == first.state["metrics"]["reward"]  # untested metrics are kept
    closed = advance_episodes("router:gpt-5", again.state, {"latency": test(False)}, 3000)
    assert not closed.state["drifting"] and closed.state["metrics"]["latency"]["since"] is None
    assert closed.state["changedAt"] == 1000  # the change point outlives the episode
    reopened = advance_episodes("router:gpt-5", closed.state, {"latency": test(True)}, 4000)
    assert reopened.raised == ["latency"] and reopened.state["changedAt"] == 4000


def test_drift_episodes_keep_the_tuners_change_answer() -> None:
    from opsloop.domain.drift import advance_episodes

    kept = {"start": 5000, "judged": False}
    state = {"component": "router:llama", "tunerShift": kept}
    update = advance_episodes("router:llama", state, {"reward": {"drifted": False, "statistic": 0.0, "p": 0.9}},
                              6000)
    assert update.state["tunerShift"] == kept
    assert "tunerShift" not in advance_episodes("router:llama", {}, {}, 6000).state
