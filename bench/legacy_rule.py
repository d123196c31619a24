"""Today's canary rule as it was before issue 14 (commit 2b14bda), kept only so the benchmark runs it beside the
new one in the same simulation (``bench/canary_sim.py``). Not used by the loop.
"""

from __future__ import annotations

from scipy import special

from opsloop.domain.experiment import (  # unchanged by #14
    ArmData,
    Evaluation,
    Outcome,
    RolloutConfig,
    msprt_p,
    success_diff_p,
    welch,
)


def srm_p(n_champion: int, n_challenger: int, split: float) -> float | None:
    """Chi-square goodness of fit of the arm counts to the configured split, at one look (today's test)."""
    total = n_champion + n_challenger
    if total == 0 or not 0.0 < split < 1.0:
        return None
    e_ch, e_cp = total * split, total * (1 - split)
    stat = (n_challenger - e_ch) ** 2 / e_ch + (n_champion - e_cp) ** 2 / e_cp
    return float(special.chdtrc(1, stat))  # = scipy.stats.chisquare's p-value


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
