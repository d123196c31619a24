"""``thresholds.retrain`` acts: a component whose last hour's mean reward fell below its formula's
threshold raises an ``ops_alerts`` entry (once per hour) and triggers a tuning run of the policies that
govern it — the router policies that weigh it, and every policy whose versions its observations name.
Runs in ``evaluateRollouts``, after the rollouts and drift checks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..domain import config as config_domain
from ..domain import windows
from ..domain.stats import OTHER, total
from ..domain.windows import ms
from . import alerts, generations, tuning
from . import config as config_service
from .ports import Store

MIN_SAMPLES = 30  # an hour with fewer observations says too little to retrain on


@dataclass
class RetrainResult:
    component: str
    avg_reward: float
    threshold: float
    n: int
    policies: list[str] = field(default_factory=list)
    alerted: bool = False  # False: this hour's alert was raised by an earlier evaluation (nothing re-run)
    tuned: list[str] = field(default_factory=list)  # "policy: action" of the tuning run it triggered


def governing_policies(component: str, versions: list[str], active: list[dict[str, Any]]) -> list[str]:
    """The policies that govern ``component``: router policies (of the ``active`` versions) weighing its
    model, and the policies whose versions (``id@x.y.z``) its observations were made under."""
    found = {v.split("@", 1)[0] for v in versions if "@" in v and v != OTHER}
    if component.startswith("router:"):
        model = component.split(":", 1)[1]
        for doc in active:
            weights = (doc.get("params") or {}).get("modelWeights")
            if isinstance(weights, dict) and model in weights:
                found.add(str(doc["id"]))
    return sorted(found)


def check_retrain(store: Store, schedule_time: dt.datetime) -> list[RetrainResult]:
    """Every component below its retrain threshold over the hour before ``schedule_time``."""
    loaded = config_service.load(store, (config_domain.REWARD,))
    schedule_ms = ms(schedule_time)
    start, end = windows.window_bounds(schedule_ms, "1h")
    out: list[RetrainResult] = []
    active: list[dict[str, Any]] | None = None  # read once, and only when some component is below
    gens = generations.current(store, loaded.reward_rules)  # the hour's rewards and threshold, one formula
    for component in sorted(store.observations.active_components(start)):
        try:
            summary = total(store.buckets.load_segments(gens.read_key(component), windows.cover(start, end)))
            threshold = gens.config(component).retrain
            mean = summary.mean_reward
            if summary.n < MIN_SAMPLES or mean is None or mean >= threshold:
                continue
            if active is None:
                active = store.policies.with_status("active")
            policies = governing_policies(component, [v for v, _ in summary.versions], active)
            result = RetrainResult(component, round(mean, 6), threshold, summary.n, policies)
            hour = windows.bucket_start(end - 1, "1h")
            result.alerted = store.alerts.raise_once(f"retrain~{component}~{hour}", {
                "kind": "retrain", "component": component, "avgReward": result.avg_reward,
                "threshold": threshold, "n": summary.n, "policies": policies, "windowStart": start,
                "windowEnd": end, "ts": schedule_ms})
            out.append(result)
        except Exception as exc:
            alerts.item_failed(store, "evaluateRollouts.retrain", f"component {component}", exc)
    # one tuning run for every policy a newly alerted component names (two components of one router: once)
    wanted = {p for r in out if r.alerted for p in r.policies}
    if wanted:
        run = tuning.auto_tune(store, schedule_time, only=wanted)
        done = {o.policy_id: f"{o.policy_id}: {o.action}" for o in run.outcomes}
        for r in out:
            if r.alerted:
                r.tuned = [done[p] for p in r.policies if p in done] if run.enabled else ["learning is disabled"]
    return out
