"""Mergeable summaries and the latency sketch (domain/stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ddsketch import DDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain.stats import (
    SKETCH_RELATIVE_ACCURACY,
    Summary,
    merge_labels,
    sketch_from_bytes,
    sketch_to_bytes,
    total,
    window_stats,
)

QUANTILES = (0.5, 0.95, 0.99)

obs = st.tuples(
    st.floats(min_value=0.0, max_value=1.0),  # reward
    st.booleans(),  # success
    st.floats(min_value=0.0, max_value=5.0),  # cost
    st.floats(min_value=0.0, max_value=1e6),  # duration
)


def summarize(rows: list[tuple[float, bool, float, float]]) -> Summary:
    return total([Summary.of(reward=r, success=s, cost_usd=c, duration_ms=d) for r, s, c, d in rows])


def bucket(latencies: np.ndarray, rewards: np.ndarray | None = None) -> Summary:
    """The summary of one bucket, built directly (Summary.of per row is slow for 10^5 rows)."""
    rewards = np.full(len(latencies), 0.5) if rewards is None else rewards
    sketch = DDSketch(SKETCH_RELATIVE_ACCURACY)
    for v in latencies:
        sketch.add(float(v))
    return Summary(
        n=len(latencies), successes=len(latencies), sum_reward=float(rewards.sum()),
        sum_reward2=float((rewards**2).sum()), sum_cost=0.0, sum_latency=float(latencies.sum()), latency=sketch,
    )


# --- summaries add --------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(a=st.lists(obs, max_size=30), b=st.lists(obs, max_size=30))
def test_sum_of_summaries_is_summary_of_union(a: list, b: list) -> None:
    sa, sb, union = summarize(a), summarize(b), summarize(a + b)
    for merged in (sa + sb, total([sa, sb])):
        assert merged.n == union.n == len(a) + len(b)
        assert merged.successes == union.successes == sum(1 for row in a + b if row[1])
        for attr in ("sum_reward", "sum_reward2", "sum_cost", "sum_latency"):
            assert getattr(merged, attr) == pytest.approx(getattr(union, attr), rel=1e-9, abs=1e-9)
        assert merged.latency.count == union.latency.count
        for q in QUANTILES:
            assert merged.latency_quantile(q) == union.latency_quantile(q)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(obs, min_size=0, max_size=40))
def test_moments_match_numpy(rows: list) -> None:
    s = summarize(rows)
    rewards = np.array([r[0] for r in rows])
    if not rows:
        assert s.mean_reward is None and s.reward_variance is None and s.success_rate is None
        return
    assert s.mean_reward == pytest.approx(rewards.mean(), abs=1e-9)
    assert s.mean_cost == pytest.approx(np.mean([r[2] for r in rows]), rel=1e-9, abs=1e-12)
    assert s.success_rate == pytest.approx(np.mean([r[1] for r in rows]))
    if len(rows) < 2:
        assert s.reward_variance is None
    else:
        assert s.reward_variance >= 0.0
        assert s.reward_variance == pytest.approx(np.var(rewards, ddof=1), abs=1e-9)


def test_variance_golden() -> None:
    s = summarize([(0.0, False, 0, 1), (1.0, True, 0, 1), (0.5, True, 0, 1), (0.5, True, 0, 1)])
    assert s.mean_reward == 0.5
    assert s.reward_variance == pytest.approx(0.5 / 3)  # (0.25 + 0.25 + 0 + 0) / 3
    assert s.success_rate == 0.75


def test_adding_does_not_mutate_operands() -> None:
    a = summarize([(0.5, True, 0.01, 100.0)] * 3)
    b = summarize([(0.1, False, 0.0, 9000.0)] * 2)
    c = a + b
    t = total([a, b])
    assert (a.n, a.latency.count, b.n, b.latency.count) == (3, 3, 2, 2)
    assert c.latency.count == t.latency.count == 5
    assert a.latency_quantile(0.99) == pytest.approx(100.0, rel=0.01)


def test_identity_and_total_of_nothing() -> None:
    a = summarize([(0.7, True, 0.02, 321.0)])
    assert (a + Summary()) == a
    assert total([]).n == 0
    assert total([]).latency_quantile(0.5) is None
    assert total([a]) == a


def test_of_rejects_bad_numbers() -> None:
    for kwargs in ({"reward": -0.1}, {"cost_usd": math.nan}, {"duration_ms": math.inf}, {"duration_ms": -1.0}):
        base = {"reward": 0.5, "success": True, "cost_usd": 0.0, "duration_ms": 1.0, **kwargs}
        with pytest.raises(ValueError):
            Summary.of(**base)


def test_adding_a_non_summary_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Summary() + 1  # type: ignore[operator]


# --- serialisation --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(obs, max_size=30))
def test_doc_round_trip(rows: list) -> None:
    s = summarize(rows)
    doc = s.to_doc()
    assert set(doc) == {"n", "successes", "sumReward", "sumReward2", "sumCost", "sumLatency", "latencySketch",
                        "rewardSketch", "nP", "sumW", "sumW2", "sumRW", "sumR2W2", "sumRW2", "weight", "wSuccesses",
                        "wP", "sumCost2", "nCost2", "failures", "versions"}
    assert isinstance(doc["latencySketch"], bytes) and isinstance(doc["rewardSketch"], bytes)
    back = Summary.from_doc(doc)
    assert back == s
    assert back.latency.count == s.latency.count == back.reward.count
    for q in (0.0, *QUANTILES, 1.0):
        if s.n == 0:
            assert back.latency_quantile(q) is None
        else:  # the proto stores gamma, so the restored mapping may differ in the last ulp
            assert back.latency_quantile(q) == pytest.approx(s.latency_quantile(q), rel=1e-12)
    # a restored summary still merges with a fresh one
    assert (back + s).n == 2 * s.n


def test_from_empty_doc_is_empty_summary() -> None:
    s = Summary.from_doc({})
    assert s == Summary()
    assert s.latency.count == 0


def test_sketch_bytes_round_trip_and_empty() -> None:
    sk = DDSketch(SKETCH_RELATIVE_ACCURACY)
    for v in (1.0, 10.0, 100.0, 0.0):
        sk.add(v)
    back = sketch_from_bytes(sketch_to_bytes(sk))
    assert back.count == 4
    assert back.get_quantile_value(0.5) == sk.get_quantile_value(0.5)
    assert sketch_from_bytes(b"").count == 0


def test_sketch_of_other_accuracy_is_refused() -> None:
    foreign = DDSketch(0.02)
    foreign.add(5.0)
    with pytest.raises(ValueError, match="gamma"):
        sketch_from_bytes(sketch_to_bytes(foreign))


# --- latency quantiles ----------------------------------------------------------------------------------


def _lognormal(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.lognormal(mean=6.0, sigma=0.8, size=n)


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    fast = rng.lognormal(mean=np.log(150.0), sigma=0.2, size=n)
    slow = rng.lognormal(mean=np.log(3000.0), sigma=0.3, size=n)
    return np.where(rng.random(n) < 0.8, fast, slow)


def _pareto(rng: np.random.Generator, n: int) -> np.ndarray:
    return 50.0 * (1.0 + rng.pareto(1.3, size=n))  # heavy tail, infinite variance


DISTRIBUTIONS = {"lognormal": _lognormal, "bimodal": _bimodal, "pareto": _pareto}
N = 24 * 168 * 5  # divisible by both bucket counts


@pytest.fixture(scope="module", params=sorted(DISTRIBUTIONS))
def sample(request: pytest.FixtureRequest) -> tuple[np.ndarray, Summary]:
    rng = np.random.default_rng(20240601 + sorted(DISTRIBUTIONS).index(request.param))
    data = DISTRIBUTIONS[request.param](rng, N)
    return data, bucket(data)


def _check(s: Summary, data: np.ndarray) -> None:
    assert s.n == len(data)
    for q in QUANTILES:
        got = s.latency_quantile(q)
        assert got is not None
        # DDSketch returns a value within its relative accuracy of the sample at rank floor(q * (n - 1)),
        # which is numpy's method="lower"
        at_rank = float(np.quantile(data, q, method="lower"))
        assert abs(got - at_rank) <= SKETCH_RELATIVE_ACCURACY * at_rank * (1 + 1e-9), (q, got, at_rank)
        # and the documented promise: within 1 % of the exact (interpolated) quantile
        exact = float(np.quantile(data, q))
        assert abs(got - exact) <= 0.01 * exact, (q, got, exact)


def test_quantiles_of_one_summary(sample: tuple[np.ndarray, Summary]) -> None:
    data, s = sample
    _check(s, data)


@pytest.mark.parametrize("buckets", [24, 168])
def test_quantiles_of_merged_buckets(sample: tuple[np.ndarray, Summary], buckets: int) -> None:
    data, whole = sample
    parts = [bucket(chunk) for chunk in np.array_split(data, buckets)]
    merged = total(parts)
    _check(merged, data)
    # merging loses nothing: the merged sketch answers exactly as the single one does
    for q in QUANTILES:
        assert merged.latency_quantile(q) == whole.latency_quantile(q)
    # also through the serialised form the scoring job reads back
    restored = total([Summary.from_doc(p.to_doc()) for p in parts])
    for q in QUANTILES:
        assert restored.latency_quantile(q) == whole.latency_quantile(q)


def test_quantile_of_zero_latency_and_single_value() -> None:
    assert summarize([(1.0, True, 0.0, 0.0)] * 3).latency_quantile(0.5) == 0.0
    one = summarize([(1.0, True, 0.0, 1234.0)])
    assert one.latency_quantile(0.99) == pytest.approx(1234.0, rel=SKETCH_RELATIVE_ACCURACY)


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_quantile_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        summarize([(1.0, True, 0.0, 1.0)]).latency_quantile(q)


# --- empty summary and window_stats ----------------------------------------------------------------------


def test_empty_summary_has_no_stats() -> None:
    s = Summary()
    assert s.n == 0
    assert s.success_rate is None
    assert s.mean_reward is None
    assert s.mean_cost is None
    assert s.reward_variance is None
    assert s.latency_quantile(0.5) is None
    assert window_stats(s) == {
        "n": 0, "samples": 0, "successRate": None, "p50Latency": None, "p95Latency": None,
        "avgCostUsd": None, "avgReward": None, "rewardStd": None, "rewardP50": None, "rewardP95": None,
    }


def test_window_stats_values() -> None:
    rows = [(0.9, True, 0.01, 100.0), (0.5, True, 0.03, 200.0), (0.0, False, 0.02, 4000.0), (0.6, True, 0.0, 300.0)]
    ws = window_stats(summarize(rows))
    assert set(ws) == {"n", "samples", "successRate", "p50Latency", "p95Latency", "avgCostUsd", "avgReward",
                       "rewardStd", "rewardP50", "rewardP95"}
    assert ws["n"] == 4
    assert ws["successRate"] == 0.75
    assert ws["avgCostUsd"] == pytest.approx(0.015)
    assert ws["avgReward"] == 0.5
    assert ws["rewardStd"] == pytest.approx(float(np.std([0.9, 0.5, 0.0, 0.6], ddof=1)), abs=1e-6)
    assert ws["p50Latency"] == pytest.approx(200.0, rel=SKETCH_RELATIVE_ACCURACY)
    assert ws["p95Latency"] == pytest.approx(300.0, rel=SKETCH_RELATIVE_ACCURACY)  # rank floor(0.95*3) = 2
    assert ws["rewardP50"] == pytest.approx(0.5, rel=SKETCH_RELATIVE_ACCURACY)
    assert ws["rewardP95"] == pytest.approx(0.6, rel=SKETCH_RELATIVE_ACCURACY)


def test_window_stats_single_observation_has_no_std() -> None:
    ws = window_stats(summarize([(0.8, True, 0.0, 10.0)]))
    assert ws["n"] == 1
    assert ws["avgReward"] == 0.8
    assert ws["rewardStd"] is None


# --- labelled counts: failure modes and policy versions ----------------------------------------------------


def test_failures_and_versions_are_weighted_counts_that_add() -> None:
    a = Summary.of(reward=0.0, success=False, cost_usd=0, duration_ms=10, failure="TIMEOUT", version="p@1.0.0",
                   weight=3.0)
    b = Summary.of(reward=0.9, success=True, cost_usd=0, duration_ms=10, failure="IGNORED", version="p@1.0.0")
    c = Summary.of(reward=0.0, success=False, cost_usd=0, duration_ms=10, failure="rate_limit", version="p@1.0.1")
    s = a + b + c
    assert s.failures == (("TIMEOUT", 3.0), ("rate_limit", 1.0))  # a success never counts as a failure mode
    assert s.versions == (("p@1.0.0", 4.0), ("p@1.0.1", 1.0))
    back = Summary.from_doc(s.to_doc())
    assert back.failures == s.failures and back.versions == s.versions


def test_labels_beyond_the_limit_pool_under_other_and_keep_their_total() -> None:
    parts = [((f"E{i:02d}", float(i + 1)),) for i in range(40)]
    merged = merge_labels(parts, limit=10)
    assert len(merged) == 10
    assert dict(merged)["E39"] == 40.0 and "E00" not in dict(merged)
    assert sum(w for _, w in merged) == sum(range(1, 41))
    # keys that are not valid Firestore field names survive the round trip (stored as a list of maps)
    odd = Summary.of(reward=0.0, success=False, cost_usd=0, duration_ms=1, failure="__weird__.code`x`")
    assert Summary.from_doc(odd.to_doc()).failures == (("__weird__.code`x`", 1.0),)


def test_cost_variance_is_the_sample_variance_and_unknown_for_older_buckets() -> None:
    costs = [0.01, 0.03, 0.02, 0.05, 0.04]
    s = total([Summary.of(reward=0.5, success=True, cost_usd=c, duration_ms=10.0) for c in costs])
    assert s.cost_variance == pytest.approx(float(np.var(costs, ddof=1)))
    old = s.to_doc()
    del old["sumCost2"], old["nCost2"]  # a bucket written before the cost's variance was kept
    assert Summary.from_doc(old).cost_variance is None
    assert (Summary.from_doc(old) + s).cost_variance is None  # a window mixing both: unknown
    assert Summary.from_doc(s.to_doc()).cost_variance == pytest.approx(s.cost_variance)


def test_log_latency_moments_from_the_sketch_match_the_exact_ones() -> None:
    rng = np.random.default_rng(11)
    latencies = np.exp(rng.normal(math.log(800.0), 0.9, 20_000))
    latencies[:50] = 0.0  # zero and sub-millisecond latencies count as 1 ms
    latencies[50:100] = 0.4
    moments = bucket(latencies).log_latency_moments()
    assert moments is not None
    logs = np.log(np.maximum(latencies, 1.0))
    assert moments[0] == pytest.approx(float(logs.mean()), abs=0.01)  # each bin within ~0.005 in log
    assert moments[1] == pytest.approx(float(logs.var(ddof=1)), rel=0.01)
    assert summarize([(0.5, True, 0.0, 10.0)]).log_latency_moments() is None  # one value: no variance
    merged = (bucket(latencies[:10_000]) + bucket(latencies[10_000:])).log_latency_moments()
    assert merged == pytest.approx(moments)
