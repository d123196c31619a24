"""Drift: each component's latest window against the days before it, alerting once per episode."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from .. import telemetry
from ..domain import config as config_domain
from ..domain import drift as drift_domain
from ..domain import windows
from ..domain.stats import total
from ..domain.windows import ms
from . import alerts, generations
from . import config as config_service
from .ports import Store


@dataclass
class DriftResult:
    component: str
    tested: list[str]
    drifting: list[str]
    alerted: list[str]
    error: str | None = None  # the component was skipped (recorded in ops_alerts)


def check_drift(store: Store, schedule_time: dt.datetime) -> list[DriftResult]:
    """Test every component with data in the latest window; one that fails is recorded and skipped."""
    loaded = config_service.load(store, (config_domain.DRIFT,))
    cfg = loaded.drift
    latest_start, end = windows.window_bounds(ms(schedule_time), cfg.latest)
    base_start = latest_start - cfg.baseline_days * windows.DAY_MS
    out = []
    gens = generations.current(store)  # latest and baseline from one reward generation
    for component in sorted(store.observations.active_components(latest_start)):
        try:
            key = gens.read_key(component)
            latest = total(store.buckets.load_segments(key, windows.cover(latest_start, end)))
            baseline = total(store.buckets.load_segments(key, windows.cover(base_start, latest_start)))
            tests = drift_domain.compare(latest, baseline, cfg)
            if not tests:
                continue
            docs = {t.metric: {"statistic": t.statistic, "p": t.p, "drifted": t.drifted} for t in tests}
            alerted = store.drift.update(component, functools.partial(
                drift_domain.advance_episodes, component, tests=docs, schedule_ms=ms(schedule_time)))
        except Exception as exc:
            error = alerts.item_failed(store, "evaluateRollouts.drift", f"component {component}", exc)
            out.append(DriftResult(component, [], [], [], error=error))
            continue
        out.append(DriftResult(component, [t.metric for t in tests], [t.metric for t in tests if t.drifted],
                               alerted))
        telemetry.drift_alerts(component, alerted)
    alerts.record_run(store, "drift", ms(schedule_time), [d.__dict__ for d in out], loaded.problems)
    return out
