"""``ops_observations`` and ``ops_rewards``, the scorer's cursor and ``ops_components``."""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from ..domain import presence as presence_domain
from ..domain import shards
from ..domain.errors import Conflict
from ..domain.generations import before_or_at
from ..domain.ingest import SCORED_FIELDS, Cursor, StoredObservation
from ..domain.stats import Summary
from . import paths
from .buckets import delta_doc, presence_fields
from .tx import TransactionExhausted, run_transaction
from .util import now_ms


def _cursor_from(snap: Any) -> Cursor:
    if not snap.exists:
        return Cursor(components={})
    d = snap.to_dict() or {}
    legacy = d.get("components")  # written by versions before ops_components; migrated by the next run
    return Cursor(d.get("receivedAt"), str(d.get("docId") or ""), dict(legacy) if isinstance(legacy, dict) else {})


def _cursor_doc(cursor: Cursor) -> dict[str, Any]:
    return {"receivedAt": cursor.received_at, "docId": cursor.doc_id, "updatedAt": firestore.SERVER_TIMESTAMP}


class FirestoreObservationRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def insert(self, docs: list[tuple[str, dict[str, Any], bool]]) -> list[str]:
        """Create observations atomically; return the ids that already existed (left untouched).

        ``docs`` holds (doc id, data, client_supplied). Only client-supplied ids can collide, so only
        they are read first; generated ids are random UUIDs.
        """
        col = self.db.collection(paths.OBSERVATIONS)
        keyed = [col.document(doc_id) for doc_id, _, client in docs if client]
        # Optimistic path: one atomic batch of creates, no reads. Only a re-sent id makes it fail (as a
        # whole), and then the transaction below sorts out which ids already exist.
        batch = self.db.batch()
        for doc_id, data, _ in docs:
            batch.create(col.document(doc_id), {**data, "receivedAt": firestore.SERVER_TIMESTAMP})
        try:
            batch.commit()
            return []
        except gexc.AlreadyExists:
            if not keyed:
                raise

        def work(txn: firestore.Transaction) -> list[str]:
            existing = {s.id for s in self.db.get_all(keyed, transaction=txn) if s.exists} if keyed else set()
            for doc_id, data, _ in docs:
                if doc_id not in existing:
                    txn.create(col.document(doc_id), {**data, "receivedAt": firestore.SERVER_TIMESTAMP})
            return sorted(existing)

        try:
            return run_transaction(self.db, work)
        except TransactionExhausted as exc:
            raise Conflict("observations could not be stored under contention; retry the request") from exc

    def _cursor_ref(self, shard: str | None = None) -> firestore.DocumentReference:
        return self.db.collection(paths.RUNS).document(paths.score_cursor_doc(shard))

    def cursor(self, shard: str | None = None) -> Cursor:
        """The position of the scanner of ``shard`` (None: the global scanner; see domain/shards)."""
        return _cursor_from(self._cursor_ref(shard).get())

    def _queue(self, upper: dt.datetime, shard: str | None) -> Any:
        q: Any = self.db.collection(paths.OBSERVATIONS)
        if shard is not None:  # index (shard, receivedAt); the global scanner reads all and steps over these
            q = q.where(filter=FieldFilter("shard", "==", shard))
        return q.where(filter=FieldFilter("receivedAt", "<=", upper))

    def active_components(self, since_ts: int) -> dict[str, int]:
        """Components with an observation at or after ``since_ts`` (event time): component -> newest ts."""
        q = self.db.collection(paths.COMPONENTS).where(filter=FieldFilter("lastTs", ">=", since_ts))
        out = {str(d["component"]): int(d["lastTs"]) for s in q.stream()
               if isinstance((d := s.to_dict() or {}).get("component"), str) and isinstance(d.get("lastTs"), int)}
        for comp, ts in (self.cursor().components or {}).items():  # not yet migrated
            if isinstance(ts, int) and ts >= since_ts:
                out[comp] = max(ts, out.get(comp, ts))
        return out

    def changed_components(self, since: dt.datetime) -> set[str]:
        """Components with a chunk (or a feedback) committed at or after ``since`` (``changedAt``)."""
        q = self.db.collection(paths.COMPONENTS).where(filter=FieldFilter("changedAt", ">=", since))
        return {s.id for s in q.select(["component"]).stream()}

    def due_components(self, by_ms: int) -> set[str]:
        """Components whose stats change by ``by_ms`` without new data (``statsDueAt``: a bucket leaves a
        window, or a future-stamped one enters)."""
        q = self.db.collection(paths.COMPONENTS).where(filter=FieldFilter("statsDueAt", "<=", by_ms))
        return {s.id for s in q.select(["component"]).stream()}

    def set_stats_due(self, due: dict[str, int | None]) -> None:
        """Store each component's ``statsDueAt`` (None: nothing will change without new data)."""
        col = self.db.collection(paths.COMPONENTS)
        items = sorted(due.items())
        for i in range(0, len(items), 400):
            batch = self.db.batch()
            for comp, at in items[i : i + 400]:
                batch.set(col.document(comp), {"component": comp,
                                               "statsDueAt": firestore.DELETE_FIELD if at is None else at}, merge=True)
            batch.commit()

    def migrate_legacy_components(self) -> int:
        """Move a cursor's ``components`` map (older versions) into ``ops_components``; returns how many.

        Only the keys copied are then deleted from the map, so a component an older version adds meanwhile
        (a rolling deploy) stays for the next run to move. Idempotent: ``maximum`` keeps the newest time.
        """
        legacy = {c: t for c, t in (self.cursor().components or {}).items()
                  if isinstance(t, int) and not isinstance(t, bool)}
        if not legacy:
            return 0
        col = self.db.collection(paths.COMPONENTS)
        items = sorted(legacy.items())
        for i in range(0, len(items), 400):
            batch = self.db.batch()
            for comp, ts in items[i : i + 400]:
                batch.set(col.document(comp), {"component": comp, "lastTs": firestore.Maximum(ts)}, merge=True)
            batch.commit()
            self._cursor_ref().update({FieldPath("components", comp).to_api_repr(): firestore.DELETE_FIELD
                                       for comp, _ in items[i : i + 400]})
        return len(items)

    def after(self, cursor: Cursor, upper: dt.datetime, limit: int,
              shard: str | None = None) -> list[StoredObservation]:
        """The next ``limit`` observations ingested after ``cursor`` and no later than ``upper`` (of ``shard``
        only, when given)."""
        col = self.db.collection(paths.OBSERVATIONS)
        q = self._queue(upper, shard).order_by("receivedAt").order_by("__name__").select(SCORED_FIELDS)
        if cursor.received_at is not None:
            q = q.start_after({"receivedAt": cursor.received_at, "__name__": col.document(cursor.doc_id)})
        out = []
        for snap in q.limit(limit).stream():
            data = snap.to_dict() or {}
            out.append(StoredObservation(snap.id, data, data["receivedAt"]))
        return out

    def backlog(self, cursor: Cursor, upper: dt.datetime, shard: str | None = None) -> int:
        """How many observations wait behind ``cursor`` (one aggregation query; for progress bars)."""
        q = self._queue(upper, shard)
        if cursor.received_at is not None:
            q = q.where(filter=FieldFilter("receivedAt", ">", cursor.received_at))
        return int(q.count().get()[0][0].value)

    def pages(
        self, since_ms: int, until_ms: int, component: str | None = None, page_size: int = 1000,
        keys: list[str] | None = None,
    ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Observations with event time in ``[since_ms, until_ms)``, ordered by (ts, id), a page at a time.

        With ``keys`` (every shard key stored, ``services/shards.stored_keys``), each key is read on its own
        (the indexes ``(shard, ts)`` and ``(shard, component, ts)``: ``ts`` alone is not indexed, as a
        monotonic field would hot-spot ingestion) and the keys are merged, each read in pages of ``page_size`` /
        the number of keys (at least 50), so memory holds about one page.
        Without, one query over all (versions before every observation had a key).
        """
        if keys is None:
            yield from self._pages(since_ms, until_ms, component, page_size, None)
            return
        per_key = max(50, page_size // max(1, len(keys)))  # a page in all, not a page per key, in memory
        merged = heapq.merge(*(self._docs(since_ms, until_ms, component, per_key, key) for key in keys),
                             key=lambda row: (row[1].get("ts"), row[0]))
        while page := list(itertools.islice(merged, page_size)):
            yield page

    def _docs(self, since_ms: int, until_ms: int, component: str | None, page_size: int,
              key: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for page in self._pages(since_ms, until_ms, component, page_size, key):
            yield from page

    def _pages(self, since_ms: int, until_ms: int, component: str | None, page_size: int,
               key: str | None) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """One query's pages, each resumed after the previous page's last document."""
        col = self.db.collection(paths.OBSERVATIONS)
        q: Any = col
        if key is not None:
            q = q.where(filter=FieldFilter("shard", "==", key))
        if component is not None:
            q = q.where(filter=FieldFilter("component", "==", component))
        q = (q.where(filter=FieldFilter("ts", ">=", since_ms)).where(filter=FieldFilter("ts", "<", until_ms))
             .order_by("ts").order_by("__name__"))
        after: Any = None  # the last snapshot: resuming after it is exact whatever the type of its ts
        while True:
            page_q = q if after is None else q.start_after(after)
            snaps = list(page_q.limit(page_size).stream())
            if not snaps:
                return
            yield [(snap.id, snap.to_dict() or {}) for snap in snaps]
            if len(snaps) < page_size:
                return
            after = snaps[-1]

    def stamp_unkeyed(self, after: str | None, limit: int, key: str,
                      scored_through: Cursor | None = None) -> shards.StampPage:
        """Stamp ``key`` on the observations without a shard among the next ``limit`` in document id order
        after ``after`` (no index needed: the name order is Firestore's own). Counts as ``late`` the
        unkeyed ones after ``scored_through`` (the legacy scanner's final cursor): never scored."""
        col = self.db.collection(paths.OBSERVATIONS)
        q = col.order_by("__name__").select(["shard", "receivedAt"])
        if after is not None:
            q = q.start_after({"__name__": col.document(after)})
        snaps = list(q.limit(limit).stream())
        seen: set[int] = set()
        unkeyed = []
        late = 0
        for snap in snaps:
            data = snap.to_dict() or {}
            layout = shards.layout_of(data.get("shard"))
            if layout is not None:
                seen.add(layout)
                continue
            unkeyed.append(snap.reference)
            received = data.get("receivedAt")  # written by recordObservation; without one, never scanned
            late += scored_through is not None and not (
                isinstance(received, dt.datetime)
                and before_or_at(StoredObservation(snap.id, data, received), scored_through))
        if unkeyed:
            batch = self.db.batch()
            for ref in unkeyed:
                batch.update(ref, {"shard": key})
            try:
                batch.commit()
            except gexc.NotFound:  # one expired (TTL) meanwhile: the others one by one
                for ref in unkeyed:
                    with contextlib.suppress(gexc.NotFound):
                        ref.update({"shard": key})
        return shards.StampPage(snaps[-1].id if snaps else after, len(unkeyed), frozenset(seen),
                                len(snaps) < limit, late)

    def rewards_for(self, obs_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The reward documents of these observations (one batched read; missing ones are absent)."""
        col = self.db.collection(paths.REWARDS)
        return {s.id: s.to_dict() or {} for s in self.db.get_all([col.document(i) for i in obs_ids]) if s.exists}

    def commit_chunk(
        self,
        expected: Cursor,
        new_cursor: Cursor,
        rewards: list[tuple[str, dict[str, Any]]],
        deltas: dict[str, tuple[dict[str, Any], Summary]],
        delta_id: str | None = None,
        live: tuple[int, ...] | None = None,
        shard: str | None = None,
    ) -> bool:
        """Write rewards, one pending-delta document and the advanced cursor in one transaction.

        The chunk's bucket statistics travel as a single delta document (one write, however many buckets
        it touches), encoded as one compressed payload: a delta is only ever read back whole, and encoding
        a few hundred summaries field by field cost as much as the chunk's rewards. The bucket repository
        folds pending deltas into the buckets later, exactly once. Returns False (and writes nothing) when
        another run moved the cursor first. ``deltas`` maps bucket id -> (identity fields, summary to add);
        ``delta_id`` names the delta document (random when not given). ``live`` is the reward generations
        the chunk was scored under: when the stored state names others (the config changed, or a backfill
        finished, since it was read), nothing is written and False is returned, like a moved cursor.
        ``shard`` names the cursor (None: the global scanner's).
        """
        reward_col = self.db.collection(paths.REWARDS)
        delta_ref = self.db.collection(paths.BUCKET_DELTAS).document(delta_id or uuid.uuid4().hex)
        cursor_ref = self._cursor_ref(shard)
        comp_col = self.db.collection(paths.COMPONENTS)
        delta = delta_doc(deltas, now_ms())
        held = presence_domain.touched(deltas, new_cursor.components or {})  # domain/presence

        gen_ref = self.db.collection(paths.RUNS).document(paths.GENERATIONS_DOC)

        def work(txn: firestore.Transaction) -> bool:
            current = _cursor_from(cursor_ref.get(transaction=txn))
            if not current.same_position(expected):
                return False
            if live is not None:
                state = gen_ref.get(transaction=txn).to_dict() or {}
                read, write = state.get("read"), state.get("write")
                if live != ((read,) if read == write else (read, write)):
                    return False
            if deltas:
                txn.create(delta_ref, delta)
            for obs_id, data in rewards:
                txn.set(reward_col.document(obs_id), data)
            for comp, ts in (new_cursor.components or {}).items():  # transforms: no read, newest ts wins
                txn.set(comp_col.document(comp), {"component": comp, "lastTs": firestore.Maximum(ts),
                                                  "changedAt": firestore.SERVER_TIMESTAMP,
                                                  **presence_fields(held.get(comp))}, merge=True)
            txn.set(cursor_ref, _cursor_doc(new_cursor))
            return True

        return run_transaction(self.db, work)
