"""Off-policy estimates from per-action summaries (domain/ope.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opsloop.domain.ope import OffPolicyEstimate, estimate
from opsloop.domain.stats import Summary, total

LOGGING = {"a": 0.6, "b": 0.3, "c": 0.1}  # the champion's choice probabilities, logged as propensities
REWARD_MEANS = {"a": 0.5, "b": 0.7, "c": 0.9}  # Bernoulli rewards
TARGET = {"a": 0.2, "b": 0.3, "c": 0.5}
TRUE_TARGET = sum(TARGET[k] * REWARD_MEANS[k] for k in TARGET)  # 0.76
TRUE_LOGGED = sum(LOGGING[k] * REWARD_MEANS[k] for k in LOGGING)  # 0.60


def simulate(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(action index, reward) of n decisions by the logging policy."""
    rng = np.random.default_rng(seed)
    keys = list(LOGGING)
    actions = rng.choice(len(keys), size=n, p=[LOGGING[k] for k in keys])
    means = np.array([REWARD_MEANS[k] for k in keys])
    rewards = (rng.random(n) < means[actions]).astype(float)
    return actions, rewards


def summaries_of(actions: np.ndarray, rewards: np.ndarray) -> dict[str, Summary]:
    """Per-action summaries the way the loop builds them: one Summary.of per observation, then total()."""
    keys = list(LOGGING)
    out = {}
    for i, k in enumerate(keys):
        rows = [Summary.of(reward=float(r), success=r > 0, cost_usd=0.0, duration_ms=100.0, propensity=LOGGING[k])
                for r in rewards[actions == i]]
        out[k] = total(rows)
    return out


def fast_summaries(actions: np.ndarray, rewards: np.ndarray) -> dict[str, Summary]:
    """The same off-policy sums, computed with numpy (Summary.of per row is slow for many seeds)."""
    out = {}
    for i, k in enumerate(LOGGING):
        r = rewards[actions == i]
        w = 1.0 / LOGGING[k]
        out[k] = Summary(
            n=len(r), successes=int((r > 0).sum()), sum_reward=float(r.sum()), sum_reward2=float((r**2).sum()),
            n_p=len(r), sum_w=w * len(r), sum_w2=w * w * len(r), sum_rw=float((r * w).sum()),
            sum_r2w2=float(((r * w) ** 2).sum()), sum_rw2=float((r * w * w).sum()),
            weight=float(len(r)), w_successes=float((r > 0).sum()), w_p=float(len(r)),
        )
    return out


@pytest.fixture(scope="module")
def logged() -> tuple[np.ndarray, np.ndarray, dict[str, Summary]]:
    actions, rewards = simulate(11, 12_000)
    return actions, rewards, summaries_of(actions, rewards)


