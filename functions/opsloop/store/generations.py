"""``ops_runs/reward-generations``: which reward generation the readers use, and the backfill of the next.

The backfill re-scores the observations up to the boundary the state names. It reads them in document id
order, which needs no index (``receivedAt`` is not indexed on its own, see ``domain/shards``), and skips
those after the boundary. Each chunk
is one transaction that reads the state and the page (so a feedback merged into one of them meanwhile
retries the chunk rather than being lost), writes the re-scored rewards, one bucket-delta document and the
state moved past the page. A crash leaves the whole chunk or none of it; a rerun goes on from the position.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..domain import presence as presence_domain
from ..domain.generations import BackfillChunk, Build, before_or_at
from ..domain.ingest import SCORED_FIELDS, Cursor, StoredObservation
from . import paths
from .buckets import delta_doc, presence_fields
from .observations import _cursor_from
from .tx import run_transaction
from .util import now_ms

_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)
Plan = Callable[[dict[str, Any] | None, Cursor], dict[str, Any] | None]


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

    def adopt(self, plan: Plan, shard: str | None = None) -> dict[str, Any] | None:
        """Store ``plan(state, the cursor of shard's scanner)`` when it is not None, reading both in the
        transaction; returns the state after it."""
        cursor_ref = self.db.collection(paths.RUNS).document(paths.score_cursor_doc(shard))

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
        components = self.db.collection(paths.COMPONENTS)

        def work(txn: firestore.Transaction) -> BackfillChunk | None:
            snap = self._ref().get(transaction=txn)
            state = (snap.to_dict() or {}) if snap.exists else None
            boundary = (state or {}).get("boundary")
            if state is None or state.get("read") == state.get("write") or not isinstance(boundary, dict):
                return None
            position = state.get("position")
            if isinstance(position, dict) and not state.get("byName"):
                # begun by a version that read in ingestion order: start over in name order, checking each
                # reward for the new generation's score so that what it re-scored is not re-scored again
                state, position = {**state, "position": None, "checkRewards": True}, None
            q = col.order_by("__name__").select(SCORED_FIELDS)
            if isinstance(position, dict) and position.get("docId"):
                q = q.start_after({"__name__": col.document(str(position["docId"]))})
            page: list[StoredObservation] = []
            for obs in txn.get(q.limit(limit)):
                data = obs.to_dict() or {}
                # one written without receivedAt (not by recordObservation) lies after any boundary
                page.append(StoredObservation(obs.id, data, data.get("receivedAt") or _NEVER))
            limit_at = Cursor(boundary.get("receivedAt"), str(boundary.get("docId") or ""))
            kept = [o for o in page if before_or_at(o, limit_at)]
            stored = None
            if state.get("checkRewards"):  # read in the transaction: a shard's commit of one of them conflicts
                refs = [rewards.document(o.doc_id) for o in kept]
                stored = {s.id: s.to_dict() or {} for s in txn.get_all(refs) if s.exists} if refs else {}
            chunk = build(state, page, len(page) < limit, stored)
            if chunk is None:
                return None
            for obs_id, data in chunk.rewards:  # replaces the fields given; other generations' scores stay
                txn.set(rewards.document(obs_id), data, merge=_merge_paths(data))
            if chunk.deltas:
                txn.create(deltas.document(chunk.delta_id), delta_doc(chunk.deltas, now_ms()))
                # the buckets it adds to, from the floor on (domain/presence): older ones no refresh reads,
                # and a record of the whole retention would outgrow the document
                floor = presence_domain.backfill_floor(now_ms())
                names = {str(o.data.get("component")) for o in page}
                for comp, starts in presence_domain.touched(chunk.deltas, names, floor).items():
                    txn.set(components.document(comp), {"component": comp, **presence_fields(starts),
                                                        "pi": {name: floor for name in starts}}, merge=True)
            txn.set(self._ref(), {**chunk.state, "byName": True, "updatedAt": now_ms()})
            return chunk

        return run_transaction(self.db, work)

    def remaining(self, position: Cursor | None, boundary: Cursor) -> int:
        """How many observations the backfill has still to read (one count; for progress). An upper bound
        of what it re-scores: it reads in document id order and skips those after ``boundary``."""
        q: Any = self.db.collection(paths.OBSERVATIONS)
        if position is not None and position.doc_id:
            q = q.where(filter=FieldFilter("__name__", ">", self.db.collection(paths.OBSERVATIONS)
                                           .document(position.doc_id)))
        return int(q.count().get()[0][0].value)
