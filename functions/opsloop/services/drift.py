"""Drift: each component's latest window against the days before it, alerting once per episode."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..domain import drift as drift_domain
from ..domain import windows
from ..domain.stats import total
from ..store import paths
from ..store.firestore_store import FirestoreStore, ms


@dataclass
class DriftResult:
    component: str
    tested: list[str]
    drifting: list[str]
    alerted: list[str]


def check_drift(store: FirestoreStore, schedule_time: dt.datetime) -> list[DriftResult]:
    cfg = drift_domain.DriftConfig.from_doc(store.config(paths.DRIFT_DOC))
    latest_start, end = windows.window_bounds(ms(schedule_time), cfg.latest)
    base_start = latest_start - cfg.baseline_days * windows.DAY_MS
    out = []
    for component, last_ts in sorted((store.read_cursor().components or {}).items()):
        if last_ts < latest_start:
            continue  # nothing new to compare
        latest = total(store.load_segments(component, windows.cover(latest_start, end)))
        baseline = total(store.load_segments(component, windows.cover(base_start, latest_start)))
        tests = drift_domain.compare(latest, baseline, cfg)
        if not tests:
            continue
        docs = {t.metric: {"statistic": t.statistic, "p": t.p, "drifted": t.drifted} for t in tests}
        alerted = store.update_drift(component, docs, ms(schedule_time))
        out.append(DriftResult(component, [t.metric for t in tests], [t.metric for t in tests if t.drifted],
                               alerted))
    return out
