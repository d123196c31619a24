"""``ops_experiments``: one document per canary that ended, the optimiser's memory and the operator's
history."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from . import paths


class FirestoreExperimentRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def ids(self, policy_id: str | None = None) -> set[str]:
        q: Any = self.db.collection(paths.EXPERIMENTS)
        if policy_id is not None:
            q = q.where(filter=FieldFilter("id", "==", policy_id))
        return {s.id for s in q.select([]).stream()}

    def create(self, doc: dict[str, Any]) -> bool:
        """Write an experiment once (its id is its rollout's); False when it is already there."""
        try:
            self.db.collection(paths.EXPERIMENTS).document(str(doc["experimentId"])).create(doc)
        except gexc.AlreadyExists:
            return False
        return True

    def recent(self, policy_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` experiments (by end time, then id), of one policy or of all; one query."""
        q: Any = self.db.collection(paths.EXPERIMENTS)
        if policy_id is not None:
            q = q.where(filter=FieldFilter("id", "==", policy_id))
        q = q.order_by("endedAt", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING)
        return [s.to_dict() or {} for s in q.limit(limit).stream()]

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.EXPERIMENTS).document(experiment_id).get()
        return snap.to_dict() if snap.exists else None
