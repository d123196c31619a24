"""What the loop tells the outside world: CloudEvents made from the audit trail and the alerts.

The sources are the loop's own append-only records, so nothing new has to be written where a change
happens: a promotion, a safety rollback or a tuner's draft is an ``ops_audit`` entry, a drift, a config
error or a failed run is an ``ops_alerts`` entry. Each becomes at most one event whose id is derived from
its record (``audit-<doc id>``, ``alert-<alert id>``), so a consumer can drop a redelivery by id.

Delivery (``services/events``) sends each event to a Pub/Sub topic in the CloudEvents Pub/Sub binding's
binary mode (``ce-*`` attributes, the data as JSON) and, optionally, to a webhook as a Slack-compatible
``{"text": ...}`` payload that also carries the structured CloudEvent.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = "1.0"
SOURCE = "//opsloop"

DRAFT = "opsloop.policy.draft_awaiting_approval"
PROMOTED = "opsloop.policy.promoted"
SAFETY_ROLLBACK = "opsloop.rollout.safety_rollback"
DRIFT = "opsloop.drift.detected"
CONFIG_INVALID = "opsloop.config.invalid"
RUN_FAILED = "opsloop.run.failed"
SRM = "opsloop.rollout.sample_ratio_mismatch"
TYPES = (DRAFT, PROMOTED, SAFETY_ROLLBACK, DRIFT, CONFIG_INVALID, RUN_FAILED, SRM)

# Alert kinds that the delivery itself raises: never sent as events (a broken sink would feed itself).
DELIVERY_ALERTS = ("event_undelivered", "event_sink")

BACKOFF_BASE_MS = 60_000
BACKOFF_MAX_MS = 3_600_000


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    subject: str
    time_ms: int
    summary: str  # one line for people (the webhook's text)
    data: dict[str, Any] = field(default_factory=dict)

    def time(self) -> str:
        return dt.datetime.fromtimestamp(self.time_ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")

    def structured(self) -> dict[str, Any]:
        """The CloudEvent in structured mode (JSON)."""
        return {"specversion": SPEC_VERSION, "id": self.id, "source": SOURCE, "type": self.type,
                "subject": self.subject, "time": self.time(), "datacontenttype": "application/json",
                "data": self.data}

    def pubsub(self) -> tuple[bytes, dict[str, str]]:
        """The Pub/Sub message: the data as JSON, the context attributes as ``ce-*`` (binary mode)."""
        attributes = {"ce-specversion": SPEC_VERSION, "ce-id": self.id, "ce-source": SOURCE, "ce-type": self.type,
                      "ce-subject": self.subject, "ce-time": self.time(), "content-type": "application/json"}
        return json.dumps(self.data, sort_keys=True, default=str).encode(), attributes

    def webhook(self) -> dict[str, Any]:
        """A Slack-compatible payload (``text``) that carries the whole CloudEvent too."""
        return {"text": f"[opsloop] {self.summary}", "cloudevent": self.structured()}

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "subject": self.subject, "ts": self.time_ms,
                "summary": self.summary, "data": self.data}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Event:
        return cls(str(doc["id"]), str(doc["type"]), str(doc.get("subject", "")), int(doc["ts"]),
                   str(doc.get("summary", "")), dict(doc.get("data") or {}))


def _plain(value: Any) -> Any:
    """JSON-safe data (Firestore timestamps and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def from_audit(doc_id: str, entry: dict[str, Any], loop_actors: Collection[str],
               still_draft: Callable[[str, str], bool]) -> Event | None:
    """The event an audit entry means, if any: a promotion, a safety rollback, or a draft of the loop's
    that is still a draft (``still_draft(id, version)``: not activated, shadowed or canaried meanwhile,
    by an admin or by the loop itself when it activates its drafts)."""
    action, pid = entry.get("action"), str(entry.get("id", ""))
    ts = entry.get("ts")
    if not isinstance(ts, int):
        return None
    data = _plain({k: entry.get(k) for k in ("id", "from", "to", "actor", "actorEmail", "via", "reason", "rolloutId",
                                              "evidence") if entry.get(k) is not None})
    if action == "promote":
        return Event(f"audit-{doc_id}", PROMOTED, pid, ts, f"{pid} {entry.get('to')} promoted "
                     f"(was {entry.get('from')}) by {entry.get('actorEmail') or entry.get('actor')}", data)
    if action == "canary_rollback":
        return Event(f"audit-{doc_id}", SAFETY_ROLLBACK, pid, ts, f"{pid}: the canary of {entry.get('from')} was "
                     f"rolled back to {entry.get('to')}: {entry.get('reason') or 'a safety check breached'}", data)
    if action == "draft" and str(entry.get("actor")) in loop_actors and still_draft(pid, str(entry.get("to"))):
        return Event(f"audit-{doc_id}", DRAFT, pid, ts, f"{pid} {entry.get('to')} drafted from {entry.get('from')}, "
                     "waiting for an admin (activate, shadow or canary it)", data)
    return None


def from_alert(alert_id: str, doc: dict[str, Any]) -> Event | None:
    """The event an ``ops_alerts`` entry means; None for the delivery's own alerts."""
    kind, ts = doc.get("kind"), doc.get("ts")
    if kind in DELIVERY_ALERTS or not isinstance(ts, int):
        return None
    data = _plain({k: v for k, v in doc.items() if k != "count"})
    if kind == "drift":
        return Event(f"alert-{alert_id}", DRIFT, str(doc.get("component")), ts,
                     f"{doc.get('component')}: {doc.get('metric')} drifted ({doc.get('statistic')} p={doc.get('p')})",
                     data)
    if kind == "config":
        return Event(f"alert-{alert_id}", CONFIG_INVALID, str(doc.get("path")), ts,
                     f"config document {doc.get('path')} is invalid: {doc.get('message')}", data)
    if kind == "item_failed":
        return Event(f"alert-{alert_id}", RUN_FAILED, str(doc.get("job")), ts,
                     f"{doc.get('job')} failed on {doc.get('item')}: {doc.get('error')}", data)
    if kind == "srm":
        return Event(f"alert-{alert_id}", SRM, str(doc.get("id")), ts,
                     f"{doc.get('id')} {doc.get('version')}: sample ratio mismatch (p={doc.get('srmP')})", data)
    return None


def next_attempt_ms(now_ms: int, attempts: int) -> int:
    """When a failed delivery is tried again: 1, 2, 4, … minutes after the ``attempts``-th failure, at most
    an hour."""
    wait: int = min(BACKOFF_BASE_MS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_MS)
    return now_ms + wait
