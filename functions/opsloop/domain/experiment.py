"""Deciding a canary: champion vs challenger, with error control under continuous peeking.

Every decision rests on a test that stays valid however often the canary is looked at (every 10 minutes
for weeks): a normal-mixture sequential probability ratio test (mSPRT, Johari, Pekelis & Walsh, "Always
valid inference", 2017), whose p-value may be read at any look without inflating the error. Each decision
is one-sided (a half-normal mixture over the direction it acts on), so its whole budget goes to the
direction that matters.

* Reward: promotion needs *this look's* always-valid p of "challenger better" below ``alpha``; rollback,
  this look's p of "challenger worse" below ``rollbackAlpha``. A crossing remembered from an earlier look
  decides nothing.
* Guardrails (p95 latency, mean cost, success rate) and safety thresholds (reward drop, p95 increase,
  error-rate increase): each is breached only when the point estimate passes its threshold *and* an
  always-valid test says the challenger is worse on that metric at level ``guardrailAlpha / 3`` (safety:
  ``safetyAlpha / 3``). Latency is tested two ways at once, their likelihood ratios averaged (still a valid
  test): the mean of log latency (a slowdown of the whole distribution) and the share of requests above
  the champion's p95 (a slower tail). Cost is tested as the difference of means, success as a difference
  of proportions.
* Sample-ratio mismatch: a sequential Bayes-factor test of the arm counts against the configured split
  (beta-binomial mixture, Lindon & Malek 2022), valid under repeated looks; a mismatched run neither
  promotes nor rolls back on its reward or guardrail evidence (its data is not trusted), but a safety
  breach still rolls back.

The error budget of an A/A canary, over its whole life: at most ``alpha`` for promotion, ``rollbackAlpha``
for a reward rollback, ``guardrailAlpha`` for the guardrails, ``safetyAlpha`` for the safety thresholds;
with the defaults 0.02 + 0.02 + 0.005 + 0.005 = 5 %. The mixture tests are conservative, so measured rates
are lower (``bench/canary_sim.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from scipy import special

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
    var_cost: float | None = None  # None: unknown (buckets scored before it was kept); a CV of 1 is assumed
    share_above: Callable[[float], float] | None = field(default=None, compare=False)  # latency > x
    log_latency: tuple[float, float] | None = None  # mean and variance of ln(latency ms); None: unknown


@dataclass(frozen=True)
class RolloutConfig:
    """``config/rollout``; every threshold is named after what it bounds."""

    min_samples: int = 1000  # per arm before a promotion (LEARN_MIN_SAMPLES)
    alpha: float = 0.02  # false promotion, over the canary's life (one-sided)
    rollback_alpha: float = 0.02  # rollback on reward ("challenger worse", one-sided)
    tau: float = 0.03  # mSPRT mixture scale: the size of reward difference we care to detect
    srm_alpha: float = 0.005  # a flagged run makes no decision, so this costs no false decision
    # guardrails: a promotion needs all of them; breaching one with >= guardrail_min_samples rolls back
    guardrail_min_samples: int = 300
    guardrail_alpha: float = 0.005  # shared by the three guardrails (each tested at a third)
    max_p95_increase_ratio: float = 0.20
    max_cost_increase_ratio: float = 0.20
    max_success_rate_drop: float = 0.02
    # safety thresholds: roll back as soon as the breach is significant, whatever else is going on
    safety_min_samples: int = 200
    safety_alpha: float = 0.005  # shared by the three safety thresholds
    safety_max_reward_drop: float = 0.10
    safety_max_p95_increase_ratio: float = 0.50
    safety_max_error_rate_increase: float = 0.10
    # an absolute latency objective: a challenger whose p95 is within it breaches neither p95 check (a
    # slower p95 than a very fast champion's is then no harm the reward does not already price); None: off
    p95_slo_ms: float | None = None
    # tuning by experiment (kinds that learn from canaries): the canary's split, and how long one may stay
    # inconclusive before it is ended as such (it still counts as a trial)
    experiment_split: float = 0.2
    max_duration_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be >= 2, got {self.min_samples!r}")
        for name in ("alpha", "rollback_alpha", "srm_alpha", "guardrail_alpha", "safety_alpha"):
            v = getattr(self, name)
            if not 0.0 < v < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {v!r}")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        for name in ("max_p95_increase_ratio", "max_cost_increase_ratio", "max_success_rate_drop",
                     "safety_max_reward_drop", "safety_max_p95_increase_ratio", "safety_max_error_rate_increase"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0.0 < self.experiment_split <= 0.5:
            raise ValueError(f"experiment_split must be in (0, 0.5], got {self.experiment_split!r}")
        if not (math.isfinite(self.max_duration_hours) and self.max_duration_hours > 0):
            raise ValueError(f"max_duration_hours must be > 0, got {self.max_duration_hours!r}")
        if self.p95_slo_ms is not None and not (math.isfinite(self.p95_slo_ms) and self.p95_slo_ms > 0):
            raise ValueError(f"p95_slo_ms must be > 0, got {self.p95_slo_ms!r}")

    def to_doc(self) -> dict[str, Any]:
        return {_DOC_KEYS[k]: v for k, v in asdict(self).items() if v is not None}


_DOC_KEYS = {
    "min_samples": "minSamples",
    "alpha": "alpha",
    "rollback_alpha": "rollbackAlpha",
    "tau": "tau",
    "srm_alpha": "srmAlpha",
    "guardrail_min_samples": "guardrailMinSamples",
    "guardrail_alpha": "guardrailAlpha",
    "max_p95_increase_ratio": "maxP95IncreaseRatio",
    "max_cost_increase_ratio": "maxCostIncreaseRatio",
    "max_success_rate_drop": "maxSuccessRateDrop",
    "safety_min_samples": "safetyMinSamples",
    "safety_alpha": "safetyAlpha",
    "safety_max_reward_drop": "safetyMaxRewardDrop",
    "safety_max_p95_increase_ratio": "safetyMaxP95IncreaseRatio",
    "safety_max_error_rate_increase": "safetyMaxErrorRateIncrease",
    "experiment_split": "experimentSplit",
    "max_duration_hours": "maxDurationHours",
    "p95_slo_ms": "p95SloMs",
}


@dataclass(frozen=True)
class Check:
    """One guardrail or safety threshold at this look: the evidence its verdict rests on."""

    statistic: float | None  # challenger vs champion: a ratio increase or a drop, as the threshold is stated
    threshold: float
    p: float | None  # always-valid p-value of "no difference on this metric" (the statistic gives the direction)
    alpha: float  # the level the test is held to
    breached: bool
    waived: bool = False  # within an absolute objective (p95SloMs): never breached, never holds a promotion

    def to_doc(self) -> dict[str, Any]:
        doc = {"statistic": self.statistic, "threshold": self.threshold, "p": self.p, "alpha": self.alpha,
               "breached": self.breached}
        if self.waived:
            doc["waived"] = True
        return doc


@dataclass(frozen=True)
class Running:
    """What a canary carries from look to look: the running minima of its always-valid p-values."""

    msprt_p: float | None = None
    srm_p: float | None = None


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
    msprt_p: float | None  # running minimum of the always-valid p (the record; decisions use this look's)
    srm_p: float | None  # running minimum of the sequential SRM test's always-valid p
    srm: bool
    guardrails: dict[str, bool]  # name -> breached
    safety: dict[str, bool]
    look_p: float | None = None  # this look's always-valid one-sided p, in the direction of the estimate
    checks: dict[str, Check] = field(default_factory=dict)  # "guardrail.p95Latency", "safety.errorRate", ...
    mean_champion: float | None = None  # each arm's mean reward (what an experiment teaches the optimiser)
    mean_challenger: float | None = None

    @property
    def running(self) -> Running:
        return Running(self.msprt_p, self.srm_p)

    def to_doc(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "reason": self.reason, "nChampion": self.n_champion,
            "nChallenger": self.n_challenger, "diff": self.diff, "ciLow": self.ci_low, "ciHigh": self.ci_high,
            "welchP": self.welch_p, "msprtP": self.msprt_p, "lookP": self.look_p, "srmP": self.srm_p,
            "srm": self.srm, "guardrails": self.guardrails, "safety": self.safety,
            "checks": {name: c.to_doc() for name, c in self.checks.items()},
            "meanChampion": self.mean_champion, "meanChallenger": self.mean_challenger,
        }


def welch(a: ArmData, b: ArmData) -> tuple[float, float, float] | None:
    """(p-value, ci_low, ci_high) of mean(b) - mean(a) by Welch's t-test; None when undefined.

    From scipy.special's t distribution (the same numbers as ``scipy.stats.ttest_ind_from_stats``, tested):
    it runs at every look of every canary and of the simulations, where scipy.stats' overhead dominated.
    """
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.var_reward / a.n, b.var_reward / b.n
    se2 = va + vb
    if se2 <= 0:
        return None
    num = se2 * se2
    den = va * va / (a.n - 1) + vb * vb / (b.n - 1)
    dof = num / den if den > 0 else float(a.n + b.n - 2)
    diff = b.mean_reward - a.mean_reward
    t = diff / math.sqrt(se2)
    p = float(2.0 * special.stdtr(dof, -abs(t)))
    half = float(special.stdtrit(dof, 0.975)) * math.sqrt(se2)
    return p, diff - half, diff + half


def log_mixture_lr(diff: float, v: float, tau: float, side: int = 0) -> float:
    """log Lambda of a normal-mixture SPRT, given a difference's estimate and variance.

    ``side`` 0: H0 difference 0, a N(0, tau^2) mixture over the alternative. ``side`` +1: H0 difference
    <= 0 against > 0, the mixture folded onto the positive half (its likelihood ratio is a supermartingale
    under every null value, so the test stays valid); -1 is the mirror.
    """
    t2 = tau * tau
    log_lambda = 0.5 * math.log(v / (v + t2)) + (diff * diff * t2) / (2.0 * v * (v + t2))
    if side:
        # the posterior's mass on the alternative's side, doubled (the folded prior has twice the density)
        log_lambda += math.log(2.0) + float(special.log_ndtr(side * diff * tau / math.sqrt(v * (v + t2))))
    return log_lambda


def _p_of(log_lambda: float) -> float:
    return float(min(1.0, math.exp(min(-log_lambda, 700.0))))  # (exp overflows past ~709; p is 1 there)


def mixture_p(diff: float, v: float, tau: float, side: int = 0) -> float:
    """1/Lambda of a normal-mixture SPRT (see ``log_mixture_lr``).

    Stopping the first time this falls below alpha keeps the type-I error below alpha however often one
    looks (Johari, Pekelis & Walsh, "Always valid inference", 2017).
    """
    return _p_of(log_mixture_lr(diff, v, tau, side))


def msprt_p(a: ArmData, b: ArmData, tau: float, side: int = 0) -> float | None:
    """This look's always-valid p-value for H0: equal mean rewards (``side`` +1: b no better; -1: no worse)."""
    if a.n < 2 or b.n < 2:
        return None
    v = a.var_reward / a.n + b.var_reward / b.n
    if v <= 0:
        return None
    return mixture_p(b.mean_reward - a.mean_reward, v, tau, side)


