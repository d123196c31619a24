"""A model back from an outage regains traffic within the hour: scoring, then event-driven tuning.

The real path on the emulator: observations recorded, ``score_observations`` at each 15-minute step,
then ``tune_on_change`` (what ``scoreObservations`` runs after scoring), with no hourly tuning run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from opsloop.services import policies, scoring, tuning
from opsloop.services.record import record_batch
from opsloop.store.firestore_store import FirestoreStore

pytestmark = pytest.mark.emulator

HOUR_MS = 3_600_000
MIN_MS = 60_000
# the hour before the current one: the whole scenario lies in the past, as scheduled runs see it
H0 = (int(dt.datetime.now(dt.UTC).timestamp() * 1000) // HOUR_MS - 1) * HOUR_MS


def at(ts_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)


def calls(model: str, start: int, end: int, n: int, success: bool, duration_ms: float, cost: float,
          tag: str) -> list[dict[str, Any]]:
    """n calls of ``model`` spread over [start, end), latencies varying by a few percent."""
    return [{"id": f"{tag}-{model}-{start}-{i}", "component": f"router:{model}",
             "outcome": "success" if success else "failure", "durationMs": duration_ms * (1 + (i % 7) / 50),
             "costUsd": cost, "ts": start + i * (end - start) // n} for i in range(n)]


def record_and_score(store: FirestoreStore, items: list[dict[str, Any]], until: int) -> None:
    for k in range(0, len(items), 500):
        record_batch(store, {"observations": items[k : k + 500]})
    scoring.score_observations(store, at(until))


def weights(store: FirestoreStore) -> dict[str, float]:
    active = store.policies.head("router-core").active
    doc = store.policies.policy("router-core", str(active)) or {}
    return dict(doc["params"]["modelWeights"])


def test_a_recovered_floor_model_regains_traffic_within_the_hour(seeded: FirestoreStore) -> None:
    seeded.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": True}})
    floor = {"gpt-5": 0.03, "gemini": 0.94, "claude": 0.03}  # gpt-5 was pushed to the floor by an outage
    doc = {"id": "router-core", "version": "1.0.1", "status": "draft", "createdBy": "test",
           "params": {"modelWeights": floor, "latencyTargetMs": 2500}}
    assert seeded.policies.create_version(doc, {"actor": "test", "action": "draft", "id": "router-core",
                                                "from": "1.0.0", "to": "1.0.1"})
    policies.activate(seeded, "router-core", "1.0.1", actor="test")
    # 20 hours: gemini carries the traffic, good but slower and dearer; gpt-5 fails at its floor share
    history: list[dict[str, Any]] = []
    for h in range(20, 0, -1):
        start, end = H0 - h * HOUR_MS, H0 - (h - 1) * HOUR_MS
        history += calls("gemini", start, end, 60, True, 1500, 0.02, "old")
        history += calls("claude", start, end, 3, True, 1900, 0.04, "old")
        history += calls("gpt-5", start, end, 4, False, 5000, 0.0, "old")
    record_and_score(seeded, history, H0)
    assert tuning.tune_on_change(seeded, at(H0)).outcomes == []  # nothing new: no tuning run
    assert weights(seeded) == floor

    # the first quarter hour after gpt-5 comes back: a handful of its calls succeed, fast and cheap
    t1 = H0 + 15 * MIN_MS
    record_and_score(seeded, calls("gpt-5", H0, t1, 6, True, 300, 0.002, "new")
                     + calls("gemini", H0, t1, 15, True, 1500, 0.02, "new"), t1)
    first = tuning.tune_on_change(seeded, at(t1))
    [outcome] = first.outcomes
    assert outcome.action == "drafted" and outcome.activated
    probe = weights(seeded)
    assert probe["gpt-5"] == pytest.approx(0.15)  # a probing burst: not judged on 6 calls, but given traffic
    draft = seeded.policies.policy("router-core", str(outcome.version)) or {}
    assert draft["evidence"]["shifts"]["router:gpt-5"]["start"] == H0
    assert draft["evidence"]["shifts"]["router:gpt-5"]["z"] > 0
    assert seeded.drift.get("router:gpt-5")["tunerShift"] == {"start": H0, "judged": False}
    assert tuning.tune_on_change(seeded, at(t1)).outcomes == []  # the same answer triggers no second run

    # the probe brings gpt-5 enough calls by the half hour: judged on them alone, it takes the traffic
    t2 = H0 + 30 * MIN_MS
    record_and_score(seeded, calls("gpt-5", t1, t2, 50, True, 300, 0.002, "probe")
                     + calls("gemini", t1, t2, 15, True, 1500, 0.02, "probe"), t2)
    [second] = tuning.tune_on_change(seeded, at(t2)).outcomes
    assert second.action == "drafted" and second.activated
    regained = weights(seeded)
    assert regained["gpt-5"] > 0.8 > regained["gemini"]
    draft = seeded.policies.policy("router-core", str(second.version)) or {}
    assert draft["evidence"]["judgedSinceChange"]["router:gpt-5"] == H0
    assert draft["evidence"]["models"]["gpt-5"]["n"] == 56  # its calls since it came back, nothing older
    assert seeded.drift.get("router:gpt-5")["tunerShift"] == {"start": H0, "judged": True}


def test_no_event_driven_run_when_the_change_test_is_off(seeded: FirestoreStore) -> None:
    seeded.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": True}})
    seeded.configs.set("tuning", {"changeTest": False})
    history = []
    for h in range(20, 0, -1):
        start, end = H0 - h * HOUR_MS, H0 - (h - 1) * HOUR_MS
        history += calls("gpt-5", start, end, 4, False, 5000, 0.0, "old")
    history += calls("gpt-5", H0 - 15 * MIN_MS, H0, 10, True, 300, 0.002, "new")
    record_and_score(seeded, history, H0)
    result = tuning.tune_on_change(seeded, at(H0))
    assert result.enabled and result.outcomes == []
    assert "tunerShift" not in seeded.drift.get("router:gpt-5")
