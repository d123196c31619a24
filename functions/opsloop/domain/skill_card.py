"""Skill cards: what a component is good and bad at, read off its statistics.

A card is derived, never entered: strengths and weaknesses come from the basis window's summary judged
against the reward config's budgets (success rate, cost and latency budgets, latency outliers), failure
modes from the weighted errorCode counts the buckets keep, trends from a regression of daily mean
reward over 7 and 30 days. A component with too few samples is not judged (``judged: false``) rather
than judged on noise. Deterministic given its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .reward import RewardConfig
from .stats import Summary, total, window_stats

Direction = Literal["up", "down", "flat", "insufficient_data"]
Z_95 = 1.959963984540054  # standard normal 97.5 % quantile: two-sided 95 % intervals


@dataclass(frozen=True)
class CardSettings:
    """Thresholds of the judgement (``config/skill_cards`` may override each)."""

    min_samples: int = 50
    high_success: float = 0.95
    low_success: float = 0.80
    cheap_share: float = 0.5  # mean cost at most this share of maxCostUsd is a strength
    over_latency_budget: float = 0.10  # more than this share above maxLatencyMs is a weakness
    outlier_ratio: float = 5.0  # p99 / p50 at or above this: latency outliers
    min_daily_samples: int = 10  # a day counts in a trend with at least this many samples
    trend_alpha: float = 0.05
    top_failures: int = 3


def share_above(summary: Summary, threshold: float) -> float | None:
    """Share of the latency distribution above ``threshold`` (from the sketch, within its accuracy)."""
    if not summary.n:
        return None
    lo, hi = 0.0, 1.0
    top = summary.latency_quantile(1.0)
    if top is None or top <= threshold:
        return 0.0
    for _ in range(30):  # bisection on the quantile function: q such that quantile(q) ~ threshold
        mid = (lo + hi) / 2
        value = summary.latency_quantile(mid)
        if value is not None and value <= threshold:
            lo = mid
        else:
            hi = mid
    return round(1.0 - lo, 6)


def trend(daily: list[tuple[int, Summary]], days: int, end_ms: int, settings: CardSettings) -> dict[str, Any]:
    """Linear trend of daily mean reward over the last ``days`` days before ``end_ms``.

    ``slopePerDay`` is the least-squares slope (as scipy's ``linregress``); ``direction`` is up/down only when
    its p-value is below ``trend_alpha``, so a noisy week reads as flat.
    """
    day_ms = 86_400_000
    start = end_ms - days * day_ms
    points = [(s, d) for s, d in daily if start <= s < end_ms and d.n >= settings.min_daily_samples]
    period = total([d for s, d in daily if start <= s < end_ms])
    out: dict[str, Any] = {"days": days, "points": len(points), "reward": _round(period.mean_reward, 6),
                           "n": round(period.estimated_count)}
    if len(points) < 3:
        return {**out, "direction": "insufficient_data", "slopePerDay": None, "p": None}
    x = [(s - start) / day_ms for s, _ in points]
    y = [d.mean_reward or 0.0 for _, d in points]
    if max(y) - min(y) < 1e-12:
        return {**out, "direction": "flat", "slopePerDay": 0.0, "p": 1.0}
    slope, p = slope_test(x, y)
    direction: Direction = "flat"
    if math.isfinite(p) and p < settings.trend_alpha:
        direction = "up" if slope > 0 else "down"
    return {**out, "direction": direction, "slopePerDay": round(slope, 6), "p": round(p, 6) if math.isfinite(p)
            else None}


def slope_test(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares slope and its two-sided p-value (t-test, n - 2 df): what ``scipy.stats.linregress``
    returns, computed here so the scoring path imports only ``scipy.special`` (scipy.stats alone costs
    ~70 MB of RSS in every scoring run).
    """
    from scipy.special import stdtr

    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    syy = sum((b - my) ** 2 for b in y)
    slope = sxy / sxx
    resid = max(syy - slope * sxy, 0.0)
    if resid == 0.0:
        return slope, 0.0
    se = math.sqrt(resid / (n - 2) / sxx)
    t = slope / se
    return slope, float(2 * stdtr(n - 2, -abs(t)))


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def judge(summary: Summary, cfg: RewardConfig, settings: CardSettings) -> tuple[list[dict[str, Any]],
                                                                                list[dict[str, Any]]]:
    """(strengths, weaknesses) of a basis-window summary, each ``{code, text, value}``."""
    strengths: list[dict[str, Any]] = []
    weaknesses: list[dict[str, Any]] = []
    sr = summary.success_rate or 0.0
    if sr >= settings.high_success:
        strengths.append({"code": "high_success_rate", "value": round(sr, 6), "text": f"success rate {_pct(sr)}"})
    elif sr < settings.low_success:
        weaknesses.append({"code": "low_success_rate", "value": round(sr, 6), "text": f"success rate {_pct(sr)}"})
    cost = summary.mean_cost or 0.0
    share = cost / cfg.max_cost_usd
    if share <= settings.cheap_share:
        strengths.append({"code": "within_cost_budget", "value": round(share, 6),
                          "text": f"mean cost ${cost:.4f} is {_pct(share)} of the ${cfg.max_cost_usd:g} budget"})
    elif share > 1.0:
        weaknesses.append({"code": "over_cost_budget", "value": round(share, 6),
                           "text": f"mean cost ${cost:.4f} is {_pct(share)} of the ${cfg.max_cost_usd:g} budget"})
    over = share_above(summary, cfg.max_latency_ms) or 0.0
    p95 = summary.latency_quantile(0.95) or 0.0
    if over > settings.over_latency_budget:
        weaknesses.append({"code": "over_latency_budget", "value": over,
                           "text": f"{_pct(over)} of calls exceed the {cfg.max_latency_ms:g} ms latency budget"})
    elif p95 <= cfg.max_latency_ms:
        strengths.append({"code": "within_latency_budget", "value": round(p95, 3),
                          "text": f"p95 latency {p95:.0f} ms within the {cfg.max_latency_ms:g} ms budget"})
    p50, p99 = summary.latency_quantile(0.5) or 0.0, summary.latency_quantile(0.99) or 0.0
    if p50 > 0 and p99 / p50 >= settings.outlier_ratio:
        weaknesses.append({"code": "latency_outliers", "value": round(p99 / p50, 3),
                           "text": f"latency outliers: p99 {p99:.0f} ms is {p99 / p50:.1f}x p50 {p50:.0f} ms"})
    reward = summary.mean_reward or 0.0
    if reward < cfg.min_acceptable:
        weaknesses.append({"code": "below_min_acceptable", "value": round(reward, 6),
                           "text": f"mean reward {reward:.3f} below minAcceptable {cfg.min_acceptable:g}"})
    return strengths, weaknesses


def failure_modes(summary: Summary, top: int) -> list[dict[str, Any]]:
    """The most frequent failure modes (errorCode, else outcome) with weighted counts and shares."""
    failures = sum(w for _, w in summary.failures)
    ranked = sorted(summary.failures, key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"code": k, "count": round(w), "share": round(w / failures, 6)} for k, w in ranked if failures > 0]


