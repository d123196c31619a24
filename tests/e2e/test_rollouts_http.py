"""The rollout callables and evaluateRollouts over HTTP, as an admin, a component and Cloud Scheduler would."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
import requests

from opsloop.services.routing import Router
from opsloop.store.firestore_store import FirestoreStore
from tests.e2e.test_functions_http import ADMIN, SERVICE, call, post_obs, trigger
from tests.helpers import just_now_ms

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

QUALITY = {"gpt-5": 0.6, "gemini": 0.97, "claude": 0.95}  # success rate per model


def traffic(server: str, router: Router, n: int, seed: int) -> None:
    rng = random.Random(seed)
    ts = just_now_ms()
    items = []
    for i in range(n):
        c = router.route(f"req-{seed}-{i}", "router-core")
        assert c.model is not None
        items.append({"component": f"router:{c.model}", "ts": ts, "durationMs": 300 + rng.random() * 200,
                      "outcome": "success" if rng.random() < QUALITY[c.model] else "failure", "costUsd": 0.01,
                      "policyVersion": c.policy_version, "propensity": c.model_propensity,
                      **({"arm": c.arm} if c.arm else {})})
    for i in range(0, n, 500):
        assert post_obs(server, {"observations": items[i : i + 500]}).status_code == 201


def error(r: requests.Response) -> dict[str, Any]:
    return dict(r.json()["error"])


def test_shadow_canary_evaluate_promote_over_http(server: str, seeded: FirestoreStore) -> None:
    seeded.configs.set("rollout", {"minSamples": 200, "minShadowSamples": 200})
    base = seeded.policies.policy("router-core", "1.0.0") or {}
    seeded.policies.create_version(
        {"id": "router-core", "version": "1.0.1", "status": "draft", "createdBy": "test",
         "params": {**base["params"], "modelWeights": {"gpt-5": 0.1, "gemini": 0.5, "claude": 0.4}}},
        {"actor": "test", "action": "draft", "id": "router-core", "from": "1.0.0", "to": "1.0.1"},
    )
    router = Router(seeded.policies, ttl_s=0)
    ref = {"id": "router-core", "version": "1.0.1"}

    r = call(server, "startShadow", ref)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["rollout"]["stage"] == "shadow" and r.json()["result"]["shadowEstimate"]["n"] == 0
    r = call(server, "startCanary", {**ref, "split": 0.1})
    assert error(r)["status"] == "FAILED_PRECONDITION" and error(r)["details"]["code"] == "E_LEARN_DATA_MISSING"

    traffic(server, router, 400, seed=1)  # logged by the champion during the shadow
    now = dt.datetime.now(dt.UTC)
    assert trigger(server, "scoreObservations", now).status_code == 200
    assert trigger(server, "evaluateRollouts", now).status_code == 200
    assert (seeded.policies.policy("router-core", "1.0.1") or {})["shadowEstimate"]["n"] == 400

    assert error(call(server, "startCanary", {**ref, "split": 0.9}))["status"] == "INVALID_ARGUMENT"
    assert error(call(server, "startCanary", {**ref, "split": "canary99"}))["status"] == "INVALID_ARGUMENT"
    assert error(call(server, "startCanary", {**ref, "split": 0.5}, token=SERVICE))["status"] == "PERMISSION_DENIED"
    r = call(server, "startCanary", {**ref, "split": "ab"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["rollout"] | {"split": 0.5, "stage": "canary"} == r.json()["result"]["rollout"]

    traffic(server, router, 1000, seed=2)
    now = dt.datetime.now(dt.UTC)
    assert trigger(server, "scoreObservations", now).status_code == 200
    assert trigger(server, "evaluateRollouts", now).status_code == 200
    rollout = next(iter(seeded.rollouts.running()))
    last = rollout["lastEvaluation"]
    assert last["outcome"] == "promote" and last["nChallenger"] >= 200 and last["nChampion"] >= 200

    r = call(server, "promotePolicy", ref)
    assert r.status_code == 200, r.text
    assert {p["version"]: p["status"] for p in seeded.policies.versions("router-core")} == {
        "1.0.0": "archived", "1.0.1": "active"}
    r = call(server, "rejectPolicy", {**ref, "reason": "too late"})
    assert error(r)["status"] == "FAILED_PRECONDITION" and "active" in error(r)["message"]
    assert error(call(server, "rejectPolicy", {**ref, "reason": 7}))["status"] == "INVALID_ARGUMENT"
    actions = [a["action"] for a in reversed(seeded.audit.log(policy_id="router-core"))]
    assert actions == ["seed", "draft", "shadow", "canary", "promote"]
    assert trigger(server, "evaluateRollouts", dt.datetime.now(dt.UTC)).status_code == 200
    learned = seeded.learning.get("router-core") or {}  # the run refreshed the policy's learning record
    assert [c["action"] for c in learned["changes"]] == ["promote"] and learned["rates"]["counts"]["canary"] == 1
    assert learned["changes"][0]["windowMs"] == 3_600_000 and not learned["changes"][0]["effect"]["final"]


def test_rollout_callables_validate_arguments(server: str, seeded: FirestoreStore) -> None:
    assert error(call(server, "startShadow", {"id": "router-core"}))["status"] == "INVALID_ARGUMENT"
    assert error(call(server, "startShadow", {"id": "router-core", "version": "1.0.7"}))["status"] == "NOT_FOUND"
    assert error(call(server, "startShadow", {"id": "router-core", "version": "1.0.0"}))["status"] == (
        "FAILED_PRECONDITION")  # the active version is not a draft
    assert error(call(server, "startCanary", {"id": "router-core", "version": "1.0.0"}))["status"] == (
        "INVALID_ARGUMENT")  # split missing
    assert error(call(server, "promotePolicy", {"id": "router-core", "version": "1.0.0", "x": 1}))["status"] == (
        "INVALID_ARGUMENT")
    assert error(call(server, "promotePolicy", {"id": "router-core", "version": "1.0.0"}, token=None))["status"] == (
        "UNAUTHENTICATED")
    assert error(call(server, "rejectPolicy", {"id": "router-core", "version": "1.0.0"}, token=ADMIN))["status"] == (
        "INVALID_ARGUMENT")  # reason missing


def test_kill_switch_is_an_audited_admin_callable(server: str, seeded: FirestoreStore) -> None:
    assert error(call(server, "setLearningFlags", {"enabled": False}, token=SERVICE))["status"] == "PERMISSION_DENIED"
    for bad in ({}, {"enabled": "no"}, {"enabled": False, "other": True}, [True]):
        assert error(call(server, "setLearningFlags", bad))["status"] == "INVALID_ARGUMENT"
    r = call(server, "setLearningFlags", {"enabled": False})
    assert r.json()["result"] == {"learning": {"enabled": False, "autoActivatePolicies": False},
                                  "previous": {"enabled": True, "autoActivatePolicies": False}, "changed": True}
    assert call(server, "setLearningFlags", {"enabled": False}).json()["result"]["changed"] is False

    # learning is off: scoring goes on, nothing is drafted, no rollout may start
    now = dt.datetime.now(dt.UTC)
    ts = int(now.timestamp() * 1000) - 1000
    post_obs(server, {"observations": [{"component": "router:gpt-5", "outcome": "failure", "durationMs": 4000,
                                        "ts": ts}] * 120})
    assert trigger(server, "scoreObservations", now).status_code == 200
    assert trigger(server, "autoTunePolicies", now).status_code == 200
    assert seeded.count("ops_rewards") == 120
    assert [p["version"] for p in seeded.policies.versions("router-core")] == ["1.0.0"]
    seeded.policies.create_version({"id": "router-core", "version": "1.0.1", "status": "draft", "params": {}},
                                 {"actor": "t", "action": "draft", "id": "router-core", "from": None, "to": "1.0.1"})
    r = call(server, "startShadow", {"id": "router-core", "version": "1.0.1"})
    assert error(r)["status"] == "FAILED_PRECONDITION" and error(r)["details"]["code"] == "E_LEARN_DISABLED"

    flags_audit = seeded.audit.entries("config:flags")
    assert [(e["actor"], e["action"], e["from"]["enabled"], e["to"]["enabled"]) for _, e in flags_audit] == [
        ("alice", "set_flags", True, False)]