# The beta prior on the challenger's share, centred on the split, weighs this many "counts": its spread
# (~0.5/sqrt(300) ≈ 3 points at 50/50) is the size of mismatch it is most sensitive to (47/53 within a day).
SRM_PRIOR_STRENGTH = 300.0


def srm_p(n_champion: int, n_challenger: int, split: float) -> float | None:
    """This look's always-valid p-value of a sample-ratio mismatch (H0: the challenger's share is ``split``).

    The inverse of a Bayes factor: a beta(k·split, k·(1-split)) mixture over the share against the
    configured split (Lindon & Malek, "Anytime-valid inference for multinomial count data", 2022). Its
    running minimum may be read at every look: the chance it ever falls below alpha under a correct split
    is at most alpha (Ville's inequality).
    """
    total = n_champion + n_challenger
    if total == 0 or not 0.0 < split < 1.0:
        return None
    a, b = SRM_PRIOR_STRENGTH * split, SRM_PRIOR_STRENGTH * (1.0 - split)
    log_marginal = special.betaln(a + n_challenger, b + n_champion) - special.betaln(a, b)
    log_null = n_challenger * math.log(split) + n_champion * math.log(1.0 - split)
    return float(min(1.0, math.exp(min(log_null - log_marginal, 0.0))))


def success_diff_p(champion: ArmData, challenger: ArmData, tau: float, side: int = 0) -> float | None:
    """Always-valid p-value of a success-rate gap (pooled variance, normal mixture of scale ``tau``)."""
    return share_diff_p(champion.success_rate, champion.n, challenger.success_rate, challenger.n, tau, side)


