"""Proposing new router model weights from per-model reward statistics.

Two methods (``config/tuning.method``). The default, ``thompson``, sets each model's weight to the
posterior probability that it has the best mean reward, under a Gaussian approximation of each model's
mean (its window mean, standard error std/sqrt(n)): the share of traffic Thompson sampling would give it
over the next hour, decided once an hour. Models with little data have wide posteriors and keep a
share; a model that is clearly worse goes down to the exploration floor at once instead of in steps.
A proposal is made only when a test that the models' mean rewards differ at all rejects at level
``alpha`` (Cochran's Q among the judged models; and, when some are not judged, a test that a judged
one is below minAcceptable), so identical models move traffic only at that rate, however many there
are; without such a gate, Thompson's allocation would chase noise every hour.

``multiplicative`` is a multiplicative-weights step on the policy's current weights:

    d_m   = r_m - r_bar                              (r_bar: reward of the current weighting)
    d_m  <- sign(d_m) * max(|d_m| - z * se_m, 0)      (only differences clear of noise count)
    w_m' ∝ w_m * exp(eta * d_m)
    w_m'' = w_m' lifted to at least ``floor``         (every model keeps an exploration share; models
                                                      above it keep their ratios)

The exploration floor is sized by traffic: the share that gives a model ``exploration_samples``
observations over a window as busy as the last one (samples / window traffic), at most
``exploration_floor``. A quiet router or a short window explores at ``exploration_floor``; a busy one
spends only what keeps every model judged (>= ``min_samples``) window after window, instead of a fixed
share of all its traffic on models it has already ruled out. ``exploration_samples = 0`` keeps the fixed
floor.

With either method, models with fewer than ``min_samples`` observations are not judged on their
sparse data: they are taken to be exactly acceptable (r_m = minAcceptable, no uncertainty), so traffic
leaving a failing model goes to them (shared in proportion to their current weights) without them being
rewarded or punished for noise. A proposal is made only when the weights move by at least
``min_change`` in L1 distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc  # chi-squared survival function, without importing scipy.stats

METHODS = ("thompson", "multiplicative")
WEIGHT_DIGITS = 4  # proposed weights are rounded to this many decimals
POSTERIOR_DRAWS = 20_000  # Monte Carlo draws for P(best); fixed seed, so a proposal is reproducible


@dataclass(frozen=True)
class TuningConfig:
    min_samples: int = 50
    exploration_floor: float = 0.05
    learning_rate: float = 5.0
    z: float = 2.0
    min_change: float = 0.05
    window: str = "24h"
    method: str = "thompson"
    alpha: float = 0.001
    exploration_samples: int = 150

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {self.min_samples!r}")
        if not 0.0 <= self.exploration_floor < 0.5:
            raise ValueError(f"exploration_floor must be in [0, 0.5), got {self.exploration_floor!r}")
        if self.exploration_samples < 0:
            raise ValueError(f"exploration_samples must be >= 0, got {self.exploration_samples!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (math.isfinite(self.min_change) and self.min_change > 0):
            raise ValueError(f"min_change must be > 0, got {self.min_change!r}")


@dataclass(frozen=True)
class ArmStats:
    """What the tuner knows about one model: the window's n, mean reward and its std deviation."""

    n: int
    avg_reward: float | None
    reward_std: float | None = None


@dataclass(frozen=True)
class ArmEvidence:
    model: str
    n: int
    avg_reward: float | None
    eligible: bool
    old_weight: float
    new_weight: float


@dataclass(frozen=True)
class Proposal:
    weights: dict[str, float]
    evidence: tuple[ArmEvidence, ...]
    l1_change: float
    below_acceptable: tuple[str, ...]
    reason: str
    floor: float  # the exploration floor this proposal used (before raised floors)


def exploration_floor(cfg: TuningConfig, window_traffic: int) -> float:
    """The share that brings a model ``exploration_samples`` observations in a window with
    ``window_traffic`` observations, at most ``exploration_floor`` (which a window without traffic uses)."""
    if cfg.exploration_samples == 0 or window_traffic <= 0:
        return cfg.exploration_floor
    grid = 10.0**WEIGHT_DIGITS
    share = math.ceil(cfg.exploration_samples / window_traffic * grid) / grid
    return min(cfg.exploration_floor, share)  # on the weights' grid, so rounding never drops below it


