"""``ops_alerts``: one entry per distinct problem, newest first for the operator."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from . import paths


class FirestoreAlertRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def raise_once(self, alert_id: str, doc: dict[str, Any]) -> bool:
        """Create the entry unless it exists (one alert per distinct problem); True if new."""
        try:
            self.db.collection(paths.ALERTS).document(alert_id).create(doc)
        except gexc.AlreadyExists:
            return False
        return True

    def note(self, alert_id: str, doc: dict[str, Any]) -> None:
        """Create or refresh a recurring entry: its fields updated, ``count`` incremented."""
        self.db.collection(paths.ALERTS).document(alert_id).set({**doc, "count": firestore.Increment(1)},
                                                                 merge=True)

    def since(self, ts: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Alerts whose ``ts`` (raised, or last refreshed) is at or after ``ts``, oldest first, with their ids."""
        q = self.db.collection(paths.ALERTS).where(filter=FieldFilter("ts", ">=", ts)).order_by("ts").limit(limit)
        return [(s.id, s.to_dict() or {}) for s in q.stream()]

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        q = self.db.collection(paths.ALERTS).order_by("ts", direction=firestore.Query.DESCENDING).limit(limit)
        return [s.to_dict() or {} for s in q.stream()]
