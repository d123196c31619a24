"""Faults on the real emulator: crashes between writes, exhausted transactions, leaked leases."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from opsloop.domain.errors import Conflict
from opsloop.services import folding, policies, scoring
from opsloop.services.record import record_batch
from opsloop.services.seed import load_seed
from opsloop.store import tx
from opsloop.store.firestore_store import FirestoreStore
from tests.conftest import ROOT

pytestmark = pytest.mark.emulator

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
NOW_MS = int(NOW.timestamp() * 1000)
SETTINGS = scoring.ScoringSettings(chunk_size=30, safety_margin_ms=0)


def dataset() -> list[dict[str, Any]]:
    rng = random.Random(77)
    return [{"id": f"o{i}", "component": f"svc:{i % 4}", "outcome": rng.choice(["success", "failure"]),
             "durationMs": round(rng.lognormvariate(5, 0.5), 2), "costUsd": round(rng.random() / 20, 4),
             "ts": NOW_MS - rng.randrange(0, 3 * 3600_000)} for i in range(200)]


def snapshot(store: FirestoreStore) -> dict[str, Any]:
    """Everything a scoring run leaves behind that must not depend on how the run went."""
    stats = {s.id: s.to_dict() for s in store.db.collection("ops_stats").stream()}
    buckets = {s.id: {k: v for k, v in (s.to_dict() or {}).items() if k not in ("updatedAt", "latencySketch",
                                                                                   "rewardSketch")}
               for s in store.db.collection("ops_buckets").stream()}
    rewards = {s.id: (s.to_dict() or {})["score"] for s in store.db.collection("ops_rewards").stream()}
    return {"stats": stats, "buckets": buckets, "rewards": rewards}


def fresh(emulator: Any, store: FirestoreStore) -> None:
    emulator.clear()
    load_seed(store, ROOT / "seed")
    record_batch(store, {"observations": dataset()})


@pytest.fixture(scope="module")
def reference(emulator: Any) -> dict[str, Any]:
    from opsloop.store.client import get_db

    store = FirestoreStore(get_db())
    fresh(emulator, store)
    scoring.score_observations(store, NOW, settings=SETTINGS)
    return snapshot(store)


class Crash(Exception):
    pass


CRASH_POINTS = [
    ("after-lease", 1), ("after-run-start", 1),
    ("before-chunk-commit", 1), ("after-chunk-commit", 1), ("before-chunk-commit", 4), ("after-chunk-commit", 4),
    ("after-fold", 1), ("after-fold", 2), ("after-fold", 3),
    ("before-stats", 1), ("after-stats-write", 1), ("after-stats-write", 2), ("after-stats", 1),
    ("after-run-done", 1),
]


@pytest.mark.parametrize(("point", "occurrence"), CRASH_POINTS, ids=[f"{p}#{n}" for p, n in CRASH_POINTS])
def test_crash_between_writes_then_rerun_equals_a_clean_run(
    emulator: Any, store: FirestoreStore, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    point: str, occurrence: int,
) -> None:
    monkeypatch.setattr(scoring, "STATS_GROUP", 5)  # several stats transactions, so crashes fall between them
    monkeypatch.setattr(folding, "FOLD_EVERY", 3)  # and several folds of pending deltas
    fresh(emulator, store)
    seen = {"n": 0}

    def crash(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == occurrence:
                raise Crash(f"{name}#{occurrence}")

    with pytest.raises(Crash):
        scoring.score_observations(store, NOW, settings=SETTINGS, checkpoint=crash)
    scoring.score_observations(store, NOW, settings=SETTINGS)
    after = snapshot(store)
    assert store.buckets.pending() == 0
    assert after["rewards"] == reference["rewards"]
    assert after["buckets"] == reference["buckets"]
    assert after["stats"] == reference["stats"]


def test_a_leaked_lease_blocks_until_it_expires(seeded: FirestoreStore) -> None:
    record_batch(seeded, {"observations": dataset()[:10]})
    assert seeded.runs.acquire_lease("score", "crashed-run", ttl_s=600)  # a run that died holding the lease
    blocked = scoring.score_observations(seeded, NOW, settings=SETTINGS)
    assert not blocked.lease_acquired and seeded.count("ops_rewards") == 0
    assert seeded.runs.acquire_lease("score", "crashed-run", ttl_s=-1)  # ... whose lease has now expired
    assert scoring.score_observations(seeded, NOW, settings=SETTINGS).scored == 10


def abort_commits(monkeypatch: pytest.MonkeyPatch, touching: str) -> None:
    """Every commit that writes to ``touching`` answers ABORTED, and retries do not sleep."""
    from google.cloud.firestore_v1 import transaction as txn_mod

    real = txn_mod.Transaction._commit

    def commit(self: Any, *a: Any, **k: Any) -> Any:
        names = [w.update.name or w.delete for w in self._write_pbs]
        if any(f"/{touching}/" in n for n in names):
            raise gexc.Aborted("injected: transaction lock timeout")
        return real(self, *a, **k)

    monkeypatch.setattr(txn_mod.Transaction, "_commit", commit)
    monkeypatch.setattr(tx.time, "sleep", lambda s: None)


def test_an_exhausted_activation_leaves_no_partial_state(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded.policies.create_version({"id": "router-core", "version": "1.0.1", "status": "draft", "params": {}},
                                 {"actor": "t", "action": "draft", "id": "router-core", "from": None, "to": "1.0.1"})
    before = {p["version"]: p["status"] for p in seeded.policies.versions("router-core")}
    audit_before = seeded.count("ops_audit")
    abort_commits(monkeypatch, "ops_policy_heads")
    with pytest.raises(Conflict):
        policies.activate(seeded, "router-core", "1.0.1", actor="a")
    assert {p["version"]: p["status"] for p in seeded.policies.versions("router-core")} == before
    assert seeded.count("ops_audit") == audit_before
    assert not seeded.db.collection("ops_policy_heads").document("router-core").get().exists
    assert seeded.db.collection("ops_audit_chains").document("policy:router-core").get().to_dict()["seq"] == 2
    assert not seeded.db.collection("ops_runs").document("turn-policy-router-core").get().exists  # released


def test_an_exhausted_scoring_chunk_writes_nothing_and_a_later_run_recovers(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_batch(seeded, {"observations": dataset()[:50]})
    abort_commits(monkeypatch, "ops_rewards")
    with pytest.raises(tx.TransactionExhausted):
        scoring.score_observations(seeded, NOW, settings=SETTINGS)
    assert seeded.count("ops_rewards") == 0 and seeded.count("ops_buckets") == 0 and seeded.buckets.pending() == 0
    assert not seeded.db.collection("ops_runs").document("score-cursor").get().exists
    monkeypatch.undo()
    assert scoring.score_observations(seeded, NOW, settings=SETTINGS).scored == 50
