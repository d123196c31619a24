"""Has a component's behaviour moved? The latest window against a baseline.

Latency and reward are compared with a two-sample Kolmogorov-Smirnov test computed from the windows'
sketches (both sketches share one bin mapping, so the empirical CDFs are compared bin by bin; the p-value
is scipy's asymptotic Kolmogorov distribution, as ``ks_2samp(method="asymp")`` uses). Success rates are
compared with a chi-square test of the 2x2 table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb.proto import DDSketchProto
from scipy import stats as sps

from .stats import Summary

METRICS = ("latency", "reward", "successRate")
_BELOW_ALL = -(2**62)  # below any bin index a sketch produces


@dataclass(frozen=True)
class DriftConfig:
    latest: str = "1h"  # window compared ...
    baseline_days: int = 7  # ... with the days before it
    alpha: float = 0.001
    min_samples: int = 100  # in each of latest and baseline
    drift_exploration_floor: float = 0.15


@dataclass(frozen=True)
class MetricTest:
    metric: str
    statistic: float
    p: float
    drifted: bool


def _bins(sketch: BaseDDSketch) -> dict[int, float]:
    """Bin index -> count, with zero (and negatives, never produced here) folded below every bin."""
    pb = DDSketchProto.to_proto(sketch)  # type: ignore[no-untyped-call]
    out: dict[int, float] = {}
    pos = pb.positiveValues
    for i, c in enumerate(pos.contiguousBinCounts):
        if c:
            out[pos.contiguousBinIndexOffset + i] = out.get(pos.contiguousBinIndexOffset + i, 0.0) + c
    for k, c in pos.binCounts.items():
        out[k] = out.get(k, 0.0) + c
    zeros = pb.zeroCount + sum(pb.negativeValues.contiguousBinCounts) + sum(pb.negativeValues.binCounts.values())
    if zeros:
        out[_BELOW_ALL] = zeros  # one key below every bin of *both* sketches, so their zeros line up
    return out


def ks_sketch(a: BaseDDSketch, b: BaseDDSketch) -> tuple[float, float]:
    """(D, p) of the two-sample KS test between the distributions two sketches hold."""
    ba, bb = _bins(a), _bins(b)
    na, nb = sum(ba.values()), sum(bb.values())
    if na == 0 or nb == 0:
        raise ValueError(f"both sketches need values, got counts {na!r} and {nb!r}")
    keys = sorted(set(ba) | set(bb))
    ca = np.cumsum([ba.get(k, 0.0) for k in keys]) / na
    cb = np.cumsum([bb.get(k, 0.0) for k in keys]) / nb
    d = float(np.max(np.abs(ca - cb)))
    en = round(na * nb / (na + nb))
    return d, float(sps.kstwo.sf(d, max(en, 1)))


def proportions_p(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """(chi-square, p) for equal success rates; p = 1 when the table is degenerate."""
    table = np.array([[s1, n1 - s1], [s2, n2 - s2]], dtype=float)
    if (table.sum(axis=0) == 0).any():
        return 0.0, 1.0
    chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
    return float(chi2), float(p)


def compare(latest: Summary, baseline: Summary, cfg: DriftConfig) -> list[MetricTest]:
    """One test per metric; empty when either side has fewer than ``min_samples`` observations."""
    if latest.n < cfg.min_samples or baseline.n < cfg.min_samples:
        return []
    out = []
    for metric, (sa, sb) in (("latency", (latest.latency, baseline.latency)),
                             ("reward", (latest.reward, baseline.reward))):
        d, p = ks_sketch(sa, sb)
        out.append(MetricTest(metric, round(d, 6), p, p < cfg.alpha))
    # success counts on the samples' scale, from the weighted rates (sampled successes stay unbiased)
    chi2, p = proportions_p(round((latest.success_rate or 0.0) * latest.n), latest.n,
                            round((baseline.success_rate or 0.0) * baseline.n), baseline.n)
    out.append(MetricTest("successRate", round(chi2, 6), p, p < cfg.alpha))
    return out


@dataclass(frozen=True)
class EpisodeUpdate:
    """What one drift run writes for a component: its new state and an alert per newly drifting metric."""

    state: dict[str, Any]
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert id -> document

    @property
    def raised(self) -> list[str]:
        return [a["metric"] for a in self.alerts.values()]


def advance_episodes(component: str, state: dict[str, Any], tests: dict[str, dict[str, Any]],
                     schedule_ms: int) -> EpisodeUpdate:
    """Store this run's tests in the component's state; a metric that starts drifting opens an episode (and
    one alert); one that keeps drifting raises nothing new; one back to normal closes its episode.
    ``changedAt`` is the last time an episode opened: a change point, kept after the episode closes."""
    metrics = dict(state.get("metrics") or {})
    alerts: dict[str, dict[str, Any]] = {}
    for metric, test in tests.items():
        was = bool((metrics.get(metric) or {}).get("drifting"))
        since = (metrics.get(metric) or {}).get("since")
        if test["drifted"] and not was:
            since = schedule_ms
            alerts[f"{component}~{metric}~{schedule_ms}"] = {
                "component": component, "metric": metric, "statistic": test["statistic"], "p": test["p"],
                "ts": schedule_ms, "kind": "drift",
            }
        metrics[metric] = {**test, "drifting": bool(test["drifted"]), "since": since if test["drifted"] else None,
                           "checkedAt": schedule_ms}
    doc: dict[str, Any] = {"component": component, "metrics": metrics,
                           "drifting": any(m.get("drifting") for m in metrics.values()), "updatedAt": schedule_ms}
    changed_at = schedule_ms if alerts else state.get("changedAt")
    if changed_at is not None:
        doc["changedAt"] = changed_at
    if "tunerShift" in state:  # the tuner's change test's last answer (services.tuning.tune_on_change)
        doc["tunerShift"] = state["tunerShift"]
    return EpisodeUpdate(doc, alerts)
