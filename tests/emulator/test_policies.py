"""Activation, rollback and tuning against the real emulator."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from opsloop.domain.errors import FailedPrecondition, NotFound
from opsloop.services import policies, scoring, tuning
from opsloop.services.record import record_batch
from opsloop.store import policies as policy_repo
from opsloop.store.firestore_store import FirestoreStore

pytestmark = pytest.mark.emulator

NOW = dt.datetime.now(dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def add_version(
    store: FirestoreStore, version: str, status: str = "draft", weights: dict[str, float] | None = None
) -> None:
    doc = {
        "id": "router-core", "version": version, "status": status, "createdBy": "test",
        "params": {"modelWeights": weights or {"gpt-5": 0.5, "gemini": 0.3, "claude": 0.2}},
    }
    assert store.policies.create_version(doc, {"actor": "test", "action": "draft", "id": "router-core",
                                              "from": None, "to": version})


def statuses(store: FirestoreStore) -> dict[str, str]:
    return {p["version"]: p["status"] for p in store.policies.versions("router-core")}


def change_audits(store: FirestoreStore) -> list[dict[str, Any]]:
    return [a for a in store.audit.log(limit=500) if a["action"] in ("activate", "rollback")]


@contextlib.contextmanager
def no_turnstile(ref: Any, **_: Any) -> Iterator[bool]:
    yield False


@pytest.mark.parametrize(("turnstile", "admins"), [(True, 10), (False, 4)], ids=["turnstile", "transaction-only"])
def test_concurrent_activations_leave_one_active_and_one_audit_per_change(
    seeded: FirestoreStore, monkeypatch: pytest.MonkeyPatch, turnstile: bool, admins: int
) -> None:
    if not turnstile:  # the transaction alone must keep this consistent; the turnstile only saves lock timeouts
        monkeypatch.setattr(policy_repo, "turnstile", no_turnstile)
    versions = [f"1.0.{i}" for i in range(1, admins + 1)]
    for v in versions:
        add_version(seeded, v)
    results: list[policies.ChangeResult] = []
    errors: list[BaseException] = []

    def go(v: str) -> None:
        try:
            results.append(policies.activate(seeded, "router-core", v, actor=f"admin-{v}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    final = statuses(seeded)
    active = [v for v, s in final.items() if s == "active"]
    assert len(active) == 1
    audits = change_audits(seeded)
    assert len(audits) == sum(r.changed for r in results) == admins
    # the audit entries chain: each change starts where the previous one ended
    chain = sorted(audits, key=lambda a: a["seq"])
    assert chain[0]["from"] == "1.0.0"
    assert all(a["from"] == b["to"] for b, a in itertools.pairwise(chain))
    assert chain[-1]["to"] == active[0]
    assert all(s == "archived" for v, s in final.items() if v != active[0])


def test_concurrent_activations_and_rollbacks_stay_consistent(seeded: FirestoreStore) -> None:
    for v in ("1.0.1", "1.0.2", "1.0.3"):
        add_version(seeded, v)
    policies.activate(seeded, "router-core", "1.0.1", actor="a")
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            if i % 2:
                policies.activate(seeded, "router-core", f"1.0.{1 + i % 3}", actor="a")
            else:
                policies.rollback(seeded, "router-core", None, actor="a")
        except FailedPrecondition:
            pass  # nothing left to roll back to at that moment: a correct answer
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    active = [v for v, s in statuses(seeded).items() if s == "active"]
    assert len(active) == 1
    everything = sorted(seeded.audit.log(limit=500, policy_id="router-core"), key=lambda a: a["seq"])
    assert [a["seq"] for a in everything] == list(range(1, len(everything) + 1))  # one hash chain, no gaps
    chain = [a for a in everything if a["action"] in ("activate", "rollback")]
    assert all(a["from"] == b["to"] for b, a in itertools.pairwise(chain))
    assert chain[-1]["to"] == active[0]


def test_rollback_semantics(seeded: FirestoreStore) -> None:
    add_version(seeded, "1.0.1")
    add_version(seeded, "1.0.2")
    with pytest.raises(FailedPrecondition):
        policies.rollback(seeded, "router-core", None, actor="a")
    policies.activate(seeded, "router-core", "1.0.1", actor="a")
    policies.activate(seeded, "router-core", "1.0.2", actor="a")
    assert policies.rollback(seeded, "router-core", None, actor="a").active == "1.0.1"
    assert policies.rollback(seeded, "router-core", None, actor="a").active == "1.0.0"
    with pytest.raises(FailedPrecondition):
        policies.rollback(seeded, "router-core", None, actor="a")
    assert policies.rollback(seeded, "router-core", "1.0.2", actor="a").active == "1.0.2"
    with pytest.raises(NotFound):
        policies.rollback(seeded, "router-core", "7.0.0", actor="a")
    again = policies.activate(seeded, "router-core", "1.0.2", actor="a")
    assert again.changed is False
    assert [a["action"] for a in sorted(change_audits(seeded), key=lambda a: a["seq"])] == [
        "activate", "activate", "rollback", "rollback", "rollback"
    ]


def failing_gpt5(store: FirestoreStore, n: int = 120) -> None:
    items = [{"component": "router:gpt-5", "outcome": "failure", "durationMs": 5000, "ts": NOW_MS - 60_000 + i}
             for i in range(n)]
    items += [{"component": "router:gemini", "outcome": "success", "durationMs": 400, "costUsd": 0.01,
               "ts": NOW_MS - 60_000 + i} for i in range(60)]
    record_batch(store, {"observations": items})
    scoring.score_observations(store, NOW)


def test_tuning_drafts_bumped_version_from_newest_with_evidence(seeded: FirestoreStore) -> None:
    add_version(seeded, "1.0.9", status="archived", weights={"gpt-5": 0.6, "gemini": 0.25, "claude": 0.15})
    failing_gpt5(seeded)
    result = tuning.auto_tune(seeded, NOW)
    assert [(o.action, o.version) for o in result.outcomes] == [("drafted", "1.0.10")]
    draft = seeded.policies.policy("router-core", "1.0.10")
    assert draft is not None and draft["status"] == "draft" and draft["notes"] == "Auto-tuned from 1.0.0"
    ev = draft["evidence"]
    assert ev["window"] == "24h" and ev["models"]["gpt-5"]["n"] == 120 and ev["models"]["gpt-5"]["avgReward"] == 0
    assert ev["models"]["claude"]["eligible"] is False
    w = draft["params"]["modelWeights"]
    # gemini is certainly better than claude, which is not judged (taken as exactly minAcceptable):
    # all but the exploration floors go to gemini
    assert w == {"gpt-5": 0.0348, "gemini": 0.9304, "claude": 0.0348}
    # 150 samples of each in a window as busy as this router's rate: its 180 observations of the last
    # minute taken as an hour's, 4,320 a day (a router younger than its window; domain.tuning.window_traffic)
    assert ev["explorationFloor"] == 0.0348
    assert draft["params"]["fallbackOn"] == ["timeout", "rate_limit"]  # untuned params carried over


@pytest.mark.parametrize(("change_test", "floor"), [(False, 0.0167), (True, 0.0007)])
def test_the_exploration_floor_follows_the_windows_traffic(seeded: FirestoreStore, change_test: bool,
                                                           floor: float) -> None:
    # 3 of each model's next window: of the 180 observations counted (the tuner before the change test),
    # or of 180 x 24 at this young router's rate (with it); on the weights' 1e-4 grid
    seeded.configs.set("tuning", {"explorationSamples": 3, "changeTest": change_test})
    failing_gpt5(seeded)
    [outcome] = tuning.auto_tune(seeded, NOW).outcomes
    draft = seeded.policies.policy("router-core", str(outcome.version)) or {}
    assert draft["evidence"]["explorationFloor"] == floor
    assert draft["params"]["modelWeights"] == {"gpt-5": floor, "gemini": round(1 - 2 * floor, 4), "claude": floor}


def test_kill_switch_stops_drafting_but_not_scoring(seeded: FirestoreStore) -> None:
    seeded.configs.set("flags", {"learning": {"enabled": False, "autoActivatePolicies": True}})
    failing_gpt5(seeded)
    assert seeded.count("ops_rewards") == 180
    assert tuning.auto_tune(seeded, NOW).enabled is False
    assert statuses(seeded) == {"1.0.0": "active"}


def test_auto_activation_goes_through_the_admin_path(seeded: FirestoreStore) -> None:
    seeded.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": True}})
    failing_gpt5(seeded)
    outcome = tuning.auto_tune(seeded, NOW).outcomes[0]
    assert outcome.activated and statuses(seeded) == {"1.0.0": "archived", "1.0.1": "active"}
    audit = change_audits(seeded)
    assert [(a["actor"], a["from"], a["to"]) for a in audit] == [("policy-updater", "1.0.0", "1.0.1")]


def test_no_draft_without_enough_evidence(seeded: FirestoreStore) -> None:
    record_batch(seeded, {"observations": [
        {"component": "router:gpt-5", "outcome": "failure", "durationMs": 10, "ts": NOW_MS - 1000}
    ] * 10})
    scoring.score_observations(seeded, NOW)
    outcome = tuning.auto_tune(seeded, NOW).outcomes[0]
    assert outcome.action == "skipped" and statuses(seeded) == {"1.0.0": "active"}
