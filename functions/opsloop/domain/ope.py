"""Off-policy estimates of a challenger's reward from data the champion logged (shadow mode).

Each logged observation carries the propensity ``p`` with which the logging policy chose its action (the
model), so ``w = 1/p``. For a challenger that would choose action ``a`` with probability ``pi(a)``:

    IPS   = (1/N) * sum_i pi(a_i) * w_i * r_i
    SNIPS = sum_i pi(a_i) w_i r_i / sum_i pi(a_i) w_i

Both are computed from per-action sums kept in the stats buckets (n_p, sum w, w^2, r w, (r w)^2, r w^2),
so an estimate costs a handful of bucket reads however much was logged. Intervals are normal (CLT for
IPS, delta method for SNIPS); ``ess`` is the effective sample size (sum w)^2 / sum w^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import stats as sps

from .stats import Summary


@dataclass(frozen=True)
class OffPolicyEstimate:
    n: int
    ips: float | None
    ips_ci: tuple[float, float] | None
    snips: float | None
    snips_ci: tuple[float, float] | None
    ess: float
    logged_mean: float | None  # the logging policy's own (on-policy) mean reward on the same data

    def to_doc(self) -> dict[str, Any]:
        return {
            "n": self.n, "ips": self.ips, "ipsCi": list(self.ips_ci) if self.ips_ci else None,
            "snips": self.snips, "snipsCi": list(self.snips_ci) if self.snips_ci else None,
            "ess": self.ess, "loggedMean": self.logged_mean,
        }


def estimate(per_action: dict[str, Summary], target: dict[str, float], level: float = 0.95) -> OffPolicyEstimate:
    """IPS and SNIPS of the policy choosing action ``a`` with probability ``target[a]``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    total_target = sum(target.values())
    if total_target <= 0 or any(not math.isfinite(v) or v < 0 for v in target.values()):
        raise ValueError(f"target probabilities must be >= 0 with a positive total, got {target!r}")
    pi = {a: v / total_target for a, v in target.items()}
    logged = sum(s.n_p for s in per_action.values())
    n = sum(s.w_p for s in per_action.values())  # the weight of the logged decisions (= their count unsampled)
    if logged == 0 or n <= 0:
        return OffPolicyEstimate(0, None, None, None, None, 0.0, None)
    z = float(sps.norm.ppf(0.5 + level / 2))
    sx = sx2 = sw = sw2 = sw2r = 0.0
    for action, s in per_action.items():
        p = pi.get(action, 0.0)
        sx += p * s.sum_rw
        sx2 += p * p * s.sum_r2w2
        sw += p * s.sum_w
        sw2 += p * p * s.sum_w2
        sw2r += p * p * s.sum_rw2
    ips = sx / n
    ips_var = max(sx2 / n - ips * ips, 0.0) / n
    ips_half = z * math.sqrt(ips_var)
    snips = snips_ci = None
    if sw > 0:
        snips = sx / sw
        # delta method: sum omega^2 (r - snips)^2 / (sum omega)^2
        num = sx2 - 2 * snips * sw2r + snips * snips * sw2
        half = z * math.sqrt(max(num, 0.0)) / sw
        snips_ci = (snips - half, snips + half)
    ess = (sw * sw / sw2) if sw2 > 0 else 0.0
    w_all = sum(s.weight for s in per_action.values())
    logged_mean = sum(s.sum_reward for s in per_action.values()) / w_all
    return OffPolicyEstimate(logged, ips, (ips - ips_half, ips + ips_half), snips, snips_ci, ess, logged_mean)
