"""``ops_experiments``: one document per canary that ended, the optimiser's memory and the operator's
history. A repository of its own (the first piece cut from ``FirestoreStore``)."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from . import paths


class ExperimentStore:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def ended_canaries(self, policy_id: str | None = None) -> list[dict[str, Any]]:
        """Rollouts that reached traffic (a canary) and ended, with their document id."""
        q: Any = self.db.collection(paths.ROLLOUTS)
        if policy_id is not None:
            q = q.where(filter=FieldFilter("id", "==", policy_id))
        else:
            q = q.where(filter=FieldFilter("stage", "==", "canary"))
        return [{**d, "rolloutId": s.id} for s in q.stream()
                if (d := s.to_dict() or {}).get("stage") == "canary" and d.get("status") not in (None, "running")]

    def experiment_ids(self, policy_id: str | None = None) -> set[str]:
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

    def list(self, policy_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Newest first."""
        q: Any = self.db.collection(paths.EXPERIMENTS)
        if policy_id is not None:
            q = q.where(filter=FieldFilter("id", "==", policy_id))
        docs = [s.to_dict() or {} for s in q.stream()]
        return sorted(docs, key=lambda d: (d.get("endedAt") or 0, str(d.get("experimentId"))), reverse=True)[:limit]

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.EXPERIMENTS).document(experiment_id).get()
        return snap.to_dict() if snap.exists else None
