"""``ops_events``: the delivery ledger of the loop's events.

One document per event (its id is the event's), created once: a source record seen again (an alert
refreshed, the cursor's own timestamp read twice) is not told twice. ``status`` is ``pending`` until every
sink took it, ``delivered`` then, or ``dead`` after the configured attempts (the dead letter is also an
``ops_alerts`` entry). The cursor (``ops_runs/events-cursor``) is the newest source time seen.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from . import paths


class FirestoreEventRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def cursor(self) -> dict[str, Any]:
        return self.db.collection(paths.RUNS).document(paths.EVENTS_CURSOR_DOC).get().to_dict() or {}

    def save_cursor(self, cursor: dict[str, Any]) -> None:
        self.db.collection(paths.RUNS).document(paths.EVENTS_CURSOR_DOC).set(cursor, merge=True)

    def add(self, docs: list[dict[str, Any]]) -> list[str]:
        """Create the ledger entries that do not exist yet; the ids created."""
        created = []
        for doc in docs:
            try:
                self.db.collection(paths.EVENTS).document(doc["id"]).create(doc)
            except gexc.AlreadyExists:
                continue
            created.append(str(doc["id"]))
        return created

    def due(self, now_ms: int, limit: int) -> list[dict[str, Any]]:
        """Pending entries whose next attempt is due, the longest waiting first."""
        q = (self.db.collection(paths.EVENTS).where(filter=FieldFilter("status", "==", "pending"))
             .where(filter=FieldFilter("nextAttemptAt", "<=", now_ms)).order_by("nextAttemptAt").limit(limit))
        return [s.to_dict() or {} for s in q.stream()]

    def update(self, event_id: str, fields: dict[str, Any]) -> None:
        self.db.collection(paths.EVENTS).document(event_id).update(fields)

    def get(self, event_id: str) -> dict[str, Any] | None:
        return self.db.collection(paths.EVENTS).document(event_id).get().to_dict()
