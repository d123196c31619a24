"""The reward of one observation: a score in [0, 1] from outcome, latency and cost.

    base          = 1 - w.success                          (so a free, instant success scores 1.0)
    successBoost  = w.success                 if outcome == "success" else 0
    errorPenalty  = w.error                   if outcome != "success" else 0
    latencyPenalty= w.latency * min(durationMs / maxLatencyMs, 1)
    costPenalty   = w.cost    * min(costUsd    / maxCostUsd,   1)
    score         = clamp(base + successBoost - latencyPenalty - costPenalty - errorPenalty, 0, 1)

With the seeded weights a success at exactly the latency and cost bounds scores 0.55, which is the
seeded ``minAcceptable`` threshold; any non-success scores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SUCCESS = "success"
OUTCOMES = ("success", "failure", "timeout", "rate_limit")


@dataclass(frozen=True)
class RewardConfig:
    """Weights, bounds and thresholds of the reward, as stored in ``config/reward_config``."""

    version: str = "1.0.0"
    w_latency: float = 0.25
    w_cost: float = 0.2
    w_success: float = 0.6
    w_error: float = 0.6
    max_latency_ms: float = 4000.0
    max_cost_usd: float = 0.10
    min_acceptable: float = 0.55
    retrain: float = 0.40

    def __post_init__(self) -> None:
        for name in ("w_latency", "w_cost", "w_success", "w_error"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"reward weight {name} must be in [0, 1], got {value!r}")
        for name in ("max_latency_ms", "max_cost_usd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"reward bound {name} must be > 0, got {value!r}")
        for name in ("min_acceptable", "retrain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"reward threshold {name} must be in [0, 1], got {value!r}")

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "weights": {
                "latency": self.w_latency, "cost": self.w_cost,
                "success": self.w_success, "error": self.w_error,
            },
            "bounds": {"maxLatencyMs": self.max_latency_ms, "maxCostUsd": self.max_cost_usd},
            "thresholds": {"minAcceptable": self.min_acceptable, "retrain": self.retrain},
        }


@dataclass(frozen=True)
class Reward:
    score: float
    success_boost: float
    latency_penalty: float
    cost_penalty: float
    error_penalty: float

    def details(self) -> dict[str, float]:
        return {
            "successBoost": self.success_boost,
            "latencyPenalty": self.latency_penalty,
            "costPenalty": self.cost_penalty,
            "errorPenalty": self.error_penalty,
        }


def _ratio(value: float, bound: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"reward input must be a finite number >= 0, got {value!r}")
    return min(value / bound, 1.0)


def score(outcome: str, duration_ms: float, cost_usd: float, cfg: RewardConfig) -> Reward:
    """Score one observation; see the module docstring for the formula."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    success = outcome == SUCCESS
    success_boost = cfg.w_success if success else 0.0
    error_penalty = 0.0 if success else cfg.w_error
    latency_penalty = cfg.w_latency * _ratio(duration_ms, cfg.max_latency_ms)
    cost_penalty = cfg.w_cost * _ratio(cost_usd, cfg.max_cost_usd)
    base = 1.0 - cfg.w_success
    raw = base + success_boost - latency_penalty - cost_penalty - error_penalty
    return Reward(
        score=round(min(1.0, max(0.0, raw)), 6),
        success_boost=round(success_boost, 6),
        latency_penalty=round(latency_penalty, 6),
        cost_penalty=round(cost_penalty, 6),
        error_penalty=round(error_penalty, 6),
    )
