"""Refreshing ``ops_learning``: what each change did to its policy's reward, and the loop's decision rates.

Run by ``evaluateRollouts`` after its drift and retrain checks, and by ``opsloop learning --refresh``. A
change whose after window has ended is final: its record is kept as stored and not read again, so a run
reads the buckets of the recent changes only (two window totals and a 5-minute series each). See
``domain/learning`` for the definitions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ..domain import learning, windows
from ..domain.stats import Summary, total
from ..store import paths
from . import generations, policies
from .ports import Store
from .rollouts import CONTROLLER

LOOP_ACTORS = (policies.UPDATER, CONTROLLER)
PERIOD_MS = 30 * windows.DAY_MS
AUDIT_LIMIT = 1000


def _components(store: Store, policy_id: str) -> list[str]:
    """The router components the policy's versions route to (drift is checked per component)."""
    models: set[str] = set()
    for doc in store.policies.versions(policy_id):
        weights = (doc.get("params") or {}).get("modelWeights")
        if isinstance(weights, dict):
            models |= {str(m) for m in weights}
    return sorted(f"router:{m}" for m in models)


def _detections(states: Iterable[dict[str, Any]]) -> set[int]:
    """When a change was detected in a component: the drift check's last episode (``changedAt``) and the
    start of the tuner's change test's last shift (``tunerShift.start``)."""
    out: set[int] = set()
    for st in states:
        shift = st.get("tunerShift")
        for value in (st.get("changedAt"), shift.get("start") if isinstance(shift, dict) else None):
            if isinstance(value, int) and not isinstance(value, bool):
                out.add(value)
    return out


def _change_doc(store: Store, key: str, change: learning.Change, span: learning.Windows | None, now_ms: int,
                previous_ts: int | None, detections: list[int]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "auditId": change.audit_id, "ts": change.ts, "action": change.action, "actor": change.actor,
        "auto": change.auto, "from": change.from_version, "to": change.to_version,
        "timeToFixMs": learning.time_to_fix(change, previous_ts, detections),
    }
    if span is None:
        return {**doc, "effect": None, "note": "another change within 5 minutes: no matched windows"}
    now_bucket = windows.bucket_start(now_ms, "5m")  # the bucket in progress is not read
    after_end = min(span.after[1], now_bucket)
    final = now_bucket >= span.after[1]
    before = total(store.buckets.load_segments(key, windows.cover(*span.before)))
    after = (total(store.buckets.load_segments(key, windows.cover(span.after[0], after_end)))
             if after_end > span.after[0] else Summary())
    series = store.buckets.series(key, "5m", span.before[0], span.after[1])
    return {**doc, "windowMs": span.length_ms, "before": list(span.before), "after": list(span.after),
            "effect": learning.effect(before, after, final).to_doc(),
            "series": [{"start": start, "reward": round(s.mean_reward or 0.0, 6), "n": s.n}  # Firestore: no nested
                       for start, s in series if s.n]}  # arrays


def refresh_policy(store: Store, policy_id: str, now_ms: int,
                   window_ms: int = learning.DEFAULT_WINDOW_MS) -> dict[str, Any]:
    """Recompute and store one policy's learning record; returns it."""
    gens = generations.current(store)
    key = gens.read_key(paths.policy_key(policy_id))
    entries = store.audit.log(limit=AUDIT_LIMIT, policy_id=policy_id)
    changes = learning.changes(entries, LOOP_ACTORS)[-learning.MAX_CHANGES:]
    stored = store.learning.get(policy_id) or {}
    same_basis = stored.get("windowMs") == window_ms and stored.get("rewardGeneration") == gens.read
    kept = {c.get("auditId"): c for c in stored.get("changes") or []
            if same_basis and (c.get("effect") or {}).get("final")}
    components = _components(store, policy_id)
    drift = store.drift.get_many(components) if components else {}
    detections = sorted(_detections(drift.values()))
    docs = []
    for i, change in enumerate(changes):
        if change.audit_id in kept:
            docs.append(kept[change.audit_id])
            continue
        previous_ts = changes[i - 1].ts if i else None
        next_ts = changes[i + 1].ts if i + 1 < len(changes) else None
        span = learning.matched_windows(change.ts, window_ms, previous_ts, next_ts)
        docs.append(_change_doc(store, key, change, span, now_ms, previous_ts, detections))
    effects = [d["effect"] for d in docs if d.get("effect") and d["effect"].get("diff") is not None]
    fixes = [d["timeToFixMs"] for d in docs if d.get("timeToFixMs") is not None]
    doc = {
        "id": policy_id, "updatedAt": now_ms, "windowMs": window_ms, "rewardGeneration": gens.read,
        "changes": list(reversed(docs)),  # newest first
        "rates": learning.rates(entries, LOOP_ACTORS, now_ms, PERIOD_MS),
        "summary": {
            "changes": len(docs), "measured": len(effects),
            "improved": sum(1 for e in effects if e.get("ciLow") is not None and e["ciLow"] > 0),
            "worsened": sum(1 for e in effects if e.get("ciHigh") is not None and e["ciHigh"] < 0),
            "meanDiff": round(sum(e["diff"] for e in effects) / len(effects), 6) if effects else None,
            "medianTimeToFixMs": sorted(fixes)[len(fixes) // 2] if fixes else None,
        },
    }
    store.learning.write(policy_id, doc)
    return doc


def refresh(store: Store, now: dt.datetime | None = None, only: set[str] | None = None,
            window_ms: int = learning.DEFAULT_WINDOW_MS) -> list[dict[str, Any]]:
    """Every policy's learning record (of ``only`` those ids when given), refreshed and stored."""
    now_ms = windows.ms(now or dt.datetime.now(dt.UTC))
    ids = sorted({str(d.get("id")) for d in store.policies.all() if d.get("id")})
    return [refresh_policy(store, pid, now_ms, window_ms) for pid in ids if only is None or pid in only]
