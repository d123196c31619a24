"""``ops_runs``: leases that keep scheduled jobs from overlapping, and one record per run."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from . import paths
from .tx import release_claim, try_claim


class FirestoreRunRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def _lease_ref(self, name: str) -> firestore.DocumentReference:
        return self.db.collection(paths.RUNS).document(f"lease-{name}")

    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take the named lease unless another live owner holds it (renewing it when ``owner`` does)."""
        return try_claim(self._lease_ref(name), owner, ttl_s) is not None

    def release_lease(self, name: str, owner: str) -> None:
        release_claim(self._lease_ref(name), owner)

    def record(self, run_id: str, data: dict[str, Any]) -> None:
        self.db.collection(paths.RUNS).document(run_id).set(data, merge=True)