def test_fast_summaries_match_summary_of(logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    actions, rewards, slow = logged
    fast = fast_summaries(actions, rewards)
    for k in LOGGING:
        for attr in ("n", "successes", "n_p", "sum_reward", "sum_w", "sum_w2", "sum_rw", "sum_r2w2", "sum_rw2"):
            assert getattr(fast[k], attr) == pytest.approx(getattr(slow[k], attr), rel=1e-9)


def test_estimates_cover_the_true_value(logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    _, rewards, per_action = logged
    est = estimate(per_action, TARGET)
    assert est.n == len(rewards)
    assert est.snips is not None and est.snips_ci is not None
    assert est.ips is not None and est.ips_ci is not None
    assert est.snips_ci[0] < TRUE_TARGET < est.snips_ci[1]
    assert est.ips_ci[0] < TRUE_TARGET < est.ips_ci[1]
    assert est.snips == pytest.approx(TRUE_TARGET, abs=0.03)
    # and not the logging policy's value: the estimate really re-weights
    assert est.logged_mean == pytest.approx(rewards.mean())
    assert not est.snips_ci[0] < TRUE_LOGGED < est.snips_ci[1]
    assert 0 < est.ess < est.n


def test_estimates_match_direct_computation(logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    actions, rewards, per_action = logged
    keys = list(LOGGING)
    omega = np.array([TARGET[keys[a]] / LOGGING[keys[a]] for a in actions])
    est = estimate(per_action, TARGET)
    n = len(rewards)
    ips = float((omega * rewards).mean())
    ips_half = 1.959963984540054 * float((omega * rewards).std(ddof=0)) / math.sqrt(n)
    snips = float((omega * rewards).sum() / omega.sum())
    snips_half = 1.959963984540054 * math.sqrt(float((omega**2 * (rewards - snips) ** 2).sum())) / omega.sum()
    assert est.ips == pytest.approx(ips, rel=1e-9)
    assert est.ips_ci == pytest.approx((ips - ips_half, ips + ips_half), rel=1e-6)
    assert est.snips == pytest.approx(snips, rel=1e-9)
    assert est.snips_ci == pytest.approx((snips - snips_half, snips + snips_half), rel=1e-6)
    assert est.ess == pytest.approx(omega.sum() ** 2 / (omega**2).sum(), rel=1e-9)


def test_target_probabilities_are_normalised(logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    per_action = logged[2]
    assert estimate(per_action, {k: 10 * v for k, v in TARGET.items()}) == estimate(per_action, TARGET)


def test_snips_interval_coverage_over_seeds() -> None:
    covered_snips = covered_ips = 0
    seeds = 40
    for seed in range(100, 100 + seeds):
        est = estimate(fast_summaries(*simulate(seed, 8_000)), TARGET)
        assert est.snips_ci is not None and est.ips_ci is not None
        covered_snips += est.snips_ci[0] < TRUE_TARGET < est.snips_ci[1]
        covered_ips += est.ips_ci[0] < TRUE_TARGET < est.ips_ci[1]
    assert covered_snips >= 0.85 * seeds
    assert covered_ips >= 0.85 * seeds


def test_target_equal_to_logging_policy_gives_the_logged_mean(
    logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]],
) -> None:
    _, rewards, per_action = logged
    est = estimate(per_action, LOGGING)
    assert est.snips == pytest.approx(rewards.mean(), rel=1e-12)
    assert est.snips == pytest.approx(est.logged_mean, rel=1e-12)
    assert est.ips == pytest.approx(rewards.mean(), rel=1e-12)
    assert est.ess == pytest.approx(len(rewards), rel=1e-9)  # all weights 1


def test_deterministic_target_picks_one_actions_mean(
    logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]],
) -> None:
    actions, rewards, per_action = logged
    est = estimate(per_action, {"c": 1.0})
    assert est.snips == pytest.approx(rewards[actions == 2].mean(), rel=1e-12)
    # the delta-method interval reduces to the normal interval of a plain mean
    rc = rewards[actions == 2]
    half = 1.959963984540054 * float(rc.std(ddof=0)) / math.sqrt(len(rc))
    assert est.snips_ci == pytest.approx((rc.mean() - half, rc.mean() + half), rel=1e-9)
    assert est.ess == pytest.approx((actions == 2).sum(), rel=1e-9)


@pytest.mark.parametrize("per_action", [{}, {"a": Summary()}, {"a": Summary(), "b": Summary()}])
def test_no_logged_data_gives_no_estimate(per_action: dict[str, Summary]) -> None:
    est = estimate(per_action, TARGET)
    assert est == OffPolicyEstimate(0, None, None, None, None, 0.0, None)
    assert est.to_doc() == {"n": 0, "ips": None, "ipsCi": None, "snips": None, "snipsCi": None, "ess": 0.0,
                            "loggedMean": None}


def test_observations_without_propensity_do_not_count() -> None:
    plain = total([Summary.of(reward=1.0, success=True, cost_usd=0.0, duration_ms=1.0) for _ in range(5)])
    assert estimate({"a": plain}, TARGET).n == 0


def test_to_doc(logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    est = estimate(logged[2], TARGET)
    doc = est.to_doc()
    assert doc["snipsCi"] == list(est.snips_ci)  # type: ignore[arg-type]
    assert doc["ipsCi"] == list(est.ips_ci)  # type: ignore[arg-type]
    assert (doc["n"], doc["ips"], doc["snips"], doc["ess"], doc["loggedMean"]) == (
        est.n, est.ips, est.snips, est.ess, est.logged_mean)


@pytest.mark.parametrize(
    "target", [{}, {"a": 0.0}, {"a": -0.1, "b": 1.1}, {"a": math.nan}, {"a": math.inf}, {"a": 0.5, "b": math.nan}]
)
def test_bad_target_raises(target: dict[str, float], logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    with pytest.raises(ValueError):
        estimate(logged[2], target)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 1.5])
def test_bad_level_raises(level: float, logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    with pytest.raises(ValueError):
        estimate(logged[2], TARGET, level=level)


def test_a_higher_level_widens_the_intervals(logged: tuple[np.ndarray, np.ndarray, dict[str, Summary]]) -> None:
    narrow, wide = estimate(logged[2], TARGET, level=0.8), estimate(logged[2], TARGET, level=0.99)
    assert narrow.snips == wide.snips
    assert wide.snips_ci[0] < narrow.snips_ci[0] < narrow.snips_ci[1] < wide.snips_ci[1]  # type: ignore[index]
