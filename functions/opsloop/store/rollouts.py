"""``ops_rollouts``: one document per shadow or canary, its evaluations as a subcollection. Rollouts are
created and ended by policy transitions (``policies.py``); here they are read and evaluated."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from . import paths


class FirestoreRolloutRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest rollouts, running or ended, with their document id."""
        q = self.db.collection(paths.ROLLOUTS).order_by("startedAt", direction=firestore.Query.DESCENDING)
        return [{**(s.to_dict() or {}), "rolloutId": s.id} for s in q.limit(limit).stream()]

    def running(self) -> list[dict[str, Any]]:
        q = self.db.collection(paths.ROLLOUTS).where(filter=FieldFilter("status", "==", "running"))
        return [s.to_dict() or {} for s in q.stream()]

    def get(self, rollout_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.ROLLOUTS).document(rollout_id).get()
        return snap.to_dict() if snap.exists else None

    def ended_canaries(self, policy_id: str | None = None) -> list[dict[str, Any]]:
        """Rollouts that reached traffic (a canary) and ended, with their document id."""
        q: Any = self.db.collection(paths.ROLLOUTS)
        if policy_id is not None:
            q = q.where(filter=FieldFilter("id", "==", policy_id))
        else:
            q = q.where(filter=FieldFilter("stage", "==", "canary"))
        return [{**d, "rolloutId": s.id} for s in q.stream()
                if (d := s.to_dict() or {}).get("stage") == "canary" and d.get("status") not in (None, "running")]

    def record_evaluation(self, rollout_id: str, evaluation: dict[str, Any], summary: dict[str, Any]) -> None:
        """Append an evaluation under the rollout and keep its latest numbers on the rollout itself."""
        ref = self.db.collection(paths.ROLLOUTS).document(rollout_id)
        batch = self.db.batch()
        batch.set(ref.collection("evaluations").document(str(evaluation["ts"])), evaluation)
        batch.set(ref, summary, merge=True)
        batch.commit()

    def evaluations(self, rollout_id: str) -> list[dict[str, Any]]:
        col = self.db.collection(paths.ROLLOUTS).document(rollout_id).collection("evaluations")
        return [s.to_dict() or {} for s in col.order_by("ts").stream()]
