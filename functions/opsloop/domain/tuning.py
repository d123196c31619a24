"""Proposing new router model weights from per-model reward statistics.

Two methods (``config/tuning.method``). The default, ``thompson``, sets each model's weight to the
posterior probability that it has the best mean reward, under a Gaussian approximation of each model's
mean (its window mean, standard error std/sqrt(n)): the share of traffic Thompson sampling would give it
over the next hour, decided once an hour. Models with little data have wide posteriors and keep a
share; a model that is clearly worse goes down to the exploration floor at once instead of in steps.
A proposal is made only when a test that the models' mean rewards differ at all rejects at level
``alpha`` (Cochran's Q among the judged models; and, when some are not judged, a test that a judged
one is below minAcceptable), so identical models move traffic only at that rate, however many there
are; without such a gate, Thompson's allocation would chase noise every hour. A raised floor (a probe,
below) is honoured even when the gate stays closed: the current weights are lifted to it.

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

**Recovery and change detection** (``find_shift``, ``recent``). A model is judged on what it does *now*:

* The change test scans each model's hour-by-hour (and, at the ragged end, 5-minute) series of the window
  for the split where the data after it differs most from the data before it, in either direction: a
  z statistic of the two means with their pooled within-side variance (the no-change hypothesis: the
  few new observations share the old ones' spread), two-sided, Bonferroni over the splits tried, at
  ``shift_alpha``. It needs ``min_samples`` before the split and
  ``shift_min_samples`` after it, so a model at the floor (a few observations an hour) is tested too: a
  failed model that comes back is found within an hour of its few requests.
* A model with a change is judged only on its data since the change. Until that holds ``min_samples``
  it is not judged (taken to be acceptable, as above) and its floor is raised to ``probe_floor``: a
  short probing burst, as LiteLLM retries a cooled-down deployment, which brings the evidence in about
  an hour (sooner when tuning is event-driven: ``services.tuning.tune_on_change`` runs after scoring).
* A model at (or near, <= 2x) the exploration floor without a change is judged on its most recent
  data pooled back until it holds ``min_samples`` (``recent``), not on the whole window: the window of a
  floor model holds many hours of old behaviour and a small, steady trickle of new. With a window shorter
  than a day the series reaches back a day, so a floor model of a short window is pooled back *beyond* it
  until it can be judged (else, with a 1 h window, floor models are never judged and a degraded model
  that is not clearly below minAcceptable keeps its traffic).
* The drift check's raised floor (``driftExplorationFloor``) is not applied: the probe above does its
  job only while the evidence is short, instead of keeping 15 % on a failing model for hours.
* A router younger than its window sizes the floor by its traffic rate (``window_traffic``).

``change_test = False`` turns all of this off (the probe-passes-the-gate rule and the latency target stay).

**Latency target.** A router policy's ``params.latencyTargetMs`` is a term the tuner uses: a judged model
whose p95 latency (over the data it is judged on) exceeds it is treated as below acceptable: its mean
is capped at ``minAcceptable`` (so it falls to the floor like a failing model) and it is listed in the
proposal's ``below_acceptable``. A model with too few samples to be judged is not penalised on a p95 it
has no data for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc  # chi-squared survival function, without importing scipy.stats

from .stats import Summary, total

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
    change_test: bool = True  # find_shift / recent (module docstring); False: the tuner as before
    shift_alpha: float = 0.001
    shift_min_samples: int = 5
    probe_floor: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 < self.shift_alpha < 1.0:
            raise ValueError(f"shift_alpha must be in (0, 1), got {self.shift_alpha!r}")
        if self.shift_min_samples < 1:
            raise ValueError(f"shift_min_samples must be >= 1, got {self.shift_min_samples!r}")
        if not 0.0 <= self.probe_floor < 0.5:
            raise ValueError(f"probe_floor must be in [0, 0.5), got {self.probe_floor!r}")
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


@dataclass(frozen=True)
class Piece:
    """One bucket of a model's series: its start (ms) and the sufficient statistics of its rewards."""

    start: int
    n: int  # samples
    weight: float  # observations they stand for (= n without sampling weights)
    sum_reward: float
    sum_reward2: float


@dataclass(frozen=True)
class Shift:
    """A change in a model's mean reward: from ``start`` on it differs from before, by ``z`` (> 0: better)."""

    start: int
    z: float
    p: float  # Bonferroni-adjusted over the splits tried
    n_after: int
    mean_before: float
    mean_after: float


def find_shift(series: list[Piece], cfg: TuningConfig) -> Shift | None:
    """The most recent change point in ``series`` (oldest first), or None when no split is significant at
    ``cfg.shift_alpha`` (module docstring: Recovery and change detection).

    Binary segmentation towards the present: the most significant split of the series, then of the data
    after it, until the data after the last one found holds no significant split. A model that failed
    and came back is thus compared with its failure, not with the days before it (which it equals).
    """
    pieces = sorted((x for x in series if x.n > 0), key=lambda x: x.start)
    found = None
    while (shift := _best_split(pieces, cfg)) is not None:
        found = shift
        pieces = [x for x in pieces if x.start >= shift.start]
    return found


