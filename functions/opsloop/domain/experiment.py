"""Deciding a canary: champion vs challenger, with statistics that survive repeated looks.

* Reward: Welch's t-test (scipy) for the record, and a mixture sequential probability ratio test
  (mSPRT, Johari et al. 2017, normal mixture with scale ``tau`` on the mean difference) whose running
  minimum p-value is *always valid*: looking every hour does not inflate false promotions.
* Sample-ratio mismatch: chi-square of observed arm counts against the configured split.
* Guardrails (p95 latency, cost, success rate) block a promotion and, once enough challenger data is in,
  roll back; safety thresholds (reward drop, p95 increase, error-rate increase) roll back at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import stats as sps

Outcome = Literal["promote", "rollback", "continue", "inconclusive"]


@dataclass(frozen=True)
class ArmData:
    """What the decision needs to know about one arm."""

    n: int
    mean_reward: float
    var_reward: float
    success_rate: float
    p95_latency: float | None
    mean_cost: float


@dataclass(frozen=True)
class RolloutConfig:
    """``config/rollout``; every threshold is named after what it bounds."""

    min_samples: int = 1000  # per arm before a promotion (LEARN_MIN_SAMPLES)
    alpha: float = 0.05
    tau: float = 0.05  # mSPRT mixture scale: the size of reward difference we care to detect
    srm_alpha: float = 0.001
    # guardrails: a promotion needs all of them; breaching one with >= guardrail_min_samples rolls back
    guardrail_min_samples: int = 300
    guardrail_alpha: float = 0.05  # a success-rate drop must also be significant (sequential test)
    max_p95_increase_ratio: float = 0.20
    max_cost_increase_ratio: float = 0.20
    max_success_rate_drop: float = 0.02
    # safety thresholds: roll back at once, without waiting for significance
    safety_min_samples: int = 200
    safety_max_reward_drop: float = 0.10
    safety_max_p95_increase_ratio: float = 0.50
    safety_max_error_rate_increase: float = 0.10

    def __post_init__(self) -> None:
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be >= 2, got {self.min_samples!r}")
        for name in ("alpha", "srm_alpha"):
            v = getattr(self, name)
            if not 0.0 < v < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {v!r}")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        if not 0.0 < self.guardrail_alpha < 0.5:
            raise ValueError(f"guardrail_alpha must be in (0, 0.5), got {self.guardrail_alpha!r}")
        for name in ("max_p95_increase_ratio", "max_cost_increase_ratio", "max_success_rate_drop",
                     "safety_max_reward_drop", "safety_max_p95_increase_ratio", "safety_max_error_rate_increase"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")

    def to_doc(self) -> dict[str, Any]:
        return {_DOC_KEYS[k]: v for k, v in asdict(self).items()}


_DOC_KEYS = {
    "min_samples": "minSamples",
    "alpha": "alpha",
    "tau": "tau",
    "srm_alpha": "srmAlpha",
    "guardrail_min_samples": "guardrailMinSamples",
    "guardrail_alpha": "guardrailAlpha",
    "max_p95_increase_ratio": "maxP95IncreaseRatio",
    "max_cost_increase_ratio": "maxCostIncreaseRatio",
    "max_success_rate_drop": "maxSuccessRateDrop",
    "safety_min_samples": "safetyMinSamples",
    "safety_max_reward_drop": "safetyMaxRewardDrop",
    "safety_max_p95_increase_ratio": "safetyMaxP95IncreaseRatio",
    "safety_max_error_rate_increase": "safetyMaxErrorRateIncrease",
}


@dataclass(frozen=True)
class Evaluation:
    outcome: Outcome
    reason: str
    n_champion: int
    n_challenger: int
    diff: float | None  # challenger mean reward - champion mean reward
    ci_low: float | None  # 95 % Welch interval of the difference
    ci_high: float | None
    welch_p: float | None
    msprt_p: float | None  # always-valid p-value after this look (running minimum)
    srm_p: float | None
    srm: bool
    guardrails: dict[str, bool]  # name -> breached
    safety: dict[str, bool]

    def to_doc(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "reason": self.reason, "nChampion": self.n_champion,
            "nChallenger": self.n_challenger, "diff": self.diff, "ciLow": self.ci_low, "ciHigh": self.ci_high,
            "welchP": self.welch_p, "msprtP": self.msprt_p, "srmP": self.srm_p, "srm": self.srm,
            "guardrails": self.guardrails, "safety": self.safety,
        }


def welch(a: ArmData, b: ArmData) -> tuple[float, float, float] | None:
    """(p-value, ci_low, ci_high) of mean(b) - mean(a) by Welch's t-test; None when undefined."""
    if a.n < 2 or b.n < 2:
        return None
    se2 = a.var_reward / a.n + b.var_reward / b.n
    if se2 <= 0:
        return None
    res = sps.ttest_ind_from_stats(b.mean_reward, math.sqrt(b.var_reward), b.n,
                                   a.mean_reward, math.sqrt(a.var_reward), a.n, equal_var=False)
    num = se2 * se2
    den = (a.var_reward / a.n) ** 2 / (a.n - 1) + (b.var_reward / b.n) ** 2 / (b.n - 1)
    dof = num / den if den > 0 else float(a.n + b.n - 2)
    half = float(sps.t.ppf(0.975, dof)) * math.sqrt(se2)
    diff = b.mean_reward - a.mean_reward
    return float(res.pvalue), diff - half, diff + half


