"""A canary simulator: hourly looks at a champion and a challenger with known true rewards.

Used by tests/ and by ``bench/rollout_sim.py`` to show what the rollout decision does over a week of
hourly evaluations: false promotions in A/A runs, time to promote a better challenger, time to roll back
a worse one. Everything is seeded; the same seed gives the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from opsloop.domain.experiment import ArmData, RolloutConfig, Running, evaluate, welch


@dataclass(frozen=True)
class ArmTruth:
    success_rate: float = 0.9
    reward_mean: float = 0.75  # mean reward of a success
    reward_sd: float = 0.12
    latency_median_ms: float = 800.0
    cost_usd: float = 0.02


_GAMMA = 1.01  # latency histogram bins 1 % wide, like the stats sketch
_BINS = 2000


@dataclass
class _Acc:
    n: int = 0
    s: float = 0.0
    s2: float = 0.0
    succ: int = 0
    cost: float = 0.0
    cost2: float = 0.0
    log_lat: float = 0.0
    log_lat2: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, dtype=np.int64))

    def add(self, rewards: np.ndarray, success: np.ndarray, latency: np.ndarray, cost: np.ndarray) -> None:
        self.n += len(rewards)
        self.s += float(rewards.sum())
        self.s2 += float((rewards**2).sum())
        self.succ += int(success.sum())
        self.cost += float(cost.sum())
        self.cost2 += float((cost**2).sum())
        logs = np.log(np.maximum(latency, 1.0))
        self.log_lat += float(logs.sum())
        self.log_lat2 += float((logs**2).sum())
        keys = np.clip(np.log(np.maximum(latency, 1.0)) / np.log(_GAMMA), 0, _BINS - 1).astype(np.int64)
        self.hist += np.bincount(keys, minlength=_BINS)

    def p95(self) -> float | None:
        if self.n == 0:
            return None
        k = int(np.searchsorted(np.cumsum(self.hist), 0.95 * self.n))
        return float(_GAMMA ** (k + 0.5))

    def share_above(self, x: float) -> float:
        """Share of latencies above ``x`` (to the bin's 1 % resolution, like the sketch)."""
        if self.n == 0:
            return 0.0
        k = int(np.clip(np.log(max(x, 1.0)) / np.log(_GAMMA), 0, _BINS - 1))
        return float(self.hist[k + 1 :].sum()) / self.n

    def data(self) -> ArmData:
        p95 = self.p95()
        mean = self.s / self.n if self.n else 0.0
        var = (self.s2 - self.s * self.s / self.n) / (self.n - 1) if self.n > 1 else 0.0
        cvar = (self.cost2 - self.cost * self.cost / self.n) / (self.n - 1) if self.n > 1 else 0.0
        log_mean = self.log_lat / self.n if self.n else 0.0
        log_var = (self.log_lat2 - self.log_lat * log_mean) / (self.n - 1) if self.n > 1 else 0.0
        return ArmData(self.n, mean, max(var, 0.0), self.succ / self.n if self.n else 0.0, p95,
                       self.cost / self.n if self.n else 0.0, max(cvar, 0.0), self.share_above,
                       (log_mean, max(log_var, 0.0)) if self.n > 1 else None)


def _draw(
    rng: np.random.Generator, truth: ArmTruth, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    success = rng.random(n) < truth.success_rate
    rewards = np.where(success, np.clip(rng.normal(truth.reward_mean, truth.reward_sd, n), 0, 1), 0.0)
    latency = truth.latency_median_ms * rng.lognormal(0, 0.4, n)
    cost = truth.cost_usd * rng.uniform(0.8, 1.2, n)
    return rewards, success, latency, cost


@dataclass(frozen=True)
class RunResult:
    outcome: str  # promote | rollback | none
    hour: int | None
    challenger_n: int
    ttest_promoted: bool  # would a plain t-test, repeated every hour, have promoted?
    ttest_hour: int | None


def run_canary(
    seed: int,
    champion: ArmTruth,
    challenger: ArmTruth,
    cfg: RolloutConfig,
    hours: int = 168,
    per_hour: int = 600,
    split: float = 0.1,
    actual_split: float | None = None,
) -> RunResult:
    """Evaluate every simulated hour until the decision is promote or rollback (or the week ends)."""
    rng = np.random.default_rng(seed)
    acc = {"cp": _Acc(), "ch": _Acc()}
    running = Running()
    ttest_hour: int | None = None
    share = split if actual_split is None else actual_split
    for hour in range(1, hours + 1):
        n_ch = int(rng.binomial(per_hour, share))
        for arm, truth, n in (("cp", champion, per_hour - n_ch), ("ch", challenger, n_ch)):
            acc[arm].add(*_draw(rng, truth, n))
        cp, ch = acc["cp"].data(), acc["ch"].data()
        if ttest_hour is None and min(cp.n, ch.n) >= cfg.min_samples:
            w = welch(cp, ch)
            if w is not None and w[0] / 2 < cfg.alpha and ch.mean_reward > cp.mean_reward:  # one-sided
                ttest_hour = hour
        ev = evaluate(cp, ch, split, cfg, running)
        running = ev.running
        if ev.outcome in ("promote", "rollback"):
            return RunResult(ev.outcome, hour, ch.n, ttest_hour is not None, ttest_hour)
    return RunResult("none", None, acc["ch"].n, ttest_hour is not None, ttest_hour)