def share_diff_p(share_a: float, n_a: int, share_b: float, n_b: int, tau: float, side: int = 0) -> float | None:
    """Always-valid p-value of H0: two shares (proportions) are equal (``side`` +1: b's is no larger)."""
    log_lambda = _share_log_lr(share_a, n_a, share_b, n_b, tau, side)
    return None if log_lambda is None else _p_of(log_lambda)


def _share_log_lr(share_a: float, n_a: int, share_b: float, n_b: int, tau: float, side: int) -> float | None:
    if n_a == 0 or n_b == 0:
        return None
    pooled = (share_a * n_a + share_b * n_b) / (n_a + n_b)
    v = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if v <= 0:
        return None if share_a == share_b or side * (share_b - share_a) <= 0 else math.inf
    return log_mixture_lr(share_b - share_a, v, tau, side)


def _cost_var(arm: ArmData) -> float:
    if arm.var_cost is not None:
        return arm.var_cost
    return arm.mean_cost * arm.mean_cost  # unknown: a coefficient of variation of 1, a wide guess


def cost_diff_p(champion: ArmData, challenger: ArmData, tau: float, side: int = 0) -> float | None:
    """Always-valid p-value of H0: equal mean cost (``side`` +1: the challenger's is no higher)."""
    if champion.n < 2 or challenger.n < 2:
        return None
    v = _cost_var(champion) / champion.n + _cost_var(challenger) / challenger.n
    diff = challenger.mean_cost - champion.mean_cost
    if v <= 0:
        return None if diff == 0 else (0.0 if side * diff >= 0 else 1.0)
    return mixture_p(diff, v, tau, side)


