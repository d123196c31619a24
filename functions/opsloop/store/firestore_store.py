"""Repository over Cloud Firestore: every read and write the services make goes through here."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from ..domain import audit as audit_domain
from ..domain import config as config_domain
from ..domain import drift as drift_domain
from ..domain import policy as policy_domain
from ..domain import windows
from ..domain.errors import Conflict, FailedPrecondition
from ..domain.stats import Summary, total
from ..domain.windows import Segment
from . import paths
from .policy_reader import read_head, read_version
from .tx import TransactionExhausted, release_claim, run_transaction, try_claim, turnstile

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ms(value: dt.datetime) -> int:
    return int((value - EPOCH).total_seconds() * 1000)


@dataclass(frozen=True)
class Cursor:
    """Position of the scorer in the ingestion order (receivedAt, document id)."""

    received_at: dt.datetime | None = None
    doc_id: str = ""
    # component -> newest observation ts in the chunk ending here (kept in ops_components, not on the cursor:
    # a map of every component ever seen outgrew the document's 1 MiB)
    components: dict[str, int] | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"receivedAt": self.received_at, "docId": self.doc_id, "updatedAt": firestore.SERVER_TIMESTAMP}

    def same_position(self, other: Cursor) -> bool:
        return self.received_at == other.received_at and self.doc_id == other.doc_id


@dataclass(frozen=True)
class StoredObservation:
    doc_id: str
    data: dict[str, Any]
    received_at: dt.datetime


# What scoring reads of an observation: a projection, so meta, tokens and ids are neither sent nor decoded
# (the client deep-copies every document twice; on the scoring path that was a fifth of a run's time).
SCORED_FIELDS = ("ts", "component", "outcome", "durationMs", "costUsd", "propensity", "weight", "policyVersion",
                 "arm", "errorCode", "receivedAt", "expireAt")


DELTA_FORMAT = 2  # format 1 (before): the entries as a "buckets" array of maps; both are read


def encode_deltas(deltas: dict[str, tuple[dict[str, Any], Summary]]) -> bytes:
    """A delta document's payload: its bucket entries as zlib-compressed JSON (sketches in base64)."""
    entries = []
    for bid, (ident, summary) in deltas.items():
        doc = summary.to_doc()
        for key in ("latencySketch", "rewardSketch"):
            doc[key] = base64.b64encode(doc[key]).decode()
        entries.append({"id": bid, **ident, **doc})
    return zlib.compress(json.dumps(entries, separators=(",", ":")).encode(), 1)


def decode_deltas(doc: dict[str, Any]) -> dict[str, tuple[dict[str, Any], Summary]]:
    """Bucket id -> (identity fields, summary) of a delta document of either format."""
    if "payload" in doc:
        entries = json.loads(zlib.decompress(bytes(doc["payload"])))
        for e in entries:
            for key in ("latencySketch", "rewardSketch"):
                e[key] = base64.b64decode(e.get(key) or "")
    else:
        entries = doc.get("buckets") or []
    return {e["id"]: ({"component": e["component"], "level": e["level"], "start": e["start"]}, Summary.from_doc(e))
            for e in entries}  # one entry per bucket: they were a dict when encoded


