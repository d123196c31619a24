"""The tamper-evident audit trail on the real emulator: intact chains verify, every kind of tampering is found."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opsloop.services import policies, tuning
from opsloop.services.audit import verify_audit_chain
from opsloop.services.flags import set_learning_flags
from opsloop.services.record import record_batch
from opsloop.services.scoring import score_observations
from opsloop.store.firestore_store import FirestoreStore

pytestmark = pytest.mark.emulator
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def history(seeded: FirestoreStore) -> FirestoreStore:
    """A seeded store with a realistic trail: a draft, activations, a rollback and a flags change."""
    now = dt.datetime.now(dt.UTC)
    ts = int(now.timestamp() * 1000) - 1000
    record_batch(seeded, {"observations": [
        {"component": "router:gpt-5", "outcome": "failure", "durationMs": 4000, "ts": ts}] * 120})
    score_observations(seeded, now)
    assert tuning.auto_tune(seeded, now).outcomes[0].version == "1.0.1"
    policies.activate(seeded, "router-core", "1.0.1", actor="alice")
    policies.rollback(seeded, "router-core", None, actor="bob")
    set_learning_flags(seeded, {"autoActivatePolicies": True}, actor="alice")
    return seeded


def entries(store: FirestoreStore, chain: str = "policy:router-core") -> list[tuple[str, dict[str, Any]]]:
    return store.audit.entries(chain)


def test_an_untouched_trail_verifies(history: FirestoreStore) -> None:
    report = verify_audit_chain(history)
    assert report.ok, report.to_dict()
    assert report.chains == {"policy:router-core": 4, "config:flags": 1}
    trail = entries(history)
    assert [e["action"] for _, e in trail] == ["seed", "draft", "activate", "rollback"]
    assert trail[0][1]["prevHash"] == "0" * 64
    assert all(b["prevHash"] == a["hash"] for (_, a), (_, b) in itertools.pairwise(trail))
    draft = history.policies.policy("router-core", "1.0.1") or {}
    assert draft["createdByAudit"]["id"] == trail[1][0] and draft["createdByAudit"]["hash"] == trail[1][1]["hash"]
    flags = entries(history, "config:flags")[0][1]
    assert flags["from"]["autoActivatePolicies"] is False and flags["to"]["autoActivatePolicies"] is True


def _first_break(store: FirestoreStore) -> dict[str, Any]:
    report = verify_audit_chain(store)
    assert not report.ok
    return report.breaks[0] if report.breaks else report.policies[0]


def test_a_changed_entry_is_found(history: FirestoreStore) -> None:
    doc_id, _ = entries(history)[2]
    history.db.collection("ops_audit").document(doc_id).update({"actor": "mallory"})
    broken = _first_break(history)
    assert (broken["seq"], broken["docId"]) == (3, doc_id) and "changed" in broken["problem"]


def test_a_removed_entry_is_found(history: FirestoreStore) -> None:
    doc_id, _ = entries(history)[1]
    history.db.collection("ops_audit").document(doc_id).delete()
    broken = _first_break(history)
    assert broken["seq"] == 3 and "missing" in broken["problem"]


def test_a_removed_last_entry_is_found_by_the_head(history: FirestoreStore) -> None:
    doc_id, _ = entries(history)[-1]
    history.db.collection("ops_audit").document(doc_id).delete()
    broken = _first_break(history)
    assert "removed" in broken["problem"]


def test_a_rewritten_entry_with_a_fresh_hash_breaks_the_next_link(history: FirestoreStore) -> None:
    from opsloop.domain.audit import digest

    doc_id, entry = entries(history)[2]
    forged = {k: v for k, v in entry.items() if k != "hash"} | {"actor": "mallory"}
    history.db.collection("ops_audit").document(doc_id).set({**forged, "hash": digest(forged)})
    broken = _first_break(history)
    assert broken["seq"] == 4 and "prevHash" in broken["problem"]


def test_a_slipped_in_entry_is_found(history: FirestoreStore) -> None:
    history.db.collection("ops_audit").document("slipped").set({"ts": 1, "actor": "mallory", "action": "activate"})
    broken = _first_break(history)
    assert broken["docId"] == "slipped" and "no known chain" in broken["problem"]


def test_changed_params_of_a_version_are_found(history: FirestoreStore) -> None:
    history.db.collection("ops_policies").document("router-core@1.0.1").update({"params.maxCostUsd": 9.0})
    broken = _first_break(history)
    assert broken == {"policy": "router-core@1.0.1",
                      "problem": "params do not match paramsHash: they were changed after creation"}


def test_cli_reports_intact_and_broken_chains_with_exit_codes(history: FirestoreStore) -> None:
    env = {**os.environ, "GCLOUD_PROJECT": "demo-opsloop"}
    cmd = [sys.executable, "-m", "opsloop.cli", "--emulator", os.environ["FIRESTORE_EMULATOR_HOST"], "audit", "verify"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT / "functions")
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact" in ok.stdout
    doc_id, _ = entries(history)[0]
    history.db.collection("ops_audit").document(doc_id).update({"to": "6.6.6"})
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT / "functions")
    assert bad.returncode == 1
    assert f"BROKEN policy:router-core at seq 1 (entry {doc_id})" in bad.stdout


def test_concurrent_changes_keep_one_unbroken_chain(history: FirestoreStore) -> None:
    import threading

    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            policies.activate(history, "router-core", "1.0.1" if i % 2 else "1.0.0", actor=f"a{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert verify_audit_chain(history).ok
