"""``ops_policies`` (one document per version) and ``ops_policy_heads`` (per policy: active version,
history, running rollout). Every lifecycle change is one transaction with its audit entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..domain import audit as audit_domain
from ..domain import config as config_domain
from ..domain import policy as policy_domain
from ..domain.errors import Conflict
from . import paths
from .audit import append_audit, chain_head
from .policy_reader import read_head, read_version
from .tx import TransactionExhausted, run_transaction, turnstile
from .util import now_ms, snap_dict

TRANSITION_ATTEMPTS = 40

Plan = Callable[[policy_domain.Head, policy_domain.StatusOf], policy_domain.Transition | None]


class FirestorePolicyRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def _version_ref(self, policy_id: str, version: str) -> firestore.DocumentReference:
        return self.db.collection(paths.POLICIES).document(f"{policy_id}@{version}")

    def _require_learning(self, txn: firestore.Transaction) -> None:
        # read in the transaction that changes something, so a kill switch thrown meanwhile is honoured
        config_domain.require_learning(snap_dict(
            self.db.collection(paths.CONFIG).document(paths.FLAGS_DOC).get(transaction=txn)) or None)

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None:
        """One version's document; None when it does not exist."""
        return read_version(self.db, policy_id, version)

    def head(self, policy_id: str) -> policy_domain.Head:
        """The policy's head (active version, history, running rollout), outside any transaction."""
        return read_head(self.db, policy_id)

    def versions(self, policy_id: str) -> list[dict[str, Any]]:
        q = self.db.collection(paths.POLICIES).where(filter=FieldFilter("id", "==", policy_id))
        return [s.to_dict() or {} for s in q.stream()]

    def with_status(self, status: str) -> list[dict[str, Any]]:
        q = self.db.collection(paths.POLICIES).where(filter=FieldFilter("status", "==", status))
        return [s.to_dict() or {} for s in q.stream()]

    def all(self) -> list[dict[str, Any]]:
        return [s.to_dict() or {} for s in self.db.collection(paths.POLICIES).stream()]

    def create_version(self, doc: dict[str, Any], audit: dict[str, Any], require_learning: bool = False) -> bool:
        """Create a new version with its audit entry atomically; False when that version exists.

        The version records the hash of its params and the audit entry that created it.
        """
        ref = self._version_ref(str(doc["id"]), str(doc["version"]))
        chain = audit_domain.policy_chain(str(doc["id"]))

        def work(txn: firestore.Transaction) -> bool:
            if require_learning:
                self._require_learning(txn)
            if ref.get(transaction=txn).exists:
                return False
            head = chain_head(self.db, txn, chain)
            now = now_ms()
            params_hash = audit_domain.digest(doc.get("params") or {})
            audit_id, sealed = append_audit(self.db, txn, chain, head, {**audit, "ts": now, "paramsHash": params_hash})
            txn.create(ref, {**doc, "createdAt": doc.get("createdAt") or now, "paramsHash": params_hash,
                             "createdByAudit": {"id": audit_id, "hash": sealed["hash"]}})
            return True

        return run_transaction(self.db, work)

    def apply_transition(
        self,
        policy_id: str,
        plan: Plan,
        actor: str,
        extra_audit: dict[str, Any] | None = None,
        require_learning: bool = False,
    ) -> tuple[policy_domain.Transition | None, dict[str, Any] | None]:
        """Read the head, let ``plan`` decide, then write what the transition says: versions, head,
        rollout and the audit entry, all in one transaction, retried with a fresh one under contention.

        Returns (transition, sealed audit entry), or (None, None) when ``plan`` decides nothing changes.
        """
        head_ref = self.db.collection(paths.POLICY_HEADS).document(policy_id)
        chain = audit_domain.policy_chain(policy_id)

        def work(txn: firestore.Transaction) -> tuple[policy_domain.Transition | None, dict[str, Any] | None]:
            if require_learning:
                self._require_learning(txn)
            audit_head = chain_head(self.db, txn, chain)
            head_snap = head_ref.get(transaction=txn)
            if head_snap.exists:
                head = policy_domain.Head.from_doc(policy_id, head_snap.to_dict())
            else:
                head = self._head_from_statuses(policy_id, txn)

            def status_of(version: str) -> str | None:
                snap = self._version_ref(policy_id, version).get(transaction=txn)
                return str((snap.to_dict() or {}).get("status")) if snap.exists else None

            transition = plan(head, status_of)
            if transition is None:
                return None, None
            now = now_ms()
            for version, fields in transition.version_updates(now, actor).items():
                txn.update(self._version_ref(policy_id, version), fields)
            txn.set(head_ref, {**transition.head.to_doc(), "updatedAt": now})
            rollout_doc = transition.rollout_doc(now, actor)
            if transition.rollout is not None and rollout_doc is not None:
                ref = self.db.collection(paths.ROLLOUTS).document(transition.rollout.rollout_id)
                txn.set(ref, rollout_doc, merge=True)
            _, sealed = append_audit(self.db, txn, chain, audit_head,
                                     transition.audit_entry(now, actor, extra_audit))
            return transition, sealed

        try:
            # Policy changes are rare and worth waiting for: concurrent admins and the rollout controller
            # meet on one head document, so they queue at the policy's turnstile instead of deadlocking
            # in the transaction (the emulator resolves that only by 2-second lock timeouts).
            with turnstile(self.db.collection(paths.RUNS).document(f"turn-policy-{policy_id}")):
                return run_transaction(self.db, work, attempts=TRANSITION_ATTEMPTS, max_delay=3.0)
        except TransactionExhausted as exc:
            raise Conflict(f"policy {policy_id} is being changed concurrently; retry") from exc

    def _head_from_statuses(self, policy_id: str, txn: firestore.Transaction) -> policy_domain.Head:
        """A head for a policy seeded without one: its single active version, no history."""
        q = (
            self.db.collection(paths.POLICIES)
            .where(filter=FieldFilter("id", "==", policy_id))
            .where(filter=FieldFilter("status", "==", "active"))
        )
        actives = sorted(str((s.to_dict() or {}).get("version")) for s in txn.get(q))
        return policy_domain.Head(policy_id, actives[-1] if actives else None)

    def update(self, policy_id: str, version: str, fields: dict[str, Any]) -> None:
        """Merge non-lifecycle fields (estimates, notes) into a version; never its status."""
        policy_domain.check_non_lifecycle(fields)
        self._version_ref(policy_id, version).update(fields)