class FirestoreStore:
    """All Firestore access of the loop. One instance per process is enough."""

    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    # ------------------------------------------------------------------ config
    def config(self, name: str) -> dict[str, Any]:
        snap = self.db.collection(paths.CONFIG).document(name).get()
        return snap.to_dict() or {} if snap.exists else {}

    def config_docs(self, names: Iterable[str]) -> dict[str, Any]:
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

    def save_good_config(self, name: str, data: dict[str, Any]) -> None:
        """Keep ``data`` as the last good ``config/<name>`` (used while a later edit does not parse)."""
        self.db.collection(paths.RUNS).document(paths.CONFIG_GOOD_DOC).set(
            {"docs": {name: data}, "updatedAt": _now_ms()}, merge=[f"docs.{name}", "updatedAt"])  # type: ignore[arg-type]

    def raise_alert(self, alert_id: str, doc: dict[str, Any]) -> bool:
        """Create the ``ops_alerts`` entry unless it exists (one alert per distinct problem); True if new."""
        try:
            self.db.collection(paths.ALERTS).document(alert_id).create(doc)
        except gexc.AlreadyExists:
            return False
        return True

    def note_alert(self, alert_id: str, doc: dict[str, Any]) -> None:
        """Create or refresh a recurring ``ops_alerts`` entry: its fields updated, ``count`` incremented."""
        self.db.collection(paths.ALERTS).document(alert_id).set({**doc, "count": firestore.Increment(1)},
                                                                 merge=True)

    def set_config(self, name: str, data: dict[str, Any], merge: bool = True) -> None:
        self.db.collection(paths.CONFIG).document(name).set(data, merge=merge)

    # ------------------------------------------------------------ observations
    def insert_observations(self, docs: list[tuple[str, dict[str, Any], bool]]) -> list[str]:
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

    def count(self, collection: str) -> int:
        result = self.db.collection(collection).count().get()  # type: ignore[no-untyped-call]
        return int(result[0][0].value)

    # ----------------------------------------------------------------- scoring
    def _cursor_ref(self) -> firestore.DocumentReference:
        return self.db.collection(paths.RUNS).document(paths.SCORE_CURSOR_DOC)

    @staticmethod
    def _cursor_from(snap: Any) -> Cursor:
        if not snap.exists:
            return Cursor(components={})
        d = snap.to_dict() or {}
        legacy = d.get("components")  # written by versions before ops_components; migrated by the next run
        return Cursor(d.get("receivedAt"), str(d.get("docId") or ""), dict(legacy) if isinstance(legacy, dict) else {})

    def active_components(self, since_ts: int) -> dict[str, int]:
        """Components with an observation at or after ``since_ts`` (event time): component -> newest ts."""
        q = self.db.collection(paths.COMPONENTS).where(filter=FieldFilter("lastTs", ">=", since_ts))
        out = {str(d["component"]): int(d["lastTs"]) for s in q.stream()
               if isinstance((d := s.to_dict() or {}).get("component"), str) and isinstance(d.get("lastTs"), int)}
        for comp, ts in (self.read_cursor().components or {}).items():  # not yet migrated
            if isinstance(ts, int) and ts >= since_ts:
                out[comp] = max(ts, out.get(comp, ts))
        return out

    def migrate_legacy_components(self) -> int:
        """Move a cursor's ``components`` map (older versions) into ``ops_components``; returns how many.

        Only the keys copied are then deleted from the map, so a component an older version adds meanwhile
        (a rolling deploy) stays for the next run to move. Idempotent: ``maximum`` keeps the newest time.
        """
        legacy = {c: t for c, t in (self.read_cursor().components or {}).items()
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

    def read_cursor(self) -> Cursor:
        return self._cursor_from(self._cursor_ref().get())

    def observations_after(self, cursor: Cursor, upper: dt.datetime, limit: int) -> list[StoredObservation]:
        """The next ``limit`` observations ingested after ``cursor`` and no later than ``upper``."""
        col = self.db.collection(paths.OBSERVATIONS)
        q = (col.where(filter=FieldFilter("receivedAt", "<=", upper)).order_by("receivedAt").order_by("__name__")
             .select(SCORED_FIELDS))
        if cursor.received_at is not None:
            q = q.start_after({"receivedAt": cursor.received_at, "__name__": col.document(cursor.doc_id)})
        out = []
        for snap in q.limit(limit).stream():
            data = snap.to_dict() or {}
            out.append(StoredObservation(snap.id, data, data["receivedAt"]))
        return out

    def backlog_size(self, cursor: Cursor, upper: dt.datetime) -> int:
        """How many observations wait behind ``cursor`` (one aggregation query; for progress bars)."""
        q: Any = self.db.collection(paths.OBSERVATIONS).where(filter=FieldFilter("receivedAt", "<=", upper))
        if cursor.received_at is not None:
            q = q.where(filter=FieldFilter("receivedAt", ">", cursor.received_at))
        return int(q.count().get()[0][0].value)

    def observation_pages(
        self, since_ms: int, until_ms: int, component: str | None = None, page_size: int = 1000,
    ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Observations with event time in ``[since_ms, until_ms)``, ordered by (ts, id), a page at a time.

        Each page is one query resumed after the previous page's last document, so memory holds one page.
        """
        col = self.db.collection(paths.OBSERVATIONS)
        q: Any = col
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
    ) -> bool:
        """Write rewards, one pending-delta document and the advanced cursor in one transaction.

        The chunk's bucket statistics travel as a single delta document (one write, however many buckets
        it touches), encoded as one compressed payload: a delta is only ever read back whole, and encoding
        a few hundred summaries field by field cost as much as the chunk's rewards. ``fold_deltas`` (or
        ``fold_own``) adds pending deltas to the buckets later, exactly once. Returns False (and writes
        nothing) when another run moved the cursor first. ``deltas`` maps bucket id -> (identity fields,
        summary to add); ``delta_id`` names the delta document (random when not given).
        """
        reward_col = self.db.collection(paths.REWARDS)
        delta_ref = self.db.collection(paths.BUCKET_DELTAS).document(delta_id or uuid.uuid4().hex)
        cursor_ref = self._cursor_ref()
        comp_col = self.db.collection(paths.COMPONENTS)
        delta_doc = {"createdAt": _now_ms(), "format": DELTA_FORMAT, "bucketCount": len(deltas),
                     "payload": encode_deltas(deltas)}  # ("buckets" would break folds of older versions)

        def work(txn: firestore.Transaction) -> bool:
            current = self._cursor_from(cursor_ref.get(transaction=txn))
            if not current.same_position(expected):
                return False
            if deltas:
                txn.create(delta_ref, delta_doc)
            for obs_id, data in rewards:
                txn.set(reward_col.document(obs_id), data)
            for comp, ts in (new_cursor.components or {}).items():  # a transform: no read, newest ts wins
                txn.set(comp_col.document(comp), {"component": comp, "lastTs": firestore.Maximum(ts)}, merge=True)
            txn.set(cursor_ref, new_cursor.to_doc())
            return True

        return run_transaction(self.db, work)

    def _add_to_buckets(self, txn: firestore.Transaction,
                        parts: dict[str, tuple[dict[str, Any], list[Summary]]]) -> None:
        """Add each bucket's parts to it inside ``txn``, in order: ((bucket + p1) + p2) + ...

        Summing onto the bucket one part after another makes the result independent of how deltas were
        grouped into folds, to the last bit of every floating-point sum.
        """
        buckets = self.db.collection(paths.BUCKETS)
        refs = {bid: buckets.document(bid) for bid in parts}
        current = {s.id: s for s in self.db.get_all(list(refs.values()), transaction=txn)}
        now = _now_ms()
        for bid, (ident, added) in parts.items():
            found = current.get(bid)
            base = Summary.from_doc(found.to_dict() or {}) if found is not None and found.exists else Summary()
            txn.set(refs[bid], {**ident, **total([base, *added]).to_doc(), "updatedAt": now})

    def fold_deltas(self, max_docs: int = 40, max_buckets: int = 400) -> tuple[int, int]:
        """Add up to ``max_docs`` pending deltas to their buckets and delete them, in one transaction.

        Returns (deltas folded, buckets written); (0, 0) when nothing is pending. A delta is added iff it
        is deleted in the same commit, so concurrent or repeated folds count it exactly once.
        """
        col = self.db.collection(paths.BUCKET_DELTAS)

        def work(txn: firestore.Transaction) -> tuple[int, int]:
            pending = list(txn.get(col.order_by("createdAt").limit(max_docs)))
            taken: list[Any] = []
            parts: dict[str, tuple[dict[str, Any], list[Summary]]] = {}
            for snap in pending:
                entries = decode_deltas(snap.to_dict() or {})
                if not taken and len(entries) + 1 > max_buckets:
                    # Too many buckets to add in one commit (written before chunks were bounded by buckets):
                    # replace it by smaller deltas, atomically, and fold those like any other.
                    return self._split_delta(txn, snap, entries, max_buckets // 2), 0
                new_keys = set(entries) - set(parts)
                if taken and len(parts) + len(new_keys) + len(taken) + 1 > max_buckets:
                    break
                taken.append(snap)
                for bid, (ident, summary) in entries.items():
                    parts.setdefault(bid, (ident, []))[1].append(summary)
            if not taken:
                return 0, 0
            self._add_to_buckets(txn, parts)
            for delta in taken:
                txn.delete(delta.reference)
            return len(taken), len(parts)

        return run_transaction(self.db, work)

    def _split_delta(self, txn: firestore.Transaction, snap: Any,
                     entries: dict[str, tuple[dict[str, Any], Summary]], size: int) -> int:
        col = self.db.collection(paths.BUCKET_DELTAS)
        created = (snap.to_dict() or {}).get("createdAt", 0)
        items = list(entries.items())
        for i in range(0, len(items), size):
            txn.create(col.document(uuid.uuid4().hex), {"createdAt": created, "format": DELTA_FORMAT,
                                                         "bucketCount": len(items[i : i + size]),
                                                         "payload": encode_deltas(dict(items[i : i + size]))})
        txn.delete(snap.reference)
        return 1

    def fold_own(self, delta_ids: list[str], parts: dict[str, tuple[dict[str, Any], list[Summary]]]) -> bool:
        """Fold deltas this process wrote, whose parts per bucket it still holds, without reading them back.

        In one transaction: if every one of ``delta_ids`` is still pending, add ``parts`` to the buckets
        and delete those deltas; otherwise (another run folded some of them) write nothing and return
        False, leaving the rest to ``fold_deltas``, which reads them. Exactly once either way.
        """
        col = self.db.collection(paths.BUCKET_DELTAS)
        refs = [col.document(d) for d in delta_ids]

        def work(txn: firestore.Transaction) -> bool:
            found = self.db.get_all(refs, field_paths=["createdAt"], transaction=txn)
            if sum(1 for snap in found if snap.exists) < len(refs):
                return False
            self._add_to_buckets(txn, parts)
            for ref in refs:
                txn.delete(ref)
            return True

        return run_transaction(self.db, work)

    def pending_deltas(self) -> int:
        return self.count(paths.BUCKET_DELTAS)

    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take the named lease unless another live owner holds it (renewing it when ``owner`` does)."""
        return try_claim(self._lease_ref(name), owner, ttl_s) is not None

    def release_lease(self, name: str, owner: str) -> None:
        release_claim(self._lease_ref(name), owner)

    def _lease_ref(self, name: str) -> firestore.DocumentReference:
        return self.db.collection(paths.RUNS).document(f"lease-{name}")

    def record_run(self, run_id: str, data: dict[str, Any]) -> None:
        self.db.collection(paths.RUNS).document(run_id).set(data, merge=True)

    # ------------------------------------------------------------------- stats
    def load_segments(self, component: str, segments: Iterable[Segment]) -> list[Summary]:
        """The bucket summaries of ``component`` inside each segment (only buckets that exist)."""
        return [s for seg in segments for _, s in self.bucket_series(component, seg.level, seg.start, seg.end)]

    def bucket_series(self, component: str, level: str, start: int, end: int) -> list[tuple[int, Summary]]:
        """Every bucket of one level of ``component`` starting in ``[start, end)``, oldest first."""
        q = (
            self.db.collection(paths.BUCKETS)
            .where(filter=FieldFilter("component", "==", component))
            .where(filter=FieldFilter("level", "==", level))
            .where(filter=FieldFilter("start", ">=", start))
            .where(filter=FieldFilter("start", "<", end))
            .order_by("start")
        )
        return [(int((d := s.to_dict() or {})["start"]), Summary.from_doc(d)) for s in q.stream()]

    def write_stats(self, docs: dict[str, dict[str, Any]], schedule_ms: int, now_ms: int | None = None) -> int:
        """Write each stats document unless a newer schedule already wrote it; return how many.

        A stored schedule time beyond ``now_ms`` (plus the allowed skew) came from a bad clock or a mistyped
        ``--at``: it never blocks the present, it is overwritten.
        """
        col = self.db.collection(paths.STATS)
        refs = {sid: col.document(sid) for sid in docs}
        latest_valid = (_now_ms() if now_ms is None else now_ms) + windows.MAX_SCHEDULE_SKEW_MS

        def work(txn: firestore.Transaction) -> int:
            written = 0
            snaps = {s.id: s for s in self.db.get_all(list(refs.values()), transaction=txn)}
            for sid, data in docs.items():
                snap = snaps.get(sid)
                stored = _int_or_none((snap.to_dict() or {}).get("ts")) if snap is not None and snap.exists else None
                if stored is not None and schedule_ms < stored <= latest_valid:
                    continue
                txn.set(refs[sid], data)
                written += 1
            return written

        return run_transaction(self.db, work)

    def stats(self, component: str | None = None) -> list[dict[str, Any]]:
        q: Any = self.db.collection(paths.STATS)
        if component is not None:
            q = q.where(filter=FieldFilter("component", "==", component))
        return [s.to_dict() or {} for s in q.stream()]

    def stats_for(self, components: list[str], window: str) -> dict[str, dict[str, Any]]:
        refs = [self.db.collection(paths.STATS).document(paths.stats_id(c, window)) for c in components]
        out = {}
        for snap in self.db.get_all(refs):
            if snap.exists:
                d = snap.to_dict() or {}
                out[str(d.get("component"))] = d
        return out

    # ------------------------------------------------------------- skill cards
    def cards_refreshed_for(self) -> int | None:
        """The schedule time the cards were last refreshed for; None if never, or if it lies in the future."""
        snap = self.db.collection(paths.RUNS).document(paths.SKILL_CARDS_RUN_DOC).get()
        marker = _int_or_none((snap.to_dict() or {}).get("scheduleMs")) if snap.exists else None
        if marker is None or marker > _now_ms() + windows.MAX_SCHEDULE_SKEW_MS:
            return None  # a marker from a bad clock must not hold the cards back until that time comes
        return marker

    def write_skill_cards(self, cards: dict[str, dict[str, Any]], schedule_ms: int) -> int:
        """Write cards (in batches) and then the marker of the schedule time they were computed for."""
        col = self.db.collection(paths.SKILL_CARDS)
        items = list(cards.items())
        for i in range(0, len(items), 400):
            batch = self.db.batch()
            for card_id, doc in items[i : i + 400]:
                batch.set(col.document(card_id), doc)
            batch.commit()
        self.db.collection(paths.RUNS).document(paths.SKILL_CARDS_RUN_DOC).set(
            {"scheduleMs": schedule_ms, "cards": len(items), "updatedAt": _now_ms()})
        return len(items)

    def skill_card(self, card_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.SKILL_CARDS).document(card_id).get()
        return snap.to_dict() if snap.exists else None

    def skill_cards(self) -> list[dict[str, Any]]:
        return [s.to_dict() or {} for s in self.db.collection(paths.SKILL_CARDS).stream()]

    # ---------------------------------------------------------------- policies
    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None:
        return read_version(self.db, policy_id, version)

    def policy_versions(self, policy_id: str) -> list[dict[str, Any]]:
        q = self.db.collection(paths.POLICIES).where(filter=FieldFilter("id", "==", policy_id))
        return [s.to_dict() or {} for s in q.stream()]

    def policies_with_status(self, status: str) -> list[dict[str, Any]]:
        q = self.db.collection(paths.POLICIES).where(filter=FieldFilter("status", "==", status))
        return [s.to_dict() or {} for s in q.stream()]

    # ------------------------------------------------------------------ audit
    # Every audit entry is written by _append_audit and nowhere else: created, sealed into its chain,
    # never updated (tests/unit/test_audit_writes.py checks the source for other writes).
    def _chain_ref(self, chain: str) -> firestore.DocumentReference:
        return self.db.collection(paths.AUDIT_CHAINS).document(chain)

    def _chain_head(self, txn: firestore.Transaction, chain: str) -> audit_domain.ChainHead:
        snap = self._chain_ref(chain).get(transaction=txn)
        return audit_domain.ChainHead.from_doc(snap.to_dict() if snap.exists else None)

    def _append_audit(
        self, txn: firestore.Transaction, chain: str, head: audit_domain.ChainHead, entry: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Seal ``entry`` after ``head`` (read earlier in this transaction) and create it."""
        sealed, new_head = audit_domain.seal(entry, chain, head)
        doc_id = uuid.uuid4().hex
        txn.create(self.db.collection(paths.AUDIT).document(doc_id), sealed)
        txn.set(self._chain_ref(chain), {"chain": chain, "seq": new_head.seq, "hash": new_head.hash,
                                         "lastEntry": doc_id, "updatedAt": sealed.get("ts")})
        return doc_id, sealed

    def _require_learning(self, txn: firestore.Transaction) -> None:
        """Refuse unless config/flags says learning is enabled, read strictly (a bad document means off)."""
        snap = self.db.collection(paths.CONFIG).document(paths.FLAGS_DOC).get(transaction=txn)
        try:
            enabled = config_domain.parse(config_domain.FLAGS, snap.to_dict() if snap.exists else None).enabled
        except config_domain.ConfigInvalid as exc:
            raise FailedPrecondition(f"learning is off while config/flags does not parse ({exc.message})",
                                     {"code": "E_LEARN_DISABLED"}) from None
        if not enabled:
            raise FailedPrecondition("learning is disabled (config/flags learning.enabled = false)",
                                     {"code": "E_LEARN_DISABLED"})

    def create_policy_version(
        self, doc: dict[str, Any], audit: dict[str, Any], require_learning: bool = False
    ) -> bool:
        """Create a new version with its audit entry atomically; False when that version exists.

        The version records the hash of its params and the audit entry that created it.
        """
        ref = self.db.collection(paths.POLICIES).document(f"{doc['id']}@{doc['version']}")
        chain = audit_domain.policy_chain(str(doc["id"]))

        def work(txn: firestore.Transaction) -> bool:
            if require_learning:
                self._require_learning(txn)
            if ref.get(transaction=txn).exists:
                return False
            head = self._chain_head(txn, chain)
            now = _now_ms()
            params_hash = audit_domain.digest(doc.get("params") or {})
            audit_id, sealed = self._append_audit(txn, chain, head, {**audit, "ts": now, "paramsHash": params_hash})
            txn.create(ref, {**doc, "createdAt": doc.get("createdAt") or now, "paramsHash": params_hash,
                             "createdByAudit": {"id": audit_id, "hash": sealed["hash"]}})
            return True

        return run_transaction(self.db, work)

    def set_flags(self, learning: dict[str, bool], actor: str) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Merge ``learning`` flags into config/flags with an audit entry; returns (old, new, changed)."""
        ref = self.db.collection(paths.CONFIG).document(paths.FLAGS_DOC)
        chain = audit_domain.FLAGS_CHAIN

        def work(txn: firestore.Transaction) -> tuple[dict[str, Any], dict[str, Any], bool]:
            snap = ref.get(transaction=txn)
            change = config_domain.change_flags((snap.to_dict() or {}) if snap.exists else {}, learning)
            if change.doc is None:
                return change.old, change.new, False
            head = self._chain_head(txn, chain)
            txn.set(ref, change.doc)
            self._append_audit(txn, chain, head, {"ts": _now_ms(), "actor": actor, "action": "set_flags",
                                                  "id": "config/flags", "from": change.old, "to": change.new})
            return change.old, change.new, True

        return run_transaction(self.db, work)

    def audit_chains(self) -> dict[str, audit_domain.ChainHead]:
        return {s.id: audit_domain.ChainHead.from_doc(s.to_dict()) for s in
                self.db.collection(paths.AUDIT_CHAINS).stream()}

    def audit_entries(self, chain: str) -> list[tuple[str, dict[str, Any]]]:
        q = self.db.collection(paths.AUDIT).where(filter=FieldFilter("chain", "==", chain)).order_by("seq")
        return [(s.id, s.to_dict() or {}) for s in q.stream()]

    def unchained_audit_entries(self, known: set[str]) -> list[tuple[str, dict[str, Any]]]:
        """Audit entries that belong to no known chain (only the Admin SDK could have written them)."""
        return [(s.id, d) for s in self.db.collection(paths.AUDIT).stream()
                if (d := s.to_dict() or {}).get("chain") not in known]

    def all_policy_versions(self) -> list[dict[str, Any]]:
        return [s.to_dict() or {} for s in self.db.collection(paths.POLICIES).stream()]


    def _head_ref(self, policy_id: str) -> firestore.DocumentReference:
        return self.db.collection(paths.POLICY_HEADS).document(policy_id)

    def head(self, policy_id: str) -> policy_domain.Head:
        """The policy's head (active version, history, running rollout), outside any transaction."""
        return read_head(self.db, policy_id)

    def apply_transition(
        self,
        policy_id: str,
        plan: Callable[[policy_domain.Head, policy_domain.StatusOf], policy_domain.Transition | None],
        actor: str,
        extra_audit: dict[str, Any] | None = None,
        require_learning: bool = False,
    ) -> tuple[policy_domain.Transition | None, dict[str, Any] | None]:
        """Read the head, let ``plan`` decide, then write head, versions, rollout and audit entry.

        All in one transaction, retried with a fresh transaction under contention.
        """
        col = self.db.collection(paths.POLICIES)
        head_ref = self._head_ref(policy_id)

        chain = audit_domain.policy_chain(policy_id)

        def work(txn: firestore.Transaction) -> tuple[policy_domain.Transition | None, dict[str, Any] | None]:
            if require_learning:
                self._require_learning(txn)
            chain_head = self._chain_head(txn, chain)
            head_snap = head_ref.get(transaction=txn)
            if head_snap.exists:
                head = policy_domain.Head.from_doc(policy_id, head_snap.to_dict())
            else:
                head = self._head_from_statuses(policy_id, txn)

            def status_of(version: str) -> str | None:
                snap = col.document(f"{policy_id}@{version}").get(transaction=txn)
                return str((snap.to_dict() or {}).get("status")) if snap.exists else None

            transition = plan(head, status_of)
            if transition is None:
                return None, None
            now = _now_ms()
            for version, fields in transition.version_updates(now, actor).items():
                txn.update(col.document(f"{policy_id}@{version}"), fields)
            txn.set(head_ref, {**transition.head.to_doc(), "updatedAt": now})
            rollout_doc = transition.rollout_doc(now, actor)
            if transition.rollout is not None and rollout_doc is not None:
                ref = self.db.collection(paths.ROLLOUTS).document(transition.rollout.rollout_id)
                txn.set(ref, rollout_doc, merge=True)
            audit = {
                "ts": now, "actor": actor, "action": transition.action, "id": policy_id,
                "from": transition.from_version, "to": transition.to_version, **(extra_audit or {}),
            }
            if transition.rollout is not None:
                audit["rolloutId"] = transition.rollout.rollout_id
            _, sealed = self._append_audit(txn, chain, chain_head, audit)
            return transition, sealed

        try:
            # Policy changes are rare and worth waiting for: concurrent admins and the rollout controller
            # meet on one head document, so they queue at the policy's turnstile instead of deadlocking
            # in the transaction (the emulator resolves that only by 2-second lock timeouts).
            with turnstile(self.db.collection(paths.RUNS).document(f"turn-policy-{policy_id}")):
                return run_transaction(self.db, work, attempts=TRANSITION_ATTEMPTS, max_delay=3.0)
        except TransactionExhausted as exc:
            raise Conflict(f"policy {policy_id} is being changed concurrently; retry") from exc

    def update_policy(self, policy_id: str, version: str, fields: dict[str, Any]) -> None:
        """Merge non-lifecycle fields (estimates, notes) into a version; never its status."""
        if "status" in fields or "id" in fields or "version" in fields:
            raise ValueError(f"lifecycle fields change only through transitions, got {sorted(fields)!r}")
        self.db.collection(paths.POLICIES).document(f"{policy_id}@{version}").update(fields)

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest rollouts, running or ended, with their document id."""
        q = self.db.collection(paths.ROLLOUTS).order_by("startedAt", direction=firestore.Query.DESCENDING)
        return [{**(s.to_dict() or {}), "rolloutId": s.id} for s in q.limit(limit).stream()]

    def running_rollouts(self) -> list[dict[str, Any]]:
        q = self.db.collection(paths.ROLLOUTS).where(filter=FieldFilter("status", "==", "running"))
        return [s.to_dict() or {} for s in q.stream()]

    def rollout(self, rollout_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.ROLLOUTS).document(rollout_id).get()
        return snap.to_dict() if snap.exists else None

    def record_evaluation(self, rollout_id: str, evaluation: dict[str, Any], summary: dict[str, Any]) -> None:
        """Append an evaluation under the rollout and keep its latest numbers on the rollout itself."""
        ref = self.db.collection(paths.ROLLOUTS).document(rollout_id)
        batch = self.db.batch()
        batch.set(ref.collection("evaluations").document(str(evaluation["ts"])), evaluation)
        batch.set(ref, summary, merge=True)
        batch.commit()

    def evaluations(self, rollout_id: str) -> list[dict[str, Any]]:
        col = self.db.collection(paths.ROLLOUTS).document(rollout_id).collection("evaluations")
        return [s.to_dict() or {} for s in col.order_by("ts").stream()]

    # ------------------------------------------------------------------ drift
    def drift_state(self, component: str) -> dict[str, Any]:
        snap = self.db.collection(paths.DRIFT).document(component).get()
        return (snap.to_dict() or {}) if snap.exists else {}

    def drift_states(self, components: list[str]) -> dict[str, dict[str, Any]]:
        refs = [self.db.collection(paths.DRIFT).document(c) for c in components]
        return {s.id: s.to_dict() or {} for s in self.db.get_all(refs) if s.exists}

    def update_drift(self, component: str, tests: dict[str, dict[str, Any]], schedule_ms: int) -> list[str]:
        """Store this run's tests; open an episode (and one ``ops_alerts`` entry) per newly drifting metric.

        Returns the metrics that raised an alert. A metric that keeps drifting raises nothing new; one
        that returns to normal closes its episode.
        """
        ref = self.db.collection(paths.DRIFT).document(component)
        alerts = self.db.collection(paths.ALERTS)

        def work(txn: firestore.Transaction) -> list[str]:
            snap = ref.get(transaction=txn)
            update = drift_domain.advance_episodes(component, (snap.to_dict() or {}) if snap.exists else {}, tests,
                                                   schedule_ms)
            for alert_id, alert in update.alerts.items():
                txn.create(alerts.document(alert_id), alert)
            txn.set(ref, update.state)
            return update.raised

        return run_transaction(self.db, work)

    def alerts(self, limit: int = 100) -> list[dict[str, Any]]:
        q = self.db.collection(paths.ALERTS).order_by("ts", direction=firestore.Query.DESCENDING).limit(limit)
        return [s.to_dict() or {} for s in q.stream()]

    def _head_from_statuses(self, policy_id: str, txn: firestore.Transaction) -> policy_domain.Head:
        """A head for a policy seeded without one: its single active version, no history."""
        q = (
            self.db.collection(paths.POLICIES)
            .where(filter=FieldFilter("id", "==", policy_id))
            .where(filter=FieldFilter("status", "==", "active"))
        )
        actives = sorted(str((s.to_dict() or {}).get("version")) for s in txn.get(q))
        return policy_domain.Head(policy_id, actives[-1] if actives else None)

    def audit_log(self, limit: int = 100, policy_id: str | None = None) -> list[dict[str, Any]]:
        q: Any = self.db.collection(paths.AUDIT)
        if policy_id is not None:
            q = q.where(filter=FieldFilter("id", "==", policy_id))
        docs = [s.to_dict() or {} for s in q.order_by("ts", direction=firestore.Query.DESCENDING).limit(limit).stream()]
        return docs


TRANSITION_ATTEMPTS = 40


def _now_ms() -> int:
    return ms(dt.datetime.now(dt.UTC))


def _int_or_none(value: Any) -> int | None:
    """A stored time as an int; None for anything else (a string, a bool, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)
