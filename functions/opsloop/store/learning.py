"""``ops_learning``: one document per policy, what each change did and the loop's decision rates."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from . import paths


class FirestoreLearningRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def get(self, policy_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.LEARNING).document(policy_id).get()
        return snap.to_dict() if snap.exists else None

    def all(self) -> list[dict[str, Any]]:
        return [s.to_dict() or {} for s in self.db.collection(paths.LEARNING).stream()]

    def write(self, policy_id: str, doc: dict[str, Any]) -> None:
        """Replace the policy's record (it is recomputed whole; final effects are carried by the caller)."""
        self.db.collection(paths.LEARNING).document(policy_id).set(doc)
