"""Every query over observations is served by an index ``firestore.indexes.json`` declares, and none needs
the single-field indexes on ``receivedAt`` or ``ts`` that it exempts (a monotonic field indexed on its own
takes every write into one range: ~500 writes/s, whatever the number of shards).

The emulator serves any query without an index, so this records the structured query of every read the
loop makes over ``ops_observations`` (scoring with one shard and with three, a reward change and its
backfill, an export, a what-if, the backfill's progress, an upgrade's legacy drain and stamping) and
checks each against the index file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import BaseQuery
from google.cloud.firestore_v1.types import StructuredQuery

from opsloop.domain import shards as shard_domain
from opsloop.services import export, generations, scoring, whatif
from opsloop.services import shards as shard_service
from opsloop.store import paths
from opsloop.store.client import get_db
from opsloop.store.firestore_store import FirestoreStore
from tests.emulator.test_generations import QUALITY
from tests.emulator.test_scoring import NOW, ingest, make_batch

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
EQ = StructuredQuery.FieldFilter.Operator.EQUAL
EXEMPT = {"receivedAt", "ts"}


def declared() -> tuple[set[tuple[str, ...]], set[str]]:
    """The composite indexes of ops_observations (field paths in order) and its fields without indexes."""
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    composite = {tuple(f["fieldPath"] for f in i["fields"]) for i in spec["indexes"]
                 if i["collectionGroup"] == paths.OBSERVATIONS}
    exempt = {f["fieldPath"] for f in spec["fieldOverrides"]
              if f["collectionGroup"] == paths.OBSERVATIONS and f.get("indexes") == []}
    return composite, exempt


def shape(q: StructuredQuery) -> tuple[list[str], list[str]]:
    """(equality fields, range and order fields in order, without __name__) of a structured query."""
    eq: list[str] = []
    ranged: list[str] = []
    stack = [q.where] if q.where else []
    while stack:
        f = stack.pop()
        if f.composite_filter.filters:
            stack.extend(f.composite_filter.filters)
        elif f.field_filter.field.field_path:
            path = f.field_filter.field.field_path
            (eq if f.field_filter.op == EQ else ranged).append(path)
    ranged += [o.field.field_path for o in q.order_by]
    return eq, [p for i, p in enumerate(ranged) if p != "__name__" and p not in ranged[:i]]


@pytest.fixture()
def queries(monkeypatch: pytest.MonkeyPatch) -> list[StructuredQuery]:
    seen: list[StructuredQuery] = []
    original = BaseQuery._to_protobuf

    def recording(self: Any) -> Any:
        pb = original(self)
        if self._parent.id == paths.OBSERVATIONS:
            seen.append(pb)
        return pb

    monkeypatch.setattr(BaseQuery, "_to_protobuf", recording)
    return seen


def check(seen: list[StructuredQuery]) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    composite, exempt = declared()
    assert exempt >= EXEMPT, "firestore.indexes.json must exempt receivedAt and ts"
    shapes = set()
    for q in seen:
        eq, ranged = shape(q)
        shapes.add((tuple(sorted(eq)), tuple(ranged)))
        if ranged:
            assert "shard" in eq, f"a range over {ranged} without a shard key: one monotonic index range"
            assert any(set(idx[: len(eq)]) == set(eq) and list(idx[len(eq):]) == ranged for idx in composite), \
                f"no declared index serves equality on {eq} then {ranged}"
        assert not set(eq) & exempt, f"an equality filter on an exempted field: {eq}"
    return shapes


def test_every_query_over_observations_has_a_declared_index(store: FirestoreStore, queries: list[StructuredQuery],
                                                          tmp_path: Path) -> None:
    store.configs.set("scoring", {"chunkSize": 40, "safetyMarginMs": 0})
    fresh = FirestoreStore(get_db())
    items = make_batch(120, seed=21)
    ingest(fresh, items)
    scoring.score_observations(fresh, NOW)
    store.configs.set("reward_config", QUALITY, merge=False)
    ingest(fresh, make_batch(30, seed=22))
    run = scoring.score_observations(FirestoreStore(get_db()), NOW + dt.timedelta(seconds=1),
                                     settings=scoring.ScoringSettings(safety_margin_ms=0, chunk_size=40))
    assert run.scored == 30
    assert generations.status(fresh)["adopted"]
    export.export_dataset(fresh, tmp_path / "all.parquet", 0, 2**42)
    export.export_dataset(fresh, tmp_path / "one.parquet", 0, 2**42, components=["router:m0"])
    whatif.what_if(fresh, QUALITY, days=1)
    store.configs.set("scoring", {"chunkSize": 40, "safetyMarginMs": 0, "shards": 3})
    assert shard_service.waiting(fresh, dt.datetime.now(dt.UTC)) == 0  # the CLI's progress bar total
    three = FirestoreStore(get_db())
    ingest(three, make_batch(60, seed=23))
    assert shard_service.waiting(three, dt.datetime.now(dt.UTC)) == 60  # keyed "3-i", to be adopted
    later = NOW + dt.timedelta(seconds=2)
    assert scoring.score_observations(three, later).scored == 60
    stamped = {s.get("shard") for s in store.db.collection(paths.OBSERVATIONS).select(["shard"]).stream()}
    assert stamped == {"1-0", *shard_domain.keys(3)}

    shapes = check(queries)
    # what was exercised: the scanners, their backlog probe, the keyed exports, the backfill (name order)
    assert ((("shard",), ("receivedAt",)) in shapes and (("shard",), ("ts",)) in shapes
            and (("component", "shard"), ("ts",)) in shapes and ((), ()) in shapes), shapes


def test_an_upgrade_reads_unkeyed_observations_only_until_they_are_stamped(
    store: FirestoreStore, queries: list[StructuredQuery],
) -> None:
    """A version before this one left observations without a key and its global cursor: the drain reads
    them without a key (the upgrade keeps the old indexes until then, README), and stamps them "0-0";
    from then on every query is keyed."""
    store.configs.set("scoring", {"chunkSize": 40, "safetyMarginMs": 0})
    fresh = FirestoreStore(get_db())
    ingest(fresh, make_batch(50, seed=24))
    for snap in store.db.collection(paths.OBSERVATIONS).stream():
        snap.reference.update({"shard": firestore.DELETE_FIELD})
    store.db.collection(paths.RUNS).document(paths.SCORE_CURSOR_DOC).set(
        {"receivedAt": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "docId": "-"})
    assert scoring.score_observations(fresh, NOW).scored == 50
    assert shard_service.stored_keys(fresh) is None  # unstamped ones remain: readers read them unkeyed
    layout = shard_service.Layout.from_doc(store.runs.get(paths.SHARD_LAYOUT_DOC))
    until = max(layout.draining.values())
    later = dt.datetime.fromtimestamp(until / 1000, dt.UTC) + dt.timedelta(seconds=2)
    ingest(fresh, make_batch(20, seed=25))  # keyed, but in the drain's time range: the global scanner steps
    assert scoring.score_observations(fresh, later, now=later).scored == 20  # over them in this run
    assert shard_service.stored_keys(fresh) is None
    later += dt.timedelta(seconds=1)
    last = scoring.score_observations(fresh, later, now=later)  # nothing left for it: retired, then stamped
    assert last.scored == 0 and last.legacy_stamped == 50
    assert shard_service.stored_keys(fresh) == [shard_domain.MIGRATED, "1-0"]

    queries.clear()
    ingest(fresh, make_batch(20, seed=26))
    again = later + dt.timedelta(seconds=1)
    assert scoring.score_observations(fresh, again, now=again).scored == 20
    whatif.what_if(fresh, QUALITY, days=1)
    check(queries)  # nothing unkeyed once the legacy observations are stamped