def _ratio_increase(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return new / old - 1.0


# The tail test's mixture scale: a challenger whose p95 is 20 % above the champion's puts 7-11 % of its
# requests above the champion's p95 (lognormal latencies with p95/p50 from 6 to 2) instead of 5 %.
TAIL_SHARE_TAU = 0.03


def _latency_check(champion: ArmData, challenger: ArmData, ratio: float, alpha: float,
                   slo_ms: float | None = None) -> Check:
    """Is the challenger's p95 more than (1 + ratio) x the champion's, and is it significantly slower?

    The statistic is the p95 ratio's point estimate. The evidence averages two one-sided likelihood ratios
    (an average of e-values is an e-value, so the test stays valid): the mean of log latency, which
    sees a slowdown of the whole distribution at a fraction of the data a quantile needs, and the share of
    requests above the champion's p95, which sees a slower tail whose median did not move.
    """
    increase = _ratio_increase(challenger.p95_latency, champion.p95_latency)
    if increase is None or champion.p95_latency is None:
        return Check(increase, ratio, None, alpha, False)
    if slo_ms is not None and challenger.p95_latency is not None and challenger.p95_latency <= slo_ms:
        return Check(increase, ratio, None, alpha, False, waived=True)
    ratios: list[float] = []
    if champion.log_latency is not None and challenger.log_latency is not None \
            and champion.n >= 2 and challenger.n >= 2:
        v = champion.log_latency[1] / champion.n + challenger.log_latency[1] / challenger.n
        if v > 0:
            shift = challenger.log_latency[0] - champion.log_latency[0]
            ratios.append(log_mixture_lr(shift, v, math.log1p(max(ratio, 0.05)), side=1))
    if champion.share_above is not None and challenger.share_above is not None:
        t = champion.p95_latency
        tail = _share_log_lr(champion.share_above(t), champion.n, challenger.share_above(t), challenger.n,
                             TAIL_SHARE_TAU, side=1)
        if tail is not None:
            ratios.append(tail)
    if not ratios:
        return Check(increase, ratio, None, alpha, False)
    p = _p_of(float(special.logsumexp(ratios)) - math.log(len(ratios)))
    return Check(increase, ratio, p, alpha, increase > ratio and p < alpha)


# The tests plug in each arm's sample variance; below this many requests an arm's variance is too rough for
# the error control to hold (an A/A simulation looking at every request from n = 2 falsely rolled back 4 %
# against a 2 % budget; from 30, under 1 %).
MIN_TEST_SAMPLES = 30


def reward_p(champion: ArmData, challenger: ArmData, tau: float) -> tuple[float | None, float | None]:
    """This look's always-valid p of "challenger better" and of "challenger worse" on mean reward (None
    until each arm has ``MIN_TEST_SAMPLES``)."""
    if min(champion.n, challenger.n) < MIN_TEST_SAMPLES:
        return None, None
    return msprt_p(champion, challenger, tau, side=1), msprt_p(champion, challenger, tau, side=-1)


def checks(champion: ArmData, challenger: ArmData, cfg: RolloutConfig) -> dict[str, Check]:
    """Every guardrail and safety threshold at this look, each with its always-valid one-sided test."""
    g_alpha, s_alpha = cfg.guardrail_alpha / 3, cfg.safety_alpha / 3
    have = champion.n > 0 and challenger.n > 0
    drop = champion.success_rate - challenger.success_rate if have else None
    # each test's mixture scale is the size of change its threshold names: a small scale has little power
    # against a large change (a 20-point drop tested at the guardrail's 2-point scale is slow to show)
    drop_p = success_diff_p(champion, challenger, max(cfg.max_success_rate_drop, 0.01), side=-1)
    big_drop_p = success_diff_p(champion, challenger, max(cfg.safety_max_error_rate_increase, 0.01), side=-1)
    cost_up = _ratio_increase(challenger.mean_cost, champion.mean_cost) if have else None
    cost_p = cost_diff_p(champion, challenger, max(cfg.max_cost_increase_ratio, 0.05) * champion.mean_cost,
                         side=1) if have and champion.mean_cost > 0 else None
    diff = challenger.mean_reward - champion.mean_reward if have else None
    reward_drop_p = msprt_p(champion, challenger, max(cfg.safety_max_reward_drop, 0.01), side=-1)

    def worse(statistic: float | None, threshold: float, p: float | None, alpha: float) -> Check:
        breached = statistic is not None and statistic > threshold and p is not None and p < alpha
        return Check(statistic, threshold, p, alpha, breached)

    return {
        "guardrail.p95Latency": _latency_check(champion, challenger, cfg.max_p95_increase_ratio, g_alpha,
                                               cfg.p95_slo_ms),
        "guardrail.cost": worse(cost_up, cfg.max_cost_increase_ratio, cost_p, g_alpha),
        "guardrail.successRate": worse(drop, cfg.max_success_rate_drop, drop_p, g_alpha),
        "safety.rewardDrop": worse(None if diff is None else -diff, cfg.safety_max_reward_drop, reward_drop_p, s_alpha),
        "safety.p95Latency": _latency_check(champion, challenger, cfg.safety_max_p95_increase_ratio, s_alpha,
                                            cfg.p95_slo_ms),
        "safety.errorRate": worse(drop, cfg.safety_max_error_rate_increase, big_drop_p, s_alpha),
    }


# A promotion waits while a guardrail's point estimate is past this share of its threshold (p95 +10 %, cost
# +10 %, success -1 point): it only delays a promotion, so it spends no error budget, and it keeps a
# better-on-reward but slower or costlier challenger from slipping through before its guardrail test has
# the data to be significant.
PROMOTION_GUARD_SHARE = 0.5


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else (a if b is None else min(a, b))


def evaluate(
    champion: ArmData,
    challenger: ArmData,
    split: float,
    cfg: RolloutConfig,
    previous: Running | float | None = None,
) -> Evaluation:
    """One look at a running canary (``previous``: what the earlier looks left; a float is an older
    rollout's running mSPRT minimum)."""
    before = Running(msprt_p=previous) if isinstance(previous, float | int) else (previous or Running())
    w = welch(champion, challenger)
    better_p, worse_p = reward_p(champion, challenger, cfg.tau)
    look_p = _min(better_p, worse_p)  # the estimate's direction has the smaller p
    s_p = _min(before.srm_p, srm_p(champion.n, challenger.n, split))
    srm = s_p is not None and s_p < cfg.srm_alpha
    diff = challenger.mean_reward - champion.mean_reward if champion.n and challenger.n else None
    found = checks(champion, challenger, cfg)
    guardrails = {k.split(".", 1)[1]: c.breached for k, c in found.items() if k.startswith("guardrail.")}
    safety = {k.split(".", 1)[1]: c.breached for k, c in found.items() if k.startswith("safety.")}

    def result(outcome: Outcome, reason: str) -> Evaluation:
        return Evaluation(
            outcome, reason, champion.n, challenger.n, diff,
            None if w is None else w[1], None if w is None else w[2], None if w is None else w[0],
            _min(before.msprt_p, look_p), s_p, srm, guardrails, safety, look_p, found,
            champion.mean_reward if champion.n else None, challenger.mean_reward if challenger.n else None,
        )

    def names(kind: dict[str, bool]) -> str:
        return ", ".join(k for k, v in kind.items() if v)

    if challenger.n >= cfg.safety_min_samples and any(safety.values()):
        return result("rollback", f"safety threshold breached: {names(safety)}")
    if srm:
        return result("inconclusive", f"sample ratio mismatch (always-valid p={s_p:.3g}): assignment is broken, "
                                       "data untrusted; no decision but a safety rollback")
    if worse_p is not None and worse_p < cfg.rollback_alpha:
        return result("rollback", f"challenger is worse (always-valid p={worse_p:.4g})")
    if challenger.n >= cfg.guardrail_min_samples and any(guardrails.values()):
        return result("rollback", f"guardrail breached: {names(guardrails)}")
    if min(champion.n, challenger.n) < cfg.min_samples:
        return result("continue", f"collecting: {min(champion.n, challenger.n)} of {cfg.min_samples} per arm")
    if better_p is not None and better_p < cfg.alpha and diff is not None:
        # a guardrail more than half-way to its threshold, without significance yet, is no reason to roll
        # back, but no promotion either: the challenger stays in canary until the evidence settles it
        over = [k.split(".", 1)[1] for k, c in found.items() if k.startswith("guardrail.") and not c.waived
                and c.statistic is not None and c.statistic > PROMOTION_GUARD_SHARE * c.threshold]
        if over:
            return result("continue", f"challenger better by {diff:.4f}, but past a guardrail's threshold "
                                      f"({', '.join(over)}): waiting")
        return result("promote", f"challenger better by {diff:.4f} (always-valid p={better_p:.4g})")
    return result("continue", "no significant difference yet")