def normalize(weights: dict[str, float]) -> dict[str, float]:
    if not weights:
        raise ValueError("modelWeights must name at least one model")
    for model, w in weights.items():
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"weight of {model!r} must be a finite number >= 0, got {w!r}")
    total = sum(weights.values())
    if total <= 0:
        return {m: 1.0 / len(weights) for m in weights}
    return {m: w / total for m, w in weights.items()}


def _apply_floor(p: dict[str, float], floors: dict[str, float]) -> dict[str, float]:
    """Lift every weight below its floor to it, scaling the others down; weights above keep their ratios."""
    pinned: set[str] = set()
    while True:
        free = {m: v for m, v in p.items() if m not in pinned}
        budget = 1.0 - sum(floors[m] for m in pinned)
        mass = sum(free.values())
        scaled = {m: (v * budget / mass if mass > 0 else budget / len(free)) for m, v in free.items()}
        low = {m for m, v in scaled.items() if v < floors[m]}
        if not low or len(low) == len(free):
            return {**{m: floors[m] for m in pinned}, **{m: max(v, floors[m]) for m, v in scaled.items()}}
        pinned |= low


def _round_to_one(weights: dict[str, float], digits: int = WEIGHT_DIGITS) -> dict[str, float]:
    rounded = {m: round(w, digits) for m, w in weights.items()}
    drift = round(1.0 - sum(rounded.values()), digits)
    if drift:
        top = max(rounded, key=lambda m: rounded[m])
        rounded[top] = round(rounded[top] + drift, digits)
    return rounded


def propose_weights(
    current: dict[str, float],
    stats: dict[str, ArmStats],
    min_acceptable: float,
    cfg: TuningConfig,
    raised_floors: dict[str, float] | None = None,
    window_traffic: int | None = None,
) -> Proposal | None:
    """New weights for ``current`` given per-model ``stats``, or None when nothing calls for a change.

    ``raised_floors`` lifts the exploration floor of some models (e.g. ones whose behaviour drifted, so
    the tuner keeps learning about them); the floors are capped so they always fit in a total of 1.
    ``window_traffic`` is the number of observations of the policy's models in the window (the floor
    follows it); by default the sum of ``stats``' n, which undercounts when some are judged on less.
    """
    w = normalize(current)
    if window_traffic is None:
        window_traffic = sum(stats[m].n for m in w if m in stats)
    floor = exploration_floor(cfg, window_traffic)
    floors = {m: max(floor, (raised_floors or {}).get(m, 0.0)) for m in w}
    if sum(floors.values()) > 1.0:
        scale = 1.0 / sum(floors.values())
        floors = {m: f * scale for m, f in floors.items()}
    eligible = {
        m: s for m, s in ((m, stats.get(m)) for m in w)
        if s is not None and s.avg_reward is not None and s.n >= cfg.min_samples
    }
    if not eligible:
        return None
    r = {m: float(eligible[m].avg_reward or 0.0) if m in eligible else min_acceptable for m in w}
    if cfg.method == "thompson":
        se = {m: _standard_error(eligible[m]) if m in eligible else 0.0 for m in w}
        if differ_p_value(r, se, set(eligible)) >= cfg.alpha:
            return None  # the models cannot be told apart: nothing calls for a change
        raw = prob_best(w, r, se, set(eligible))
    else:
        r_bar = sum(w[m] * r[m] for m in w)
        d: dict[str, float] = {}  # each model's difference from the current weighting, beyond z std errors
        for m in w:
            diff = r[m] - r_bar
            if m in eligible:
                s = eligible[m]
                diff = math.copysign(max(abs(diff) - cfg.z * (s.reward_std or 0.0) / math.sqrt(s.n), 0.0), diff)
            d[m] = diff
        top = max(d.values())
        raw = {m: w[m] * math.exp(cfg.learning_rate * (d[m] - top)) for m in w}
    new = _round_to_one(_apply_floor(normalize(raw), floors))
    l1 = round(sum(abs(new[m] - w[m]) for m in w), 6)
    below = tuple(sorted(m for m, s in eligible.items() if float(s.avg_reward or 0.0) < min_acceptable))
    if l1 < cfg.min_change:
        return None
    evidence = tuple(
        ArmEvidence(
            model=m,
            n=stats[m].n if m in stats else 0,
            avg_reward=stats[m].avg_reward if m in stats else None,
            eligible=m in eligible,
            old_weight=round(w[m], 4),
            new_weight=new[m],
        )
        for m in w
    )
    if below:
        reason = f"avg reward under minAcceptable {min_acceptable} for {', '.join(below)}"
    elif cfg.method == "thompson":
        reason = "each model weighted by its probability of being the best, which moved clear of noise"
    else:
        reason = "a better weighting is clear of noise"
    return Proposal(weights=new, evidence=evidence, l1_change=l1, below_acceptable=below, reason=reason,
                    floor=floor)


