"""``ops_audit``: the append-only, hash-chained audit log.

Every audit entry is written by ``append_audit`` and nowhere else: created, sealed into its chain, never
updated (tests/unit/test_audit_writes.py checks the source for other writes). Repositories that change
something audited (policies, config/flags) call it inside their own transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..domain import audit as audit_domain
from . import paths


def _chain_ref(db: firestore.Client, chain: str) -> firestore.DocumentReference:
    return db.collection(paths.AUDIT_CHAINS).document(chain)


def chain_head(db: firestore.Client, txn: firestore.Transaction, chain: str) -> audit_domain.ChainHead:
    snap = _chain_ref(db, chain).get(transaction=txn)
    return audit_domain.ChainHead.from_doc(snap.to_dict() if snap.exists else None)


def append_audit(
    db: firestore.Client, txn: firestore.Transaction, chain: str, head: audit_domain.ChainHead,
    entry: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """Seal ``entry`` after ``head`` (read earlier in this transaction) and create it."""
    sealed, new_head = audit_domain.seal(entry, chain, head)
    doc_id = uuid.uuid4().hex
    txn.create(db.collection(paths.AUDIT).document(doc_id), sealed)
    txn.set(_chain_ref(db, chain), {"chain": chain, "seq": new_head.seq, "hash": new_head.hash,
                                    "lastEntry": doc_id, "updatedAt": sealed.get("ts")})
    return doc_id, sealed


class FirestoreAuditRepo:
    """Reading the audit log and its chains (writes go through ``append_audit``)."""

    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def since(self, ts: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Entries at or after ``ts``, oldest first, with their document ids (the events' source)."""
        q = self.db.collection(paths.AUDIT).where(filter=FieldFilter("ts", ">=", ts)).order_by("ts").limit(limit)
        return [(s.id, s.to_dict() or {}) for s in q.stream()]

    def chains(self) -> dict[str, audit_domain.ChainHead]:
        return {s.id: audit_domain.ChainHead.from_doc(s.to_dict()) for s in
                self.db.collection(paths.AUDIT_CHAINS).stream()}

    def entries(self, chain: str) -> list[tuple[str, dict[str, Any]]]:
        """One chain's entries in sequence order, with their document ids."""
        q = self.db.collection(paths.AUDIT).where(filter=FieldFilter("chain", "==", chain)).order_by("seq")
        return [(s.id, s.to_dict() or {}) for s in q.stream()]

    def unchained(self, known: set[str]) -> list[tuple[str, dict[str, Any]]]:
        """Audit entries that belong to no known chain (only the Admin SDK could have written them)."""
        return [(s.id, d) for s in self.db.collection(paths.AUDIT).stream()
                if (d := s.to_dict() or {}).get("chain") not in known]

    def log(self, limit: int = 100, policy_id: str | None = None) -> list[dict[str, Any]]:
        """The newest entries first, of one policy or of all."""
        q: Any = self.db.collection(paths.AUDIT)
        if policy_id is not None:
            q = q.where(filter=FieldFilter("id", "==", policy_id))
        return [s.to_dict() or {} for s in q.order_by("ts", direction=firestore.Query.DESCENDING).limit(limit).stream()]