def versions_in_use(summary: Summary) -> list[dict[str, Any]]:
    seen = sum(w for _, w in summary.versions)
    ranked = sorted(summary.versions, key=lambda kv: (-kv[1], kv[0]))
    return [{"version": k, "share": round(w / seen, 6)} for k, w in ranked if seen > 0]


def component_card(
    component: str,
    windows: dict[str, Summary],
    daily: list[tuple[int, Summary]],
    cfg: RewardConfig,
    settings: CardSettings,
    end_ms: int,
    basis: str = "24h",
) -> dict[str, Any]:
    """The ``ops_skill_cards`` document of one component, for windows ending at ``end_ms``."""
    base = windows.get(basis) or Summary()
    judged = base.n >= settings.min_samples
    strengths, weaknesses = judge(base, cfg, settings) if judged else ([], [])
    week = windows.get("7d") or base
    return {
        "kind": "component",
        "component": component,
        "ts": end_ms,
        "basis": basis,
        "judged": judged,
        "reason": None if judged else f"{base.n} samples in {basis}, fewer than minSamples {settings.min_samples}",
        "stats": {name: window_stats(s) for name, s in sorted(windows.items())},
        "strengths": strengths,
        "weaknesses": weaknesses,
        "failureModes": failure_modes(base, settings.top_failures),
        "failureModes7d": failure_modes(week, settings.top_failures),
        "trends": {"7d": trend(daily, 7, end_ms, settings), "30d": trend(daily, 30, end_ms, settings)},
        "policyVersions": versions_in_use(base),
        "rewardVersion": cfg.version,
    }


def best_model(models: dict[str, Summary], settings: CardSettings) -> dict[str, Any] | None:
    """The model with the highest mean reward among those with enough samples, with a 95 % interval."""
    z = Z_95
    ranked: list[dict[str, Any]] = []
    for model, s in sorted(models.items()):
        if s.n < settings.min_samples or s.mean_reward is None:
            continue
        se = math.sqrt((s.reward_variance or 0.0) / s.n)
        ranked.append({"model": model, "reward": round(s.mean_reward, 6), "n": round(s.estimated_count),
                       "ci": [round(s.mean_reward - z * se, 6), round(s.mean_reward + z * se, 6)]})
    if not ranked:
        return None
    ranked.sort(key=lambda r: (-r["reward"], r["model"]))
    best = ranked[0]
    # clear winner: its interval lies wholly above every other model's
    clear = all(best["ci"][0] > other["ci"][1] for other in ranked[1:])
    return {**best, "clearWinner": clear and len(ranked) > 1, "ranking": ranked}


def router_card(
    policy_id: str,
    models: dict[str, Summary],
    active: str | None,
    rollout: dict[str, Any] | None,
    weights: dict[str, float],
    settings: CardSettings,
    end_ms: int,
    basis: str = "24h",
) -> dict[str, Any]:
    """The card of a router policy: its best model and the versions in use."""
    best = best_model(models, settings)
    return {
        "kind": "router",
        "component": policy_id,
        "ts": end_ms,
        "basis": basis,
        "judged": best is not None,
        "reason": None if best is not None else f"no model has minSamples {settings.min_samples} in {basis}",
        "bestModel": best,
        "models": sorted(models),
        "weights": {m: round(float(w), 6) for m, w in sorted(weights.items())},
        "activeVersion": active,
        "rollout": rollout,
    }