def _standard_error(s: ArmStats) -> float:
    """std/sqrt(n), the std taken to be at least 0.5/sqrt(n) (and 0.5, the most a reward in [0, 1] can
    have, when unknown): n identical rewards do not make a mean certain."""
    floor = 0.5 / math.sqrt(s.n)
    std = 0.5 if s.reward_std is None else max(s.reward_std, floor)
    return std / math.sqrt(s.n)


def differ_p_value(means: dict[str, float], ses: dict[str, float], judged: set[str]) -> float:
    """P-value of "nothing calls for moving traffic", from two tests, Bonferroni-combined.

    * The judged models differ among themselves: Cochran's Q, sum of (r_m - pooled)^2 / se_m^2 against
      chi-squared with k - 1 degrees of freedom (pooled: the inverse-variance mean).
    * When some models are not judged (they sit at one known mean, minAcceptable): some judged model is
      below that mean (one-sided z of the one furthest below, Bonferroni over the judged), so its traffic
      should go to the others. Judged models merely above it do not open the gate: that alone is no
      evidence about how to split traffic among them.

    Judged models need a standard error > 0 (``_standard_error`` floors it).
    """
    names = sorted(judged)
    tests: list[float] = []
    if len(names) >= 2:
        precision = {m: 1.0 / (ses[m] * ses[m]) for m in names}
        centre = sum(precision[m] * means[m] for m in names) / sum(precision.values())
        q = sum(precision[m] * (means[m] - centre) ** 2 for m in names)
        tests.append(float(chdtrc(len(names) - 1, q)))
    others = [m for m in means if m not in judged]
    if others and names:
        level = means[others[0]]
        z = max((level - means[m]) / ses[m] for m in names)
        tests.append(min(1.0, len(names) * 0.5 * math.erfc(z / math.sqrt(2.0))))
    return min(1.0, len(tests) * min(tests)) if tests else 1.0


def prob_best(weights: dict[str, float], means: dict[str, float], ses: dict[str, float],
              judged: set[str]) -> dict[str, float]:
    """P(model has the best mean), from independent Gaussians N(mean, se²) of the judged models.

    The models not judged count as one arm at their common (certain) mean; its probability is shared
    among them in proportion to their current ``weights`` (evenly when those are all zero). Ties between
    certain means split evenly. Monte Carlo with a fixed seed: the same stats give the same answer.
    """
    names = sorted(judged)
    others = [m for m in weights if m not in judged]
    arms = names + (["(not judged)"] if others else [])
    mu = np.array([means[m] for m in names] + ([means[others[0]]] if others else []))
    sd = np.array([ses[m] for m in names] + ([0.0] if others else []))
    rng = np.random.default_rng(0)
    draws = mu + sd * rng.standard_normal((POSTERIOR_DRAWS, len(arms)))
    best = draws == draws.max(axis=1, keepdims=True)
    p = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
    out = {m: float(p[i]) for i, m in enumerate(names)}
    if others:
        pool = float(p[-1])
        mass = sum(weights[m] for m in others)
        for m in others:
            out[m] = pool * (weights[m] / mass if mass > 0 else 1.0 / len(others))
    return {m: out[m] for m in weights}


def equivalent(a: dict[str, float], b: dict[str, float], tolerance: float = 0.02) -> bool:
    """Two weightings are equivalent when they name the same models and differ by < tolerance each."""
    if set(a) != set(b):
        return False
    na, nb = normalize(a), normalize(b)
    return all(abs(na[m] - nb[m]) < tolerance for m in na)
