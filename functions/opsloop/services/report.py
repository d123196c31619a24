"""What the operator's report shows, gathered from Firestore (rendering lives in ``opsloop.cli``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..domain import windows
from ..domain.stats import Summary
from . import experiments, generations
from .ports import Store

SHOWN_STATUSES = ("draft", "shadow", "canary")  # versions shown beside the active one


@dataclass
class ComponentSeries:
    component: str
    level: str
    points: list[dict[str, Any]] = field(default_factory=list)  # start, n, reward, successRate, p95Latency, cost


@dataclass
class ReportData:
    end_ms: int
    hours: int
    series: list[ComponentSeries]
    stats: list[dict[str, Any]]
    policies: list[dict[str, Any]]  # {id, active: doc | None, candidates: [doc]}
    rollouts: list[dict[str, Any]]  # rollout doc + "evaluations"
    audit: list[dict[str, Any]]
    cards: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    experiments: list[dict[str, Any]] = field(default_factory=list)  # ended canaries, newest first
    learning: list[dict[str, Any]] = field(default_factory=list)  # ops_learning: one record per policy


def point(start: int, s: Summary) -> dict[str, Any]:
    return {"start": start, "n": round(s.estimated_count), "reward": s.mean_reward, "successRate": s.success_rate,
            "p95Latency": s.latency_quantile(0.95), "costUsd": s.mean_cost}


def gather(store: Store, end_ms: int, hours: int = 48, audit_limit: int = 200) -> ReportData:
    """Series over ``hours`` before ``end_ms`` per component (5-minute, hourly or daily buckets by span),
    policies, rollouts, audit, cards."""
    if not 1 <= hours <= 24 * 90:
        raise ValueError(f"hours must be in 1..2160, got {hours!r}")
    level = "5m" if hours <= 6 else ("1h" if hours <= 24 * 14 else "1d")  # ~24 to ~340 points a line
    end = windows.bucket_start(windows.window_end(end_ms) - 1, level) + windows.LEVELS[level]
    start = end - hours * windows.HOUR_MS
    series = []
    gens = generations.current(store)
    for comp in sorted(store.observations.active_components(start)):
        buckets = store.buckets.series(gens.read_key(comp), level, start, end)
        series.append(ComponentSeries(comp, level, [point(s, b) for s, b in buckets if b.n]))
    by_id: dict[str, dict[str, Any]] = {}
    for doc in store.policies.all():
        entry = by_id.setdefault(str(doc.get("id")), {"id": doc.get("id"), "active": None, "candidates": []})
        if doc.get("status") == "active":
            entry["active"] = doc
        elif doc.get("status") in SHOWN_STATUSES:
            entry["candidates"].append(doc)
    for entry in by_id.values():
        entry["candidates"].sort(key=lambda d: _created(d), reverse=True)
    rollouts = [{**r, "evaluations": store.rollouts.evaluations(str(r["rolloutId"]))}
                for r in store.rollouts.recent(limit=20)]
    return ReportData(
        end_ms=end_ms, hours=hours, series=series,
        stats=sorted(store.stats.all(), key=lambda d: (str(d.get("component")), str(d.get("window")))),
        policies=[by_id[k] for k in sorted(by_id)], rollouts=rollouts,
        audit=store.audit.log(limit=audit_limit), cards=store.cards.all(), alerts=store.alerts.recent(limit=50),
        experiments=experiments.experiments(store, limit=50), learning=store.learning.all(),
    )


def _created(doc: dict[str, Any]) -> float:
    value = doc.get("createdAt")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
