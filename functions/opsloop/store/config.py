"""``config/*`` documents, the last good copy of each, and the audited learning flags."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.cloud import firestore

from ..domain import audit as audit_domain
from ..domain import config as config_domain
from . import paths
from .audit import append_audit, chain_head
from .tx import run_transaction
from .util import now_ms, snap_dict


class FirestoreConfigRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def get(self, name: str) -> dict[str, Any]:
        """``config/<name>`` as stored; ``{}`` when absent."""
        return snap_dict(self.db.collection(paths.CONFIG).document(name).get())

    def get_many(self, names: Iterable[str]) -> dict[str, Any]:
        """The raw ``config/<name>`` documents (absent ones left out) and the last good copy of each.

        One batched read of every named document plus the last good copy of each (``ops_runs/config-good``),
        returned as ``{"docs": {name: data}, "good": {name: data}}``.
        """
        refs = [self.db.collection(paths.CONFIG).document(n) for n in names]
        good_ref = self.db.collection(paths.RUNS).document(paths.CONFIG_GOOD_DOC)
        docs: dict[str, Any] = {}
        good: dict[str, Any] = {}
        for snap in self.db.get_all([*refs, good_ref]):
            if not snap.exists:
                continue
            if snap.reference.path == good_ref.path:
                good = dict((snap.to_dict() or {}).get("docs") or {})
            else:
                docs[snap.id] = snap.to_dict()
        return {"docs": docs, "good": good}

    def save_good(self, name: str, data: dict[str, Any]) -> None:
        """Keep ``data`` as the last good ``config/<name>`` (used while a later edit does not parse)."""
        self.db.collection(paths.RUNS).document(paths.CONFIG_GOOD_DOC).set(
            {"docs": {name: data}, "updatedAt": now_ms()}, merge=[f"docs.{name}", "updatedAt"])  # type: ignore[arg-type]

    def set(self, name: str, data: dict[str, Any], merge: bool = True) -> None:
        self.db.collection(paths.CONFIG).document(name).set(data, merge=merge)

    def set_flags(self, learning: dict[str, bool], actor: str) -> config_domain.FlagsChange:
        """Merge ``learning`` flags into config/flags with an audit entry, atomically.

        The change (``doc`` None when nothing changes) is decided by ``config_domain.change_flags``.
        """
        ref = self.db.collection(paths.CONFIG).document(paths.FLAGS_DOC)
        chain = audit_domain.FLAGS_CHAIN

        def work(txn: firestore.Transaction) -> config_domain.FlagsChange:
            change = config_domain.change_flags(snap_dict(ref.get(transaction=txn)), learning)
            if change.doc is None:
                return change
            head = chain_head(self.db, txn, chain)
            txn.set(ref, change.doc)
            append_audit(self.db, txn, chain, head, {"ts": now_ms(), "actor": actor, "action": "set_flags",
                                                     "id": "config/flags", "from": change.old, "to": change.new})
            return change

        return run_transaction(self.db, work)
