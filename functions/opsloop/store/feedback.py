"""Late feedback: metrics that arrive after their observation (a thumbs-up, a judge's score).

Recording merges them into the observation. For one already scored it also corrects the reward and the
buckets right away, in the same transaction (``record``). For one not scored yet it keeps a pending
``ops_feedback`` document: the scorer scores the metrics with it, and corrects its reward if it had read the
observation before the metrics arrived (``apply``), once, in the transaction that marks it applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from ..domain.errors import Conflict
from ..domain.feedback import FeedbackRead, FeedbackWrites, needs_observation
from ..domain.ingest import SCORED_FIELDS
from ..domain.stats import Deltas
from . import paths
from .buckets import delta_doc
from .tx import TransactionExhausted, run_transaction
from .util import now_ms

# (observation, its reward) -> (the corrected reward, deltas taking out the old, deltas adding the new);
# None: nothing to correct
Correction = Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], Deltas, Deltas] | None]
Plan = Callable[[FeedbackRead, list[tuple[str, dict[str, Any]]]], FeedbackWrites]


class FirestoreFeedbackRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def record(self, items: list[tuple[str, dict[str, Any]]], plan: Plan) -> FeedbackWrites:
        """Record a request's feedback in one transaction: read what ``plan`` decides on (the reward
        generations, the rewards of the observations named, the observations whose reward cannot be
        re-scored alone, the pending feedback documents of those), then write what it returns. All or
        nothing: ``plan`` raising (an unknown or expired observation) writes nothing.

        One transaction for a whole request (≤ 500 items, ~1,000 writes): Firestore bounds a commit by
        its size (10 MiB), not by a count of writes, and the emulator does the same.
        """
        db = self.db
        rewards_col, obs_col = db.collection(paths.REWARDS), db.collection(paths.OBSERVATIONS)
        fb_col, deltas = db.collection(paths.FEEDBACK), db.collection(paths.BUCKET_DELTAS)
        gen_ref = db.collection(paths.RUNS).document(paths.GENERATIONS_DOC)
        obs_ids = sorted({d["observationId"] for _, d in items})

        def work(txn: firestore.Transaction) -> FeedbackWrites:
            state = gen_ref.get(transaction=txn)
            rewards = {s.id: s.to_dict() or {}
                       for s in db.get_all([rewards_col.document(i) for i in obs_ids], transaction=txn) if s.exists}
            need = [i for i in obs_ids if needs_observation(rewards.get(i))]
            observations = {s.id: s.to_dict() or {} for s in db.get_all(
                [obs_col.document(i) for i in need], field_paths=list(SCORED_FIELDS), transaction=txn)
                if s.exists} if need else {}
            waiting = [fid for fid, d in items if d["observationId"] not in rewards]
            existing = {s.id for s in db.get_all([fb_col.document(f) for f in waiting], field_paths=["status"],
                                                 transaction=txn) if s.exists} if waiting else set()
            read = FeedbackRead(state.to_dict() if state.exists else None, rewards, observations, existing)
            writes = plan(read, items)
            for obs_id, doc in writes.rewards.items():
                txn.set(rewards_col.document(obs_id), doc)
            for obs_id, metrics in writes.metrics.items():
                txn.update(obs_col.document(obs_id),
                           {FieldPath("metrics", name).to_api_repr(): value for name, value in metrics.items()})
            for fid, doc in writes.pending:
                txn.create(fb_col.document(fid), {**doc, "status": "pending", "receivedAt": now_ms()})
            # apart: summed into one document, the sketches would cancel to a count of 0
            batch_id = uuid.uuid4().hex
            for side, parts in (("out", writes.minus), ("in", writes.plus)):
                for i, part in enumerate(parts):
                    txn.create(deltas.document(f"fb-{batch_id}-{side}-{i}"), delta_doc(part, now_ms()))
            if writes.plus:  # their stats change: the next scoring run recomputes them
                for comp in sorted({str(doc.get("component")) for doc in writes.rewards.values()}):
                    txn.set(db.collection(paths.COMPONENTS).document(comp),
                            {"component": comp, "changedAt": firestore.SERVER_TIMESTAMP}, merge=True)
            return writes

        try:
            return run_transaction(db, work)
        except TransactionExhausted as exc:
            raise Conflict("feedback could not be stored under contention; retry the request") from exc

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
                    component = str((obs.to_dict() or {}).get("component"))  # its stats change: recompute them
                    txn.set(self.db.collection(paths.COMPONENTS).document(component),
                            {"component": component, "changedAt": firestore.SERVER_TIMESTAMP}, merge=True)
            txn.update(ref, {"status": "applied", "appliedAt": now, "corrected": fix is not None})
            return "applied"

        return run_transaction(self.db, work)
