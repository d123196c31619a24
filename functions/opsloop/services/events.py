"""Telling the outside world: the loop's events to Pub/Sub and a webhook (``deliverEvents``, every minute).

Each run, under its own lease:

1. **Collect.** Audit entries and alerts at or after the cursor (``ops_runs/events-cursor``) become events
   (``domain/events``); each is created once in the ledger ``ops_events`` (its id derived from its
   record), with every configured sink ``pending``. On the first run the cursor starts 10 minutes back,
   so a new deployment does not replay its history.
2. **Deliver.** Every pending entry that is due goes to each sink still pending for it. A sink that took
   it is not tried again (a webhook failing does not re-publish to Pub/Sub). A failure counts one attempt
   and sets the next one 1, 2, 4 … 60 minutes later; after ``maxAttempts`` the entry is ``dead`` and an
   ``ops_alerts`` entry (``event_undelivered``) says so. A sink that fails is not tried again in the same
   run (its other events wait for the next run without losing an attempt), and the operator is told once
   per sink: one ``ops_alerts`` entry (``events~sink~<name>``, its ``count`` rising) — never an event of
   its own. A run stops taking entries after its budget; the rest are due next minute.

Delivery is at least once (a crash between a send and the ledger update sends that event again): the
event id lets a consumer drop a repeat.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..domain import config as config_domain
from ..domain import events as events_domain
from ..domain.config import EventsSettings, Settings
from ..domain.windows import DAY_MS, ms
from . import alerts, learning
from . import config as config_service
from .ports import Store

LEASE = "events"
LEASE_TTL_S = 110.0  # below deliverEvents' 120 s timeout
RUN_BUDGET_S = 60.0
SOURCE_LIMIT = 500  # audit entries and alerts read per run, each
DUE_LIMIT = 200
FIRST_LOOKBACK_MS = 10 * 60_000
KEEP_DAYS = 30  # ledger entries expire (TTL on expireAt) after this


class Sink(Protocol):
    """Where events go; ``send`` raises when the event was not taken."""

    name: str

    def send(self, event: events_domain.Event) -> None: ...


@dataclass
class DeliveryResult:
    run_id: str
    enabled: bool = True
    lease_acquired: bool = True
    found: int = 0  # new events put in the ledger
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # sink -> its first error this run


def collect(store: Store, now_ms: int, sink_names: list[str]) -> int:
    """Put the events of new audit entries and alerts in the ledger; how many were new."""

    def still_draft(policy_id: str, version: str) -> bool:
        return (store.policies.policy(policy_id, version) or {}).get("status") == "draft"

    cursor = store.events.cursor()
    start = now_ms - FIRST_LOOKBACK_MS
    audit_ts, alert_ts = int(cursor.get("auditTs", start)), int(cursor.get("alertTs", start))
    audit = store.audit.since(audit_ts, SOURCE_LIMIT)
    raised = store.alerts.since(alert_ts, SOURCE_LIMIT)
    found = [e for doc_id, entry in audit
             if (e := events_domain.from_audit(doc_id, entry, learning.LOOP_ACTORS, still_draft)) is not None]
    found += [e for alert_id, doc in raised if (e := events_domain.from_alert(alert_id, doc)) is not None]
    expire = dt.datetime.fromtimestamp((now_ms + KEEP_DAYS * DAY_MS) / 1000, dt.UTC)
    created = store.events.add([
        {"id": e.id, "event": e.to_doc(), "status": "pending", "sinks": dict.fromkeys(sink_names, "pending"),
         "attempts": 0, "nextAttemptAt": now_ms, "createdAt": now_ms, "expireAt": expire}
        for e in found])
    # the newest time seen; entries at exactly that time are read again next run and not added twice
    store.events.save_cursor({"auditTs": max([audit_ts, *(int(e["ts"]) for _, e in audit)]),
                              "alertTs": max([alert_ts, *(int(a["ts"]) for _, a in raised)])})
    return len(created)


def _attempt(store: Store, doc: dict[str, Any], sinks: list[Sink], broken: dict[str, str], cfg: EventsSettings,
             now_ms: int, result: DeliveryResult) -> None:
    event = events_domain.Event.from_doc(doc["event"])
    state: dict[str, str] = dict(doc.get("sinks") or {})
    configured = {s.name for s in sinks}
    for name, status in state.items():
        if status == "pending" and name not in configured:
            state[name] = "skipped"  # the sink was removed from config/events
    errors: dict[str, str] = {}
    waiting = False
    for sink in sinks:
        if state.get(sink.name) != "pending":
            continue
        if sink.name in broken:  # failed earlier in this run: wait for the next run, no attempt counted
            waiting = True
            continue
        try:
            sink.send(event)
        except Exception as exc:
            errors[sink.name] = broken[sink.name] = alerts.describe(exc)
            result.errors.setdefault(sink.name, errors[sink.name])
            continue
        state[sink.name] = "delivered"
    if not errors and not waiting:
        store.events.update(event.id, {"sinks": state, "status": "delivered", "deliveredAt": now_ms,
                                       "attempts": int(doc.get("attempts", 0)) + 1})
        result.delivered += 1
        return
    if not errors:  # only waiting behind a sink that failed this run
        store.events.update(event.id, {"sinks": state})
        return
    attempts = int(doc.get("attempts", 0)) + 1
    last_error = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))[:1000]
    if attempts >= cfg.max_attempts:
        store.events.update(event.id, {"sinks": state, "status": "dead", "attempts": attempts, "lastError": last_error,
                                       "deadAt": now_ms})
        alerts.quietly(lambda: store.alerts.raise_once(f"event-undelivered~{event.id}", {
            "kind": "event_undelivered", "eventId": event.id, "type": event.type, "subject": event.subject,
            "attempts": attempts, "error": last_error, "ts": now_ms}), f"dead-letter {event.id}")
        result.dead += 1
        return
    store.events.update(event.id, {"sinks": state, "attempts": attempts, "lastError": last_error,
                                   "nextAttemptAt": events_domain.next_attempt_ms(now_ms, attempts)})
    result.retried += 1


def deliver(store: Store, make_sinks: Callable[[EventsSettings], list[Sink]], now: dt.datetime,
            loaded: Settings | None = None, monotonic: Callable[[], float] = time.monotonic,
            run_id: str | None = None) -> DeliveryResult:
    """One delivery run: collect new events, then send what is due (see the module's docstring)."""
    loaded = loaded or config_service.load(store, (config_domain.EVENTS,))
    cfg = loaded.events
    now_ms = ms(now)
    run_id = run_id or f"events-{now_ms}-{uuid.uuid4().hex[:8]}"
    if not cfg.enabled:
        return DeliveryResult(run_id, enabled=False, lease_acquired=False)
    if not store.runs.acquire_lease(LEASE, run_id, LEASE_TTL_S):
        return DeliveryResult(run_id, lease_acquired=False)
    result = DeliveryResult(run_id)
    try:
        sinks = make_sinks(cfg)
        result.found = collect(store, now_ms, [s.name for s in sinks])
        deadline = monotonic() + RUN_BUDGET_S
        broken: dict[str, str] = {}
        for doc in store.events.due(now_ms, DUE_LIMIT):
            if monotonic() > deadline:
                break
            _attempt(store, doc, sinks, broken, cfg, now_ms, result)
        for name, error in broken.items():  # one entry per sink, its count rising: told once, not per event
            alerts.quietly(lambda n=name, e=error: store.alerts.note(f"events~sink~{n}", {  # type: ignore[misc]
                "kind": "event_sink", "sink": n, "error": e, "ts": now_ms}), f"alert on the {name} sink")
    finally:
        store.runs.release_lease(LEASE, run_id)
    return result
