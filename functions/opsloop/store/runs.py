"""``ops_runs``: leases that keep scheduled jobs from overlapping, and one record per run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.cloud import firestore

from . import paths
from .tx import release_claim, run_transaction, try_claim


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

    def change(self, doc_id: str,
               fn: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Replace ``ops_runs/<doc_id>`` by ``fn(what it holds)`` in one transaction (unchanged when ``fn``
        returns what it was given, or None); returns what it holds after."""
        ref = self.db.collection(paths.RUNS).document(doc_id)

        def work(txn: firestore.Transaction) -> dict[str, Any] | None:
            snap = ref.get(transaction=txn)
            before = snap.to_dict() if snap.exists else None
            after = fn(before)
            if after is not None and after != before:
                txn.set(ref, after)
                return after
            return before

        return run_transaction(self.db, work)

    def stamp(self, doc_id: str) -> Any:
        """Write Firestore's time into ``ops_runs/<doc_id>`` and return it (a server time, comparable with
        the commit times other documents carry)."""
        return self.db.collection(paths.RUNS).document(doc_id).set({"at": firestore.SERVER_TIMESTAMP}).update_time

    def get(self, doc_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.RUNS).document(doc_id).get()
        return snap.to_dict() if snap.exists else None
