"""Canary decisions (domain/experiment.py): Welch, always-valid mSPRT, SRM, guardrails, safety, evaluate()."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from opsloop.domain.config import ConfigInvalid, parse
from opsloop.domain.experiment import (
    MIN_TEST_SAMPLES,
    ArmData,
    Evaluation,
    RolloutConfig,
    Running,
    cost_diff_p,
    evaluate,
    mixture_p,
    msprt_p,
    srm_p,
    success_diff_p,
    welch,
)

ROOT = Path(__file__).resolve().parents[2]
CFG = RolloutConfig()


def arm_of(rewards: np.ndarray, success_rate: float = 0.9, p95: float | None = 1500.0, cost: float = 0.02) -> ArmData:
    return ArmData(len(rewards), float(rewards.mean()), float(rewards.var(ddof=1)), success_rate, p95, cost)


SIGMA = 0.5  # the arms' latency: lognormal with this log-sd, scaled to the given p95


def arm(n: int, mean: float = 0.675, var: float = 0.06, success_rate: float = 0.9, p95: float | None = 1500.0,
        cost: float = 0.02, cost_sd: float = 0.004, latency_of: float | None = None) -> ArmData:
    """An arm whose latency is lognormal with log-sd SIGMA and p95 ``latency_of`` (default: ``p95``), its p95
    reported as ``p95`` (a different value stands for a noisy estimate)."""
    true_p95 = p95 if latency_of is None else latency_of
    median = None if true_p95 is None else true_p95 / math.exp(1.6448536269514722 * SIGMA)

    def share_above(x: float) -> float:
        assert median is not None
        return 0.5 * math.erfc((math.log(x / median) / SIGMA) / math.sqrt(2))

    return ArmData(n, mean, var, success_rate, p95, cost, cost_sd * cost_sd,
                   None if median is None else share_above,
                   None if median is None else (math.log(median), SIGMA * SIGMA))


# --- Welch --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_matches_scipy_on_raw_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.60, 0.20, 400)
    b = rng.normal(0.63, 0.35, 250)  # unequal variances and sizes: Welch, not Student
    got = welch(arm_of(a), arm_of(b))
    assert got is not None
    p, lo, hi = got
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert p == pytest.approx(float(ref.pvalue), rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert lo == pytest.approx(float(ci.low), rel=1e-9)
    assert hi == pytest.approx(float(ci.high), rel=1e-9)
    assert lo < b.mean() - a.mean() < hi


def test_welch_interval_is_the_manual_t_interval_and_covers_the_true_difference() -> None:
    rng = np.random.default_rng(42)
    a = rng.normal(0.70, 0.25, 3000)
    b = rng.normal(0.72, 0.25, 2000)
    p, lo, hi = welch(arm_of(a), arm_of(b))  # type: ignore[misc]
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = sps.t.ppf(0.975, dof) * math.sqrt(va + vb)
    diff = b.mean() - a.mean()
    assert (lo, hi) == pytest.approx((diff - half, diff + half), rel=1e-12)
    assert lo < 0.02 < hi  # the true difference
    t = diff / math.sqrt(va + vb)
    assert p == pytest.approx(2 * sps.t.sf(abs(t), dof), rel=1e-9)


def test_welch_interval_coverage_over_seeds() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(200):
        a, b = rng.normal(0.5, 0.3, 60), rng.normal(0.55, 0.1, 40)
        _, lo, hi = welch(arm_of(a), arm_of(b))  # type: ignore[misc]
        covered += lo < 0.05 < hi
    assert 180 <= covered <= 200  # nominal 95 %: 190 expected, sd ~3


def test_welch_undefined() -> None:
    assert welch(arm(1), arm(100)) is None
    assert welch(arm(100), arm(0)) is None
    assert welch(arm(100, var=0.0), arm(100, var=0.0)) is None


# --- mSPRT ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1e-9, 1e-4, 0.05, 1.0])
@pytest.mark.parametrize("v", [1e-6, 1e-3, 1.0])
def test_mixture_p_is_one_at_zero_difference(tau: float, v: float) -> None:
    assert mixture_p(0.0, v, tau) == 1.0


def test_mixture_p_tiny_tau_never_rejects() -> None:
    # the mixture collapses onto H0: the likelihood ratio is ~1 whatever the difference
    assert mixture_p(0.05, 1e-4, 1e-9) == pytest.approx(1.0, abs=1e-6)


def test_mixture_p_falls_as_the_difference_grows_and_is_symmetric() -> None:
    v, tau = 1e-4, 0.05
    diffs = np.linspace(0, 0.1, 41)
    ps = [mixture_p(float(d), v, tau) for d in diffs]
    assert all(p1 >= p2 for p1, p2 in pairwise(ps))
    assert ps[0] == 1.0 and ps[-1] < 1e-10
    below_one = [p for p in ps if p < 1.0]
    assert all(p1 > p2 for p1, p2 in pairwise(below_one))  # strictly, once below 1
    for d in diffs:
        assert mixture_p(float(d), v, tau) == mixture_p(float(-d), v, tau)


def test_mixture_p_falls_with_more_samples_at_the_same_difference() -> None:
    diff, sigma2, tau = 0.01, 0.12, 0.05  # per-pair variance of the difference
    ns = [2**k for k in range(6, 22)]
    ps = [mixture_p(diff, sigma2 / n, tau) for n in ns]
    assert ps[0] == 1.0  # too few samples to say anything
    assert ps[-1] < 1e-6
    # eventually strictly decreasing: from the first n where it drops below 1 on
    first = next(i for i, p in enumerate(ps) if p < 1.0)
    tail = ps[first:]
    assert all(p1 > p2 for p1, p2 in pairwise(tail))


@pytest.mark.parametrize("tau", [0.01, 0.05, 0.2])
def test_mixture_p_is_never_below_the_fixed_horizon_p(tau: float) -> None:
    # Lambda <= sup-likelihood-ratio = exp(z^2/2), and 2(1 - Phi(z)) <= exp(-z^2/2): paying for peeking
    for v in (1e-6, 1e-4, 1e-2):
        for z in np.linspace(0, 8, 33):
            diff = float(z * math.sqrt(v))
            assert mixture_p(diff, v, tau) >= 2 * sps.norm.sf(z) - 1e-15


def test_repeated_looks_keep_the_always_valid_error_below_alpha() -> None:
    """A/A: 100 looks at a growing sample; min mSPRT p < 0.05 in <= ~5 % of runs, the naive z-test far more."""
    rng = np.random.default_rng(2024)
    runs, looks, batch, sigma = 600, 100, 50, 0.35
    d = rng.normal(0.0, sigma, (runs, looks * batch)).reshape(runs, looks, batch).sum(axis=2).cumsum(axis=1)
    n = batch * np.arange(1, looks + 1)
    means, v = d / n, sigma**2 / n
    seq_rejects = naive_rejects = 0
    for r in range(runs):
        seq_rejects += min(mixture_p(float(means[r, k]), float(v[k]), 0.05) for k in range(looks)) < 0.05
        z = np.abs(means[r]) / np.sqrt(v)
        naive_rejects += bool((2 * sps.norm.sf(z) < 0.05).any())
    assert seq_rejects <= 0.05 * runs + 3 * math.sqrt(0.05 * 0.95 * runs)
    assert naive_rejects > 3 * max(seq_rejects, 10)  # ~ 35 % of runs with 100 peeks


@pytest.mark.parametrize("true_diff", [0.0, -0.02])
def test_one_sided_mixture_stays_valid_under_repeated_looks_for_every_null_value(true_diff: float) -> None:
    """H0 "no better" (diff <= 0): 100 looks; the folded mixture crosses 0.05 in <= ~5 % of runs."""
    rng = np.random.default_rng(7)
    runs, looks, batch, sigma = 600, 100, 50, 0.35
    d = rng.normal(true_diff, sigma, (runs, looks * batch)).reshape(runs, looks, batch).sum(axis=2).cumsum(axis=1)
    n = batch * np.arange(1, looks + 1)
    means, v = d / n, sigma**2 / n
    rejects = sum(min(mixture_p(float(means[r, k]), float(v[k]), 0.03, side=1) for k in range(looks)) < 0.05
                  for r in range(runs))
    assert rejects <= 0.05 * runs + 3 * math.sqrt(0.05 * 0.95 * runs)
    if true_diff < 0:
        assert rejects <= 0.01 * runs  # a worse challenger is (almost) never "better"


def test_one_sided_mixture_spends_its_whole_budget_on_its_direction() -> None:
    v, tau = 1e-4, 0.03
    for d in (0.005, 0.02, 0.05):
        one, two = mixture_p(d, v, tau, side=1), mixture_p(d, v, tau)
        assert one <= two and (two == 1.0 or one >= two / 2 - 1e-15)  # at most twice the evidence
        assert mixture_p(-d, v, tau, side=-1) == pytest.approx(one, rel=1e-12)  # the mirror
        assert mixture_p(-d, v, tau, side=1) > 0.5  # the other direction is no evidence
    assert mixture_p(0.05, v, tau, side=1) == pytest.approx(mixture_p(0.05, v, tau) / 2, rel=1e-5)


def test_msprt_p_uses_the_arm_variances() -> None:
    a, b = arm(1000, mean=0.60, var=0.05), arm(400, mean=0.63, var=0.08)
    assert msprt_p(a, b, 0.05) == pytest.approx(mixture_p(0.03, 0.05 / 1000 + 0.08 / 400, 0.05), rel=1e-12)
    assert msprt_p(b, a, 0.05) == pytest.approx(msprt_p(a, b, 0.05), rel=1e-12)
    assert msprt_p(arm(1), b, 0.05) is None
    assert msprt_p(arm(10, var=0.0), arm(10, var=0.0), 0.05) is None


# --- sample-ratio mismatch --------------------------------------------------------------------------------


def test_srm_flags_45_55_against_a_50_50_split() -> None:
    p = srm_p(1100, 900, 0.5)
    assert p is not None and p < 0.001
    assert srm_p(1000, 1000, 0.5) == pytest.approx(1.0)
    assert srm_p(1010, 990, 0.5) == pytest.approx(1.0)


def test_srm_against_a_small_split() -> None:
    assert srm_p(9000, 1000, 0.1) == pytest.approx(1.0)
    assert srm_p(9150, 850, 0.1) < 0.001  # type: ignore[operator]
    # which arm is which matters: 9000 challengers of 10000 is a gross mismatch for a 0.1 split
    assert srm_p(1000, 9000, 0.1) < 1e-100  # type: ignore[operator]


@pytest.mark.parametrize(("cp", "ch", "split"), [(0, 0, 0.5), (10, 10, 0.0), (10, 10, 1.0), (10, 0, -0.1)])
def test_srm_undefined(cp: int, ch: int, split: float) -> None:
    assert srm_p(cp, ch, split) is None


@pytest.mark.parametrize("split", [0.2, 0.5])
def test_sequential_srm_stays_valid_under_a_look_every_100_requests(split: float) -> None:
    """Correct splits, 400 runs of 300 looks: the running minimum falls below 1 % in at most ~1 % of runs
    (a plain chi-square at every look flags far more)."""
    rng = np.random.default_rng(5)
    flagged = chi2_flagged = 0
    for _ in range(400):
        ch = np.cumsum(rng.binomial(100, split, 300))
        total = 100 * np.arange(1, 301)
        if min(srm_p(int(t - c), int(c), split) or 1.0 for t, c in zip(total, ch, strict=True)) < 0.01:
            flagged += 1
        chi2 = (ch - total * split) ** 2 / (total * split * (1 - split))  # the plain test, at every look
        chi2_flagged += float(sps.chi2.sf(chi2.max(), 1)) < 0.01
    assert flagged / 400 <= 0.0125
    assert chi2_flagged > 3 * max(flagged, 1)


# --- success rate, cost, shares ---------------------------------------------------------------------------


def test_success_diff_p() -> None:
    assert success_diff_p(arm(1000, success_rate=0.9), arm(1000, success_rate=0.9), 0.02) == 1.0
    assert success_diff_p(arm(0), arm(10), 0.02) is None
    assert success_diff_p(arm(100, success_rate=1.0), arm(100, success_rate=1.0), 0.02) is None
    assert success_diff_p(arm(100, success_rate=0.0), arm(100, success_rate=0.0), 0.02) is None
    big = success_diff_p(arm(5000, success_rate=0.9), arm(5000, success_rate=0.85), 0.02)
    assert big is not None and big < 1e-6


def test_cost_diff_p_uses_the_cost_variance_and_assumes_a_wide_one_when_unknown() -> None:
    cp, ch = arm(3000, cost=0.02, cost_sd=0.002), arm(500, cost=0.0206, cost_sd=0.002)  # +3 %, tight costs
    known = cost_diff_p(cp, ch, 0.004)
    assert known is not None and known < 0.01
    unknown = cost_diff_p(replace(cp, var_cost=None), replace(ch, var_cost=None), 0.004)
    assert unknown is not None and unknown > 0.5
    assert cost_diff_p(arm(1), arm(10), 0.004) is None


# --- evaluate ---------------------------------------------------------------------------------------------


def test_safety_reward_drop_needs_significance_and_safety_min_samples() -> None:
    champion = arm(2000, mean=0.70, var=0.05)
    early = evaluate(champion, arm(CFG.safety_min_samples - 1, mean=0.55, var=0.05), 0.1, CFG)
    assert early.safety["rewardDrop"] is True and early.reason.startswith("challenger is worse")
    ev = evaluate(champion, arm(CFG.safety_min_samples, mean=0.55, var=0.05), 0.1, CFG)
    assert ev.outcome == "rollback" and "rewardDrop" in ev.reason and "safety" in ev.reason
    check = ev.checks["safety.rewardDrop"]
    assert check.statistic == pytest.approx(0.15) and check.p is not None and check.p < CFG.safety_alpha / 3
    # a drop past the threshold that noise could explain is not a breach
    noisy = evaluate(champion, arm(CFG.safety_min_samples, mean=0.58, var=1.0), 0.1, CFG)
    assert noisy.safety["rewardDrop"] is False and noisy.checks["safety.rewardDrop"].statistic > 0.1
    assert noisy.outcome == "continue"


def test_safety_p95_and_error_rate() -> None:
    champion = arm(2250, p95=1000.0)
    ev = evaluate(champion, arm(250, p95=1600.0), 0.1, CFG)  # +60 %
    assert ev.outcome == "rollback" and ev.safety["p95Latency"] and "safety" in ev.reason
    assert not ev.srm
    ev = evaluate(arm(2250, success_rate=0.95), arm(250, success_rate=0.80), 0.1, CFG)  # -15 points
    assert ev.outcome == "rollback" and ev.safety["errorRate"] and "errorRate" in ev.reason


def test_p95_guardrail_rolls_back_with_guardrail_min_samples_when_significant() -> None:
    champion = arm(3000, p95=1000.0)
    early = evaluate(champion, arm(CFG.guardrail_min_samples - 1, p95=1350.0), 0.1, CFG)  # +35 %
    assert early.guardrails["p95Latency"] is True and early.safety["p95Latency"] is False
    assert early.outcome == "continue"
    ev = evaluate(champion, arm(CFG.guardrail_min_samples, p95=1350.0), 0.1, CFG)
    assert ev.outcome == "rollback" and ev.reason == "guardrail breached: p95Latency"
    check = ev.checks["guardrail.p95Latency"]
    assert check.statistic == pytest.approx(0.35) and check.threshold == 0.2 and check.p < check.alpha
    ok = evaluate(champion, arm(CFG.guardrail_min_samples, p95=1150.0), 0.1, CFG)  # +15 %: allowed
    assert ok.guardrails["p95Latency"] is False and ok.outcome == "continue"
    # the p95 estimate reads +22 % on 300 requests, but neither the tail nor the whole distribution is slower
    noise = evaluate(champion, arm(CFG.guardrail_min_samples, p95=1220.0, latency_of=1000.0), 0.1, CFG)
    assert noise.checks["guardrail.p95Latency"].statistic > 0.2 and noise.guardrails["p95Latency"] is False
    assert noise.checks["guardrail.p95Latency"].p == 1.0


def test_latency_evidence_sees_a_slower_tail_and_a_slower_whole() -> None:
    champion = arm(3000, p95=1000.0)
    # only the tail moved: the median is the champion's, 10 % of requests (not 5 %) above its p95
    tail = replace(arm(1000, p95=1300.0, latency_of=1000.0), share_above=lambda x: 0.10 if x <= 1000.0 else 0.04)
    ev = evaluate(champion, tail, 0.25, CFG)
    assert ev.outcome == "rollback" and ev.guardrails["p95Latency"]
    # the whole distribution 25 % slower: the tail share alone would not tell yet, the log mean does
    whole = arm(150, p95=1250.0)
    no_logs = evaluate(replace(champion, log_latency=None), replace(whole, log_latency=None), 0.1, CFG)
    both = evaluate(champion, whole, 0.1, CFG)
    p_without, p_with = no_logs.checks["guardrail.p95Latency"].p, both.checks["guardrail.p95Latency"].p
    assert p_without is not None and p_with is not None and p_with < CFG.guardrail_alpha / 3 < p_without
    assert both.guardrails["p95Latency"] and not no_logs.guardrails["p95Latency"]
    # a faster challenger is never "slower", however noisy its p95
    faster = evaluate(champion, arm(3000, p95=1250.0, latency_of=800.0), 0.1, CFG)
    assert faster.checks["guardrail.p95Latency"].p == 1.0 and not faster.guardrails["p95Latency"]


def test_cost_and_success_guardrails() -> None:
    ev = evaluate(arm(3600, cost=0.02), arm(400, cost=0.025), 0.1, CFG)  # +25 %
    assert ev.outcome == "rollback" and ev.guardrails["cost"] and ev.reason == "guardrail breached: cost"
    # a success-rate drop above max_success_rate_drop must also be significant
    small = evaluate(arm(3600, success_rate=0.90), arm(400, success_rate=0.87), 0.1, CFG)
    assert small.guardrails["successRate"] is False and small.outcome == "continue"
    large = evaluate(arm(20000, success_rate=0.90), arm(5000, success_rate=0.86), 0.2, CFG)
    assert large.guardrails["successRate"] is True and large.outcome == "rollback"


def test_guardrail_blocks_a_promotion() -> None:
    champion, better = arm(5000, mean=0.65), arm(5000, mean=0.70, p95=1500 * 1.3)
    ev = evaluate(champion, better, 0.5, CFG)
    assert ev.outcome == "rollback" and ev.guardrails["p95Latency"]


def test_sample_ratio_mismatch_neither_promotes_nor_rolls_back_but_a_safety_breach_does() -> None:
    ev = evaluate(arm(1100), arm(900), 0.5, CFG)  # 45/55 against a configured 50/50
    assert ev.srm is True and ev.srm_p is not None and ev.srm_p < CFG.srm_alpha
    assert ev.outcome == "inconclusive" and "sample ratio mismatch" in ev.reason
    better = evaluate(arm(5500, mean=0.65), arm(4500, mean=0.70), 0.5, CFG)
    assert better.srm and better.outcome == "inconclusive"
    worse = evaluate(arm(5500, mean=0.70), arm(4500, mean=0.66), 0.5, CFG)  # significant, not a safety breach
    assert worse.outcome == "inconclusive"
    guard = evaluate(arm(5500), arm(4500, p95=1500 * 1.35), 0.5, CFG)
    assert guard.guardrails["p95Latency"] and guard.outcome == "inconclusive"
    harm = evaluate(arm(5500, success_rate=0.95), arm(4500, success_rate=0.70), 0.5, CFG)
    assert harm.outcome == "rollback" and harm.safety["errorRate"]
    assert evaluate(arm(1000), arm(1000), 0.5, CFG).srm is False
    # a mismatch once seen stays flagged: the running minimum is carried
    assert evaluate(arm(1000), arm(1000), 0.5, CFG, Running(srm_p=1e-5)).srm is True


def test_a_better_challenger_past_half_a_guardrail_waits_instead_of_being_promoted() -> None:
    slower = evaluate(arm(5000, mean=0.65), arm(5000, mean=0.68, p95=1500 * 1.15), 0.5, CFG)  # p95 +15 %
    assert slower.look_p is not None and slower.look_p < CFG.alpha and not any(slower.guardrails.values())
    assert slower.outcome == "continue" and "p95Latency" in slower.reason and "waiting" in slower.reason
    costlier = evaluate(arm(5000, mean=0.65), arm(5000, mean=0.68, cost=0.0225), 0.5, CFG)  # cost +12.5 %
    assert costlier.outcome == "continue" and "cost" in costlier.reason
    fine = evaluate(arm(5000, mean=0.65), arm(5000, mean=0.68, p95=1500 * 1.05), 0.5, CFG)  # +5 %: promoted
    assert fine.outcome == "promote"


def test_below_min_samples_continues() -> None:
    champion, better = arm(CFG.min_samples - 1, mean=0.60), arm(CFG.min_samples - 1, mean=0.70, var=0.01)
    ev = evaluate(champion, better, 0.5, CFG)
    assert ev.msprt_p is not None and ev.msprt_p < CFG.alpha  # significant, but too early
    assert ev.outcome == "continue"
    assert ev.reason.startswith("collecting")


def test_significantly_better_with_enough_samples_promotes() -> None:
    ev = evaluate(arm(5000, mean=0.65), arm(5000, mean=0.68), 0.5, CFG)
    assert ev.outcome == "promote"
    assert ev.diff == pytest.approx(0.03)
    assert ev.welch_p is not None and ev.welch_p < CFG.alpha
    assert ev.look_p is not None and ev.look_p < CFG.alpha
    assert ev.ci_low is not None and ev.ci_high is not None and 0 < ev.ci_low < 0.03 < ev.ci_high
    assert not any(ev.guardrails.values()) and not any(ev.safety.values()) and not ev.srm


def test_the_reward_tests_wait_for_enough_requests_to_estimate_a_variance() -> None:
    n = MIN_TEST_SAMPLES - 1
    ev = evaluate(arm(n * 4, mean=0.90, var=0.01), arm(n, mean=0.10, var=0.01), 0.2, CFG)
    assert ev.look_p is None and ev.outcome == "continue"
    ev = evaluate(arm(n * 4 + 4, mean=0.90, var=0.01), arm(n + 1, mean=0.10, var=0.01), 0.2, CFG)
    assert ev.outcome == "rollback" and ev.reason.startswith("challenger is worse")


def test_significantly_worse_rolls_back_before_min_samples() -> None:
    ev = evaluate(arm(800, mean=0.70), arm(800, mean=0.65), 0.5, CFG)
    assert not any(ev.safety.values())
    assert ev.outcome == "rollback"
    assert ev.reason.startswith("challenger is worse")


def test_no_difference_continues() -> None:
    ev = evaluate(arm(5000, mean=0.675), arm(5000, mean=0.676), 0.5, CFG)
    assert ev.outcome == "continue"
    assert ev.reason == "no significant difference yet"


def test_msprt_p_is_a_running_minimum_for_the_record() -> None:
    champion, challenger = arm(5000, mean=0.675), arm(5000, mean=0.676)
    look = evaluate(champion, challenger, 0.5, CFG).msprt_p
    assert look == msprt_p(champion, challenger, CFG.tau) == 1.0
    assert evaluate(champion, challenger, 0.5, CFG, Running(msprt_p=0.2)).msprt_p == 0.2
    assert evaluate(champion, challenger, 0.5, CFG, 0.2).msprt_p == 0.2  # an older rollout's bare float
    strong = evaluate(arm(5000, mean=0.65), arm(5000, mean=0.68), 0.5, CFG, Running(msprt_p=0.2)).msprt_p
    assert strong is not None and strong < 0.2
    # no look possible (an arm has < 2 samples): the previous minimum stands
    assert evaluate(arm(10), arm(1), 0.5, CFG, Running(msprt_p=0.3)).msprt_p == 0.3
    assert evaluate(arm(10), arm(1), 0.5, CFG).msprt_p is None


def test_a_crossing_remembered_from_an_earlier_look_does_not_promote() -> None:
    champion, challenger = arm(5000, mean=0.675), arm(5000, mean=0.677)
    ev = evaluate(champion, challenger, 0.5, CFG, Running(msprt_p=0.001))
    assert ev.msprt_p == 0.001 and ev.look_p is not None and ev.look_p > CFG.alpha
    assert ev.outcome == "continue"


def test_empty_challenger() -> None:
    ev = evaluate(arm(50), ArmData(0, 0.0, 0.0, 0.0, None, 0.0), 0.1, CFG)
    assert ev.outcome == "continue"
    assert ev.diff is None and ev.welch_p is None and ev.msprt_p is None and ev.ci_low is None
    assert not ev.safety["rewardDrop"] and not ev.guardrails["successRate"]


def test_evaluation_doc_carries_every_check_s_evidence() -> None:
    ev = evaluate(arm(5000, mean=0.65), arm(5000, mean=0.68), 0.5, CFG)
    doc = ev.to_doc()
    assert doc["outcome"] == "promote"
    assert (doc["nChampion"], doc["nChallenger"]) == (5000, 5000)
    assert (doc["ciLow"], doc["ciHigh"], doc["welchP"], doc["msprtP"], doc["srmP"], doc["lookP"]) == (
        ev.ci_low, ev.ci_high, ev.welch_p, ev.msprt_p, ev.srm_p, ev.look_p)
    assert set(doc) == {"outcome", "reason", "nChampion", "nChallenger", "diff", "ciLow", "ciHigh", "welchP",
                        "msprtP", "lookP", "srmP", "srm", "guardrails", "safety", "checks", "meanChampion",
                        "meanChallenger"}
    assert set(doc["checks"]) == {"guardrail.p95Latency", "guardrail.cost", "guardrail.successRate",
                                  "safety.rewardDrop", "safety.p95Latency", "safety.errorRate"}
    assert set(doc["checks"]["guardrail.cost"]) == {"statistic", "threshold", "p", "alpha", "breached"}
    json.dumps(doc)  # storable
    assert isinstance(ev, Evaluation)


def test_the_error_budget_adds_up_to_five_percent() -> None:
    assert CFG.alpha + CFG.rollback_alpha + CFG.guardrail_alpha + CFG.safety_alpha == pytest.approx(0.05)


# --- config -----------------------------------------------------------------------------------------------


def test_rollout_config_doc_round_trip() -> None:
    custom = replace(CFG, min_samples=500, alpha=0.01, tau=0.1, safety_max_reward_drop=0.2)
    assert parse("rollout", custom.to_doc())[0] == custom
    assert parse("rollout", CFG.to_doc())[0] == CFG
    assert parse("rollout", {})[0] == CFG
    assert parse("rollout", {"minSamples": 42})[0] == replace(CFG, min_samples=42)
    with pytest.raises(ConfigInvalid, match="unknownKey"):  # a typo is an error, not silently ignored
        parse("rollout", {"minSamples": 42, "unknownKey": 1})
    assert set(CFG.to_doc()) >= {"minSamples", "alpha", "tau", "srmAlpha", "safetyMaxRewardDrop"}


def test_seed_rollout_config_is_the_default() -> None:
    doc = json.loads((ROOT / "seed" / "config" / "rollout.json").read_text())
    cfg = parse("rollout", doc)[0]
    assert cfg == CFG
    assert {k: doc[k] for k in cfg.to_doc()} == cfg.to_doc()


@pytest.mark.parametrize(
    "doc",
    [
        {"minSamples": 1},
        {"minSamples": 0},
        {"alpha": 0.0},
        {"alpha": 0.5},
        {"alpha": -0.1},
        {"alpha": math.nan},
        {"srmAlpha": 0.0},
        {"srmAlpha": 0.7},
        {"tau": 0.0},
        {"tau": -0.05},
        {"tau": math.inf},
        {"tau": math.nan},
    ],
)
def test_rollout_config_validation(doc: dict) -> None:
    with pytest.raises(ConfigInvalid):
        parse("rollout", doc)


def test_a_p95_within_the_absolute_objective_breaches_no_latency_check() -> None:
    """A fast champion (p95 200 ms) and a challenger at 320 ms (+60 %), better on reward: without an SLO the
    safety check rolls it back; with p95SloMs 500 both latency checks are waived and it is promoted."""
    champion, challenger = arm(4000, mean=0.60, p95=200.0), arm(1000, mean=0.66, p95=320.0)
    assert evaluate(champion, challenger, 0.2, CFG).outcome == "rollback"
    slo = dataclasses.replace(CFG, p95_slo_ms=500.0)
    ev = evaluate(champion, challenger, 0.2, slo)
    assert ev.outcome == "promote", ev.reason
    for name in ("guardrail.p95Latency", "safety.p95Latency"):
        check = ev.checks[name]
        assert check.waived and not check.breached and check.statistic == pytest.approx(0.6)
        assert check.to_doc()["waived"] is True
    # past the objective the relative checks hold again
    slow = evaluate(arm(4000, mean=0.60, p95=400.0), arm(1000, mean=0.66, p95=640.0), 0.2, slo)
    assert slow.outcome == "rollback" and slow.safety["p95Latency"] and not slow.checks["safety.p95Latency"].waived
    assert RolloutConfig(p95_slo_ms=500.0).to_doc()["p95SloMs"] == 500.0 and "p95SloMs" not in CFG.to_doc()
    with pytest.raises(ValueError, match="p95_slo_ms"):
        RolloutConfig(p95_slo_ms=0.0)