def mixture_p(diff: float, v: float, tau: float) -> float:
    """1/Lambda of a normal-mixture SPRT for H0: difference 0, given its estimate and variance.

    Stopping the first time this falls below alpha keeps the type-I error below alpha however often one
    looks (Johari, Pekelis & Walsh, "Always valid inference", 2017).
    """
    t2 = tau * tau
    log_lambda = 0.5 * math.log(v / (v + t2)) + (diff * diff * t2) / (2.0 * v * (v + t2))
    return float(min(1.0, math.exp(min(-log_lambda, 700.0))))  # (exp overflows past ~709; p is 1 there)


def msprt_p(a: ArmData, b: ArmData, tau: float) -> float | None:
    """This look's always-valid p-value for H0: equal mean rewards."""
    if a.n < 2 or b.n < 2:
        return None
    v = a.var_reward / a.n + b.var_reward / b.n
    if v <= 0:
        return None
    return mixture_p(b.mean_reward - a.mean_reward, v, tau)


def srm_p(n_champion: int, n_challenger: int, split: float) -> float | None:
    """Chi-square goodness of fit of the arm counts to the configured challenger share."""
    total = n_champion + n_challenger
    if total == 0 or not 0.0 < split < 1.0:
        return None
    res = sps.chisquare([n_champion, n_challenger], f_exp=[total * (1 - split), total * split])
    return float(res.pvalue)


def success_diff_p(champion: ArmData, challenger: ArmData, tau: float) -> float | None:
    """Always-valid p-value (acted on at once, so no running minimum is needed) of a success-rate gap."""
    n1, n2 = champion.n, challenger.n
    if n1 == 0 or n2 == 0:
        return None
    pooled = (champion.success_rate * n1 + challenger.success_rate * n2) / (n1 + n2)
    v = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if v <= 0:
        return None if champion.success_rate == challenger.success_rate else 0.0
    return mixture_p(challenger.success_rate - champion.success_rate, v, tau)


def _ratio_increase(new: float | None, old: float | None) -> float:
    if new is None or old is None or old <= 0:
        return 0.0
    return new / old - 1.0


def evaluate(
    champion: ArmData,
    challenger: ArmData,
    split: float,
    cfg: RolloutConfig,
    previous_msprt_p: float | None = None,
) -> Evaluation:
    """One look at a running canary."""
    w = welch(champion, challenger)
    look_p = msprt_p(champion, challenger, cfg.tau)
    seq_p = look_p if previous_msprt_p is None else (
        previous_msprt_p if look_p is None else min(previous_msprt_p, look_p)
    )
    s_p = srm_p(champion.n, challenger.n, split)
    srm = s_p is not None and s_p < cfg.srm_alpha
    diff = challenger.mean_reward - champion.mean_reward if champion.n and challenger.n else None

    p95_up = _ratio_increase(challenger.p95_latency, champion.p95_latency)
    cost_up = _ratio_increase(challenger.mean_cost, champion.mean_cost)
    success_drop = champion.success_rate - challenger.success_rate
    drop_p = success_diff_p(champion, challenger, max(cfg.max_success_rate_drop, 1e-3))
    guardrails = {
        "p95Latency": p95_up > cfg.max_p95_increase_ratio,
        "cost": cost_up > cfg.max_cost_increase_ratio,
        "successRate": success_drop > cfg.max_success_rate_drop and drop_p is not None
        and drop_p < cfg.guardrail_alpha,
    }
    safety = {
        "rewardDrop": diff is not None and -diff > cfg.safety_max_reward_drop,
        "p95Latency": p95_up > cfg.safety_max_p95_increase_ratio,
        "errorRate": challenger.n > 0 and success_drop > cfg.safety_max_error_rate_increase,
    }

    def result(outcome: Outcome, reason: str) -> Evaluation:
        return Evaluation(
            outcome, reason, champion.n, challenger.n, diff,
            None if w is None else w[1], None if w is None else w[2], None if w is None else w[0],
            seq_p, s_p, srm, guardrails, safety,
        )

    significant = seq_p is not None and seq_p < cfg.alpha
    if challenger.n >= cfg.safety_min_samples and any(safety.values()):
        breached = ", ".join(k for k, v in safety.items() if v)
        return result("rollback", f"safety threshold breached: {breached}")
    # the running minimum may date from an earlier look: the current look must agree on the direction
    if significant and diff is not None and diff < 0 and w is not None and w[0] < cfg.alpha:
        return result("rollback", f"challenger is worse (always-valid p={seq_p:.4g})")
    if challenger.n >= cfg.guardrail_min_samples and any(guardrails.values()):
        breached = ", ".join(k for k, v in guardrails.items() if v)
        return result("rollback", f"guardrail breached: {breached}")
    if srm:
        return result("inconclusive", f"sample ratio mismatch (p={s_p:.3g}): assignment is broken, data untrusted")
    if min(champion.n, challenger.n) < cfg.min_samples:
        return result("continue", f"collecting: {min(champion.n, challenger.n)} of {cfg.min_samples} per arm")
    if significant and diff is not None and diff > 0:
        if w is not None and w[0] < cfg.alpha:
            return result("promote", f"challenger better by {diff:.4f} (always-valid p={seq_p:.4g})")
        return result("continue", "sequential test significant, Welch's test not yet")
    return result("continue", "no significant difference yet")
