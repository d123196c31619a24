"""``ops_buckets`` and ``ops_bucket_deltas``: per component, level and time bucket sufficient statistics,
and the scored chunks' statistics not yet added to them."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from collections.abc import Iterable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..domain import presence as presence_domain
from ..domain.generations import key as generation_key
from ..domain.generations import split_key
from ..domain.presence import Presence, Pruning
from ..domain.stats import Summary, total
from ..domain.windows import Segment
from . import paths
from .tx import run_transaction
from .util import now_ms

DELTA_FORMAT = 2  # format 1 (before): the entries as a "buckets" array of maps; both are read

Parts = dict[str, tuple[dict[str, Any], list[Summary]]]


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


def delta_doc(deltas: dict[str, tuple[dict[str, Any], Summary]], created_ms: int) -> dict[str, Any]:
    # ("buckets" instead of "payload" would break folds of older versions)
    return {"createdAt": created_ms, "format": DELTA_FORMAT, "bucketCount": len(deltas),
            "payload": encode_deltas(deltas)}


def presence_fields(starts: dict[str, list[int]] | None) -> dict[str, Any]:
    """The fields that add a commit's 5-minute starts to a component's record (``presence.touched``): an
    array union, so recording needs no read and concurrent commits all land."""
    unions = {name: firestore.ArrayUnion(list(xs)) for name, xs in (starts or {}).items() if xs}
    return {"p": unions} if unions else {}


class FirestoreBucketRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def _add_to_buckets(self, txn: firestore.Transaction, parts: Parts) -> None:
        """Add each bucket's parts to it inside ``txn``, in order: ((bucket + p1) + p2) + ...

        Summing onto the bucket one part after another makes the result independent of how deltas were
        grouped into folds, to the last bit of every floating-point sum.
        """
        buckets = self.db.collection(paths.BUCKETS)
        refs = {bid: buckets.document(bid) for bid in parts}
        current = {s.id: s for s in self.db.get_all(list(refs.values()), transaction=txn)}
        now = now_ms()
        for bid, (ident, added) in parts.items():
            found = current.get(bid)
            base = Summary.from_doc(found.to_dict() or {}) if found is not None and found.exists else Summary()
            txn.set(refs[bid], {**ident, **total([base, *added]).to_doc(), "updatedAt": now})

    def fold_pending(self, max_docs: int = 40, max_buckets: int = 400) -> tuple[int, int]:
        """Add up to ``max_docs`` pending deltas to their buckets and delete them, in one transaction.

        Returns (deltas folded, buckets written); (0, 0) when nothing is pending. A delta is added iff it
        is deleted in the same commit, so concurrent or repeated folds count it exactly once.
        """
        col = self.db.collection(paths.BUCKET_DELTAS)

        def work(txn: firestore.Transaction) -> tuple[int, int]:
            pending = list(txn.get(col.order_by("createdAt").limit(max_docs)))
            taken: list[Any] = []
            parts: Parts = {}
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
            txn.create(col.document(uuid.uuid4().hex), delta_doc(dict(items[i : i + size]), created))
        txn.delete(snap.reference)
        return 1

    def fold_own(self, delta_ids: list[str], parts: Parts) -> bool:
        """Fold deltas this process wrote, whose parts per bucket it still holds, without reading them back.

        In one transaction: if every one of ``delta_ids`` is still pending, add ``parts`` to the buckets
        and delete those deltas; otherwise (another run folded some of them) write nothing and return
        False, leaving the rest to ``fold_pending``, which reads them. Exactly once either way.
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

    def pending(self) -> int:
        """How many delta documents wait to be folded."""
        result = self.db.collection(paths.BUCKET_DELTAS).count().get()  # type: ignore[no-untyped-call]
        return int(result[0][0].value)

    def load_segments(self, component: str, segments: Iterable[Segment]) -> list[Summary]:
        """The bucket summaries of ``component`` inside each segment (only buckets that exist)."""
        return [s for seg in segments for _, s in self.series(component, seg.level, seg.start, seg.end)]

    def first_start(self, component: str, level: str, start: int, end: int) -> int | None:
        """The start of ``component``'s oldest bucket of ``level`` starting in ``[start, end)`` (one read)."""
        for snap in self._range(component, level, start, end).select(["start"]).limit(1).stream():
            return int((snap.to_dict() or {})["start"])
        return None

    def series(self, component: str, level: str, start: int, end: int) -> list[tuple[int, Summary]]:
        """Every bucket of one level of ``component`` starting in ``[start, end)``, oldest first."""
        return [(int((d := s.to_dict() or {})["start"]), Summary.from_doc(d))
                for s in self._range(component, level, start, end).stream()]

    def get_many(self, ids: list[str]) -> dict[str, Summary]:
        """The buckets of these ids that exist (one batch get: no query)."""
        col = self.db.collection(paths.BUCKETS)
        return {s.id: Summary.from_doc(s.to_dict() or {})
                for s in self.db.get_all([col.document(i) for i in ids]) if s.exists} if ids else {}

    # -- which buckets hold data (domain/presence): recorded by chunk commits in ops_components/<c> --

    def index_state(self, now: int) -> dict[str, Any]:
        """``ops_runs/bucket-index``, created on first use: ``since`` (when this version first ran) and,
        when nothing was bucketed before it (a new deployment), ``complete``: every record is then whole."""
        ref = self.db.collection(paths.RUNS).document(paths.BUCKET_INDEX_DOC)

        def work(txn: firestore.Transaction) -> dict[str, Any]:
            snap = ref.get(transaction=txn)
            if snap.exists:
                return snap.to_dict() or {}
            empty = all(not list(txn.get(self.db.collection(name).select([]).limit(1)))
                        for name in (paths.BUCKETS, paths.BUCKET_DELTAS))
            state: dict[str, Any] = {"since": now, "complete": empty, "built": {}}
            txn.set(ref, state)
            return state

        return run_transaction(self.db, work)

    def mark_built(self, generation: int, valid_from: int) -> None:
        """Every record of ``generation`` is complete from ``valid_from`` (an index build went over all)."""
        self.db.collection(paths.RUNS).document(paths.BUCKET_INDEX_DOC).set(
            {"built": {presence_domain.field_name(generation): valid_from}}, merge=True)

    def presence(self, keys: list[str]) -> dict[str, Presence]:
        """Each bucket key's record of the 5-minute buckets holding data, for the keys whose record is
        complete (one batch get of their components' documents)."""
        state = (self.db.collection(paths.RUNS).document(paths.BUCKET_INDEX_DOC).get().to_dict() or {})
        by_comp: dict[str, list[tuple[str, int]]] = {}
        for key in keys:
            comp, generation = split_key(key)
            by_comp.setdefault(comp, []).append((key, generation))
        col = self.db.collection(paths.COMPONENTS)
        out: dict[str, Presence] = {}
        for snap in self.db.get_all([col.document(c) for c in by_comp], field_paths=["p", "pi", "lastTs"]):
            doc = (snap.to_dict() or {}) if snap.exists else {}
            for key, generation in by_comp.get(snap.id, []):
                if (record := presence_domain.trusted(state, doc, generation)) is not None:
                    out[key] = record
        return out

    def index_key(self, component: str, generation: int, valid_from: int) -> int:
        """Record every 5-minute bucket of ``component`` under ``generation`` starting at or after
        ``valid_from``, and mark its record complete from there (one query); returns how many."""
        name = presence_domain.field_name(generation)
        key = generation_key(component, generation)
        q = (self.db.collection(paths.BUCKETS).where(filter=FieldFilter("component", "==", key))
             .where(filter=FieldFilter("level", "==", "5m")).where(filter=FieldFilter("start", ">=", valid_from)))
        starts = [int((s.to_dict() or {})["start"]) for s in q.select(["start"]).stream()]
        fields: dict[str, Any] = {"component": component, "pi": {name: valid_from}}
        if starts:
            fields["p"] = {name: firestore.ArrayUnion(starts)}
        self.db.collection(paths.COMPONENTS).document(component).set(fields, merge=True)
        return len(starts)

    def forget(self, pruning: dict[str, Pruning]) -> None:
        """Drop from records what no window needs any more (``presence.Pruning``), per bucket key."""
        col = self.db.collection(paths.COMPONENTS)
        items = sorted(pruning.items())
        for i in range(0, len(items), 150):  # up to 3 writes each
            batch = self.db.batch()
            for key, drop in items[i : i + 150]:
                comp, generation = split_key(key)
                name = presence_domain.field_name(generation)
                fields: dict[str, Any] = {"pi": {name: drop.valid_from}}
                if drop.starts:
                    fields["p"] = {name: firestore.ArrayRemove(drop.starts)}
                batch.set(col.document(comp), fields, merge=True)
                for dead in drop.dead:  # field paths: a merge cannot delete inside a map it also sets
                    batch.update(col.document(comp), {f"p.{presence_domain.field_name(dead)}": firestore.DELETE_FIELD,
                                                      f"pi.{presence_domain.field_name(dead)}": firestore.DELETE_FIELD})
            batch.commit()

    def _range(self, component: str, level: str, start: int, end: int) -> Any:
        """The buckets of one level of ``component`` starting in ``[start, end)``, oldest first (the index
        ``(component, level, start)``)."""
        return (
            self.db.collection(paths.BUCKETS)
            .where(filter=FieldFilter("component", "==", component))
            .where(filter=FieldFilter("level", "==", level))
            .where(filter=FieldFilter("start", ">=", start))
            .where(filter=FieldFilter("start", "<", end))
            .order_by("start")
        )