def _best_split(pieces: list[Piece], cfg: TuningConfig) -> Shift | None:
    total_n, total_w = sum(x.n for x in pieces), sum(x.weight for x in pieces)
    total_s, total_s2 = sum(x.sum_reward for x in pieces), sum(x.sum_reward2 for x in pieces)
    splits: list[tuple[int, float, int, float, float]] = []  # (start, z, n_after, mean before, mean after)
    n_b, w_b, s_b, s2_b = 0, 0.0, 0.0, 0.0
    for i, x in enumerate(pieces[:-1]):
        n_b, w_b, s_b, s2_b = n_b + x.n, w_b + x.weight, s_b + x.sum_reward, s2_b + x.sum_reward2
        n_a, w_a, s_a, s2_a = total_n - n_b, total_w - w_b, total_s - s_b, total_s2 - s2_b
        if n_b < cfg.min_samples or n_a < cfg.shift_min_samples or w_b <= 0 or w_a <= 0:
            continue
        mean_b, mean_a = s_b / w_b, s_a / w_a
        # the spread around each side's own mean, pooled (no change: one variance), on the samples' scale
        within = max(s2_b - s_b * s_b / w_b, 0.0) / w_b * n_b + max(s2_a - s_a * s_a / w_a, 0.0) / w_a * n_a
        sd = max(math.sqrt(within / max(n_b + n_a - 2, 1)), 0.5 / math.sqrt(n_b))  # n equal rewards: not certain
        z = (mean_a - mean_b) / (sd * math.sqrt(1.0 / n_a + 1.0 / n_b))
        splits.append((pieces[i + 1].start, z, n_a, mean_b, mean_a))
    if not splits:
        return None
    start, z, n_a, mean_b, mean_a = max(splits, key=lambda t: abs(t[1]))
    p = min(1.0, len(splits) * math.erfc(abs(z) / math.sqrt(2.0)))
    if p >= cfg.shift_alpha:
        return None
    return Shift(start=start, z=round(z, 4), p=p, n_after=n_a, mean_before=mean_b, mean_after=mean_a)


def recent(series: list[Piece], min_samples: int) -> int | None:
    """Start of the most recent stretch of ``series`` holding at least ``min_samples`` samples (pooled
    back bucket by bucket from the newest), or None when the whole series holds fewer."""
    n = 0
    for x in sorted(series, key=lambda x: x.start, reverse=True):
        n += x.n
        if n >= min_samples:
            return x.start
    return None


def window_traffic(counted: int, first_ms: int | None, end_ms: int, window_ms: int) -> int:
    """The traffic of a whole window at the rate of the ``counted`` observations since ``first_ms``: a
    router younger than its window (data for less than all of it) has not filled it yet, and sizing its
    floor by the count alone would explore at the cap for a whole window. At least an hour is assumed."""
    if first_ms is None or counted <= 0:
        return counted
    span = max(end_ms - first_ms, 3_600_000)
    return counted if span >= window_ms else max(counted, round(counted * window_ms / span))


@dataclass(frozen=True)
class Judged:
    """What a model is judged on: all its window (start None), or its data from ``start`` on."""

    start: int | None
    summary: Summary
    shift: Shift | None = None


def judge(series: list[tuple[int, Summary]], cfg: TuningConfig, at_floor: bool, window_start: int | None = None
          ) -> Judged:
    """A model's evidence from its series (module docstring: Recovery and change detection): its data since
    a change, else, for a model at the floor, its most recent ``min_samples``; else (start None) its window.

    The series may reach back before the tuning window (``window_start``): a floor model is pooled back
    as far as its traffic needs, but a change before the window is no reason to judge on more than it.
    """
    pieces = [Piece(start, x.n, x.estimated_count, x.sum_reward, x.sum_reward2) for start, x in series]
    shift = find_shift(pieces, cfg)
    if shift is not None and window_start is not None and shift.start <= window_start:
        shift = None  # the whole window is after the change
    start = shift.start if shift is not None else (recent(pieces, cfg.min_samples) if at_floor else None)
    window = total([x for t, x in series if window_start is None or t >= window_start])
    if start is None or start <= min((p.start for p in pieces), default=start):
        return Judged(None, window, shift)
    return Judged(start, total([x for t, x in series if t >= start]), shift)


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
    over_latency_target: set[str] | None = None,
) -> Proposal | None:
    """New weights for ``current`` given per-model ``stats``, or None when nothing calls for a change.

    ``raised_floors`` lifts the exploration floor of some models (e.g. ones whose behaviour drifted, so
    the tuner keeps learning about them); the floors are capped so they always fit in a total of 1.
    ``window_traffic`` is the number of observations of the policy's models in the window (the floor
    follows it); by default the sum of ``stats``' n, which undercounts when some are judged on less.
    ``over_latency_target`` names judged models whose p95 latency exceeds the policy's
    ``latencyTargetMs``: their mean counts as at most ``min_acceptable``.
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
    slow = {m for m in (over_latency_target or set()) if m in eligible}
    r = {m: float(eligible[m].avg_reward or 0.0) if m in eligible else min_acceptable for m in w}
    r = {m: min(v, min_acceptable) if m in slow else v for m, v in r.items()}
    if cfg.method == "thompson":
        se = {m: _standard_error(eligible[m]) if m in eligible else 0.0 for m in w}
        if differ_p_value(r, se, set(eligible)) < cfg.alpha:
            raw = prob_best(w, r, se, set(eligible))
        elif any(w[m] < floors[m] for m in w):
            raw = dict(w)  # the models cannot be told apart, but a raised floor (a probe) must be honoured
        else:
            return None  # the models cannot be told apart: nothing calls for a change
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
    below = tuple(sorted(m for m, s in eligible.items() if float(s.avg_reward or 0.0) < min_acceptable or m in slow))
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
        if slow:
            reason += f" (p95 latency over latencyTargetMs: {', '.join(sorted(slow))})"
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
