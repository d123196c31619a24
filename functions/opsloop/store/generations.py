"""``ops_runs/reward-generations``: which reward generation the readers use, and the backfill of the next.

The backfill re-scores, in ingestion order, the observations up to the boundary the state names. Each chunk
is one transaction that reads the state and the page (so a feedback merged into one of them meanwhile
retries the chunk rather than being lost), writes the re-scored rewards, one bucket-delta document and the
state moved past the page. A crash leaves the whole chunk or none of it; a rerun goes on from the position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..domain.generations import BackfillChunk, Build
from ..domain.ingest import SCORED_FIELDS, Cursor, StoredObservation
from . import paths
from .buckets import delta_doc
from .observations import _cursor_from
from .tx import run_transaction
from .util import now_ms

Plan = Callable[[dict[str, Any] | None, Cursor], dict[str, Any] | None]


def _before_or_at(obs: StoredObservation, boundary: dict[str, Any]) -> bool:
    at: Any = boundary.get("receivedAt")
    return bool(obs.received_at < at or (obs.received_at == at and obs.doc_id <= str(boundary.get("docId") or "")))


def _merge_paths(data: dict[str, Any]) -> list[str]:
    scores = data.get("scores") or {}
    return [k for k in data if k != "scores"] + [f"scores.{g}" for g in scores]


class FirestoreGenerationRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def _ref(self) -> firestore.DocumentReference:
        return self.db.collection(paths.RUNS).document(paths.GENERATIONS_DOC)

    def get(self) -> dict[str, Any] | None:
        snap = self._ref().get()
        return (snap.to_dict() or {}) if snap.exists else None

    def adopt(self, plan: Plan) -> dict[str, Any] | None:
        """Store ``plan(state, scorer's cursor)`` when it is not None, reading both in the transaction;
        returns the state after it."""
        cursor_ref = self.db.collection(paths.RUNS).document(paths.SCORE_CURSOR_DOC)

        def work(txn: firestore.Transaction) -> dict[str, Any] | None:
            snap = self._ref().get(transaction=txn)
            current = (snap.to_dict() or {}) if snap.exists else None
            new = plan(current, _cursor_from(cursor_ref.get(transaction=txn)))
            if new is None:
                return current
            txn.set(self._ref(), {**new, "updatedAt": now_ms()})
            return new

        return run_transaction(self.db, work)

    def backfill_chunk(self, limit: int, build: Build) -> BackfillChunk | None:
        """Re-score the next ``limit`` observations up to the boundary in one transaction (see the module
        docstring); None when there is no backfill to do (or ``build`` declines it)."""
        col = self.db.collection(paths.OBSERVATIONS)
        deltas = self.db.collection(paths.BUCKET_DELTAS)
        rewards = self.db.collection(paths.REWARDS)

        def work(txn: firestore.Transaction) -> BackfillChunk | None:
            snap = self._ref().get(transaction=txn)
            state = (snap.to_dict() or {}) if snap.exists else None
            boundary = (state or {}).get("boundary")
            if state is None or state.get("read") == state.get("write") or not isinstance(boundary, dict):
                return None
            q = (col.where(filter=FieldFilter("receivedAt", "<=", boundary["receivedAt"]))
                 .order_by("receivedAt").order_by("__name__").select(SCORED_FIELDS))
            position = state.get("position")
            if isinstance(position, dict):
                q = q.start_after({"receivedAt": position["receivedAt"], "__name__": col.document(position["docId"])})
            page: list[StoredObservation] = []
            for obs in txn.get(q.limit(limit)):
                data = obs.to_dict() or {}
                page.append(StoredObservation(obs.id, data, data["receivedAt"]))
            kept = [o for o in page if _before_or_at(o, boundary)]
            stored = None
            if state.get("checkRewards"):  # read in the transaction: a shard's commit of one of them conflicts
                refs = [rewards.document(o.doc_id) for o in kept]
                stored = {s.id: s.to_dict() or {} for s in txn.get_all(refs) if s.exists} if refs else {}
            chunk = build(state, kept, len(kept) < limit, stored)
            if chunk is None:
                return None
            for obs_id, data in chunk.rewards:  # replaces the fields given; other generations' scores stay
                txn.set(rewards.document(obs_id), data, merge=_merge_paths(data))
            if chunk.deltas:
                txn.create(deltas.document(chunk.delta_id), delta_doc(chunk.deltas, now_ms()))
            txn.set(self._ref(), {**chunk.state, "updatedAt": now_ms()})
            return chunk

        return run_transaction(self.db, work)

    def remaining(self, position: Cursor | None, boundary: Cursor) -> int:
        """About how many observations lie between ``position`` and ``boundary`` (one count; for progress)."""
        q: Any = self.db.collection(paths.OBSERVATIONS).where(
            filter=FieldFilter("receivedAt", "<=", boundary.received_at))
        if position is not None and position.received_at is not None:
            q = q.where(filter=FieldFilter("receivedAt", ">", position.received_at))
        return int(q.count().get()[0][0].value)
