"""``ops_feedback``: metrics that arrive after their observation (a thumbs-up, a judge's score).

Recording merges them into the observation (so a scorer that has not reached it yet scores them) and
keeps a pending feedback document; the scorer later corrects the reward and buckets of an observation it
had already scored, once, in the transaction that marks the feedback applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from ..domain.errors import Conflict, NotFound
from ..domain.stats import Summary
from . import paths
from .buckets import delta_doc
from .tx import TransactionExhausted, run_transaction
from .util import now_ms

Deltas = dict[str, tuple[dict[str, Any], Summary]]
# (observation, its reward) -> (the corrected reward, deltas taking out the old, deltas adding the new);
# None: nothing to correct
Correction = Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], Deltas, Deltas] | None]
GROUP = 200  # feedback items per transaction (two writes each)


class FirestoreFeedbackRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def observations(self, obs_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The observations among ``obs_ids`` that exist (only what feedback checks: expiry, component)."""
        col = self.db.collection(paths.OBSERVATIONS)
        snaps = self.db.get_all([col.document(i) for i in sorted(set(obs_ids))], field_paths=["expireAt", "component"])
        return {s.id: s.to_dict() or {} for s in snaps if s.exists}

    def record(self, items: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Create each feedback document and merge its metrics into its observation, atomically per group;
        returns the ids that existed already (a retried feedback: nothing changed)."""
        col, obs_col = self.db.collection(paths.FEEDBACK), self.db.collection(paths.OBSERVATIONS)
        duplicates: list[str] = []
        for i in range(0, len(items), GROUP):
            group = items[i : i + GROUP]

            def work(txn: firestore.Transaction, group: list[tuple[str, dict[str, Any]]] = group) -> list[str]:
                refs = [col.document(fid) for fid, _ in group]
                existing = {s.id for s in self.db.get_all(refs, field_paths=["observationId"], transaction=txn)
                            if s.exists}
                obs_refs = {d["observationId"]: obs_col.document(d["observationId"]) for _, d in group}
                found = {s.id for s in self.db.get_all(list(obs_refs.values()), field_paths=["component"],
                                                      transaction=txn) if s.exists}
                missing = sorted(set(obs_refs) - found)
                if missing:
                    raise NotFound(f"unknown observation {missing[0]!r}", {"field": "observationId",
                                                                         "observationId": missing[0]})
                for fid, doc in group:
                    if fid in existing:
                        continue
                    txn.create(col.document(fid), {**doc, "status": "pending", "receivedAt": now_ms()})
                    txn.update(obs_refs[doc["observationId"]], {
                        FieldPath("metrics", name).to_api_repr(): value for name, value in doc["metrics"].items()})
                return sorted(existing)

            try:
                duplicates += run_transaction(self.db, work)
            except TransactionExhausted as exc:
                raise Conflict("feedback could not be stored under contention; retry the request") from exc
        return duplicates

    def pending(self, limit: int = 500) -> list[tuple[str, dict[str, Any]]]:
        q = (self.db.collection(paths.FEEDBACK).where(filter=FieldFilter("status", "==", "pending"))
             .order_by("receivedAt").limit(limit))
        return [(s.id, s.to_dict() or {}) for s in q.stream()]

    def apply(self, feedback_id: str, correct: Correction) -> str:
        """Apply one pending feedback to its observation's reward and buckets, exactly once.

        Returns ``applied``, ``waiting`` (its observation is not scored yet: it will be scored with the
        metrics), ``done`` (applied before) or ``gone`` (the feedback or its observation no longer exists).
        """
        ref = self.db.collection(paths.FEEDBACK).document(feedback_id)
        deltas = self.db.collection(paths.BUCKET_DELTAS)

        def work(txn: firestore.Transaction) -> str:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return "gone"
            fb = snap.to_dict() or {}
            if fb.get("status") != "pending":
                return "done"
            obs_id = str(fb.get("observationId"))
            obs = self.db.collection(paths.OBSERVATIONS).document(obs_id).get(transaction=txn)
            reward = self.db.collection(paths.REWARDS).document(obs_id).get(transaction=txn)
            if not obs.exists:
                txn.update(ref, {"status": "gone", "appliedAt": now_ms()})
                return "gone"
            if not reward.exists:
                return "waiting"
            fix = correct(obs.to_dict() or {}, reward.to_dict() or {})
            now = now_ms()
            if fix is not None:
                new_reward, minus, plus = fix
                txn.set(reward.reference, new_reward)
                if minus:  # two documents: summed first, the sketches would cancel to a count of 0
                    txn.create(deltas.document(f"fb-{feedback_id}-out"), delta_doc(minus, now))
                    txn.create(deltas.document(f"fb-{feedback_id}-in"), delta_doc(plus, now))
            txn.update(ref, {"status": "applied", "appliedAt": now, "corrected": fix is not None})
            return "applied"

        return run_transaction(self.db, work)
