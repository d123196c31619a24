"""The deployed functions served over HTTP, driven as a component, Cloud Scheduler and an admin would."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests

from tests.helpers import bearer, emulator_token

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

SERVICE = emulator_token("router-svc", role="service")
ADMIN = emulator_token("alice", role="admin")
NO_ROLE = emulator_token("bob")


def post_obs(server: str, body: Any, token: str | None = SERVICE, **kw: Any) -> requests.Response:
    return requests.post(f"{server}/recordObservation", json=body, headers=bearer(token), timeout=30, **kw)


def trigger(server: str, name: str, when: dt.datetime) -> requests.Response:
    """POST the way Cloud Scheduler invokes a scheduled function."""
    headers = {
        "X-CloudScheduler-JobName": f"firebase-schedule-{name}-us-central1",
        # with its milliseconds: traffic stamped on a 5-minute mark must not fall outside a window
        # whose end was truncated onto that same mark
        "X-CloudScheduler-ScheduleTime": when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
    }
    return requests.post(f"{server}/{name}", headers=headers, timeout=120)


def call(server: str, name: str, data: Any, token: str | None = ADMIN) -> requests.Response:
    return requests.post(f"{server}/{name}", json={"data": data}, headers=bearer(token), timeout=60)


def count(store: Any, collection: str) -> int:
    return int(store.count(collection))


def obs(component: str = "router:gpt-5", **kw: Any) -> dict[str, Any]:
    return {"component": component, "outcome": "success", "durationMs": 250, "costUsd": 0.01, **kw}


# ---------------------------------------------------------------------------------- recordObservation


def test_record_single_and_batch_answers_201_with_ids(server: str, seeded: Any) -> None:
    r = post_obs(server, obs(id="req-1", tokensIn=10, tokensOut=20, policyVersion="router-core@1.0.0"))
    assert r.status_code == 201, r.text
    assert r.json()["ids"] == ["req-1"]
    r = post_obs(server, {"observations": [obs(component=f"router:m{i}") for i in range(50)]})
    assert r.status_code == 201, r.text
    assert len(r.json()["ids"]) == 50 and r.json()["created"] == 50
    assert count(seeded, "ops_observations") == 51
    stored = seeded.db.collection("ops_observations").document("req-1").get().to_dict()
    assert stored["policyVersion"] == "router-core@1.0.0" and stored["tokensOut"] == 20
    assert isinstance(stored["ts"], int) and stored["receivedAt"] is not None


def test_reposting_same_id_writes_nothing_new(server: str, seeded: Any) -> None:
    assert post_obs(server, obs(id="same", durationMs=100)).status_code == 201
    r = post_obs(server, {"observations": [obs(id="same", durationMs=999), obs(id="other")]})
    assert r.status_code == 201
    assert r.json()["duplicates"] == ["same"] and r.json()["created"] == 1
    assert count(seeded, "ops_observations") == 2
    assert seeded.db.collection("ops_observations").document("same").get().to_dict()["durationMs"] == 100


def test_one_bad_item_rejects_the_whole_batch_with_field_errors(server: str, seeded: Any) -> None:
    batch = [obs(), obs(), obs(outcome="exploded"), obs(durationMs=-1)]
    r = post_obs(server, {"observations": batch})
    assert r.status_code == 400
    fields = {e["field"] for e in r.json()["error"]["details"]["errors"]}
    assert fields == {"observations.2.outcome", "observations.3.durationMs"}
    assert count(seeded, "ops_observations") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"component": "router:x", "outcome": "success"}, "durationMs"),
        (obs(costUsd="cheap"), "costUsd"),
        (obs(meta={"blob": "x" * 5000}), "meta"),
        (obs(policyVersion="router-core@v1"), "policyVersion"),
        ({"observations": [obs()] * 501}, "observations"),
    ],
)
def test_bad_payloads_name_the_field(server: str, seeded: Any, body: Any, field: str) -> None:
    r = post_obs(server, body)
    assert r.status_code == 400, r.text
    assert any(e["field"] == field for e in r.json()["error"]["details"]["errors"])
    assert count(seeded, "ops_observations") == 0


def test_malformed_json_and_nan_are_400(server: str, seeded: Any) -> None:
    for raw in (b"{not json", b'{"component":"a","outcome":"success","durationMs":NaN}'):
        r = requests.post(f"{server}/recordObservation", data=raw, timeout=30,
                          headers={**bearer(SERVICE), "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
    assert count(seeded, "ops_observations") == 0


def test_oversized_body_is_413_before_parsing(server: str, seeded: Any) -> None:
    r = requests.post(f"{server}/recordObservation", data=b"[" + b" " * 1_100_000 + b"]", timeout=30,
                      headers={**bearer(SERVICE), "Content-Type": "application/json"})
    assert r.status_code == 413


EXPIRED_SERVICE = emulator_token("router-svc", role="service", expires_in=-60)
EXPIRED_ADMIN = emulator_token("alice", role="admin", expires_in=-60)


@pytest.mark.parametrize(("token", "status"),
                         [(None, 401), ("garbage", 401), (NO_ROLE, 403), (EXPIRED_SERVICE, 401)])
def test_auth_is_required(server: str, seeded: Any, token: str | None, status: int) -> None:
    r = post_obs(server, obs(), token=token)
    assert r.status_code == status
    assert count(seeded, "ops_observations") == 0


def test_admin_may_record_and_get_is_405(server: str, seeded: Any) -> None:
    assert post_obs(server, obs(), token=ADMIN).status_code == 201
    assert requests.get(f"{server}/recordObservation", headers=bearer(SERVICE), timeout=30).status_code == 405


# ---------------------------------------------------------------------------------- callables


def test_callables_enforce_auth_and_arguments(server: str, seeded: Any) -> None:
    def status(r: requests.Response) -> str:
        return str(r.json()["error"]["status"])

    assert status(call(server, "activatePolicy", {"id": "router-core", "version": "1.0.0"}, token=None)) == (
        "UNAUTHENTICATED"
    )
    assert status(call(server, "activatePolicy", {"id": "router-core", "version": "1.0.0"}, SERVICE)) == (
        "PERMISSION_DENIED"
    )
    expired = call(server, "activatePolicy", {"id": "router-core", "version": "1.0.0"}, EXPIRED_ADMIN)
    assert status(expired) == "UNAUTHENTICATED" and "expired" in expired.json()["error"]["message"]
    r = call(server, "activatePolicy", {"id": "router-core", "version": "one"})
    assert status(r) == "INVALID_ARGUMENT" and "version" in r.json()["error"]["message"]
    assert status(call(server, "activatePolicy", {"version": "1.0.0"})) == "INVALID_ARGUMENT"
    assert status(call(server, "activatePolicy", {"id": "router-core", "version": "9.9.9"})) == "NOT_FOUND"
    assert status(call(server, "rollbackPolicy", {"id": "router-core"})) == "FAILED_PRECONDITION"
    assert count(seeded, "ops_audit") == 1  # only the seed's entry


def test_an_admins_change_is_audited_with_her_email_and_the_client_it_came_through(server: str, seeded: Any) -> None:
    add = {"id": "router-core", "version": "1.0.3", "status": "draft", "createdBy": "test",
           "params": {"modelWeights": {"gpt-5": 0.5, "gemini": 0.5}}}
    assert seeded.policies.create_version(add, {"actor": "test", "action": "draft", "id": "router-core",
                                                "from": None, "to": "1.0.3"})
    carol = emulator_token("carol-uid", role="admin", email="carol@example.com")
    r = call(server, "activatePolicy", {"id": "router-core", "version": "1.0.3", "via": "admin-ui"}, carol)
    assert r.status_code == 200, r.text
    r = call(server, "rollbackPolicy", {"id": "router-core"}, ADMIN)  # a token without email, no via
    assert r.status_code == 200, r.text
    entries = {d["action"]: d for d in (s.to_dict() for s in seeded.db.collection("ops_audit").stream())}
    assert (entries["activate"]["actor"], entries["activate"]["actorEmail"], entries["activate"]["via"]) == (
        "carol-uid", "carol@example.com", "admin-ui")
    assert entries["rollback"]["via"] == "callable" and "actorEmail" not in entries["rollback"]
    for via in ("Admin UI!", "admin-ui\n", "", 7, "x" * 33):
        bad = call(server, "activatePolicy", {"id": "router-core", "version": "1.0.3", "via": via}, carol)
        assert bad.json()["error"]["status"] == "INVALID_ARGUMENT" and "via" in bad.json()["error"]["message"], via


@pytest.mark.parametrize(("raw", "says"), [
    (b"{not json", "not valid JSON"), (b'{"data": NaN}', "not valid JSON"), (b'"data"', "JSON object"),
    (b"5", "JSON object"), (b"[1]", "JSON object"), (b"null", "JSON object"), (b"{}", '"data" field'),
    (b'{"data": {"id": "router-core", "version": "1.0.0"}, "extra": 1}', 'only "data"'),
])
@pytest.mark.parametrize("name", ["activatePolicy", "setLearningFlags"])
def test_callables_answer_a_body_outside_the_protocol_with_invalid_argument(server: str, seeded: Any, name: str,
                                                                           raw: bytes, says: str) -> None:
    r = requests.post(f"{server}/{name}", data=raw, timeout=60,
                      headers={**bearer(ADMIN), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and says in error["message"], r.text
    assert error["details"]["code"] == "E_LEARN_INVALID_ARGUMENT"
    assert count(seeded, "ops_audit") == 1


@pytest.mark.parametrize(("scheme", "taken"), [("Bearer ", True), ("bearer ", False), ("BEARER ", False),
                                               ("Bearer  ", False), ("Bearer\t", False), ("Bearer:", False)])
def test_record_observation_reads_the_authorization_header_as_callables_do(server: str, seeded: Any, scheme: str,
                                                                           taken: bool) -> None:
    """firebase_functions' callables take exactly "Bearer " then the token; recordObservation agrees."""
    headers = {"Authorization": scheme + ADMIN}
    record = requests.post(f"{server}/recordObservation", json=obs(), headers=headers, timeout=30)
    assert record.status_code == (201 if taken else 401), record.text
    callable_ = requests.post(f"{server}/rollbackPolicy", json={"data": {"id": "router-core"}}, headers=headers,
                              timeout=60)
    assert callable_.json()["error"]["status"] == ("FAILED_PRECONDITION" if taken else "UNAUTHENTICATED")
    assert count(seeded, "ops_observations") == int(taken)


# ---------------------------------------------------------------------------------- the loop


def test_design_e2e_failing_gpt5_is_scored_tuned_and_drafted_then_activated(server: str, seeded: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    ts = int(now.timestamp() * 1000) - 60_000
    failing = [
        {"component": "router:gpt-5", "outcome": "failure", "durationMs": 5000, "ts": ts + i,
         "policyVersion": "router-core@1.0.0", "errorCode": "upstream_500"}
        for i in range(120)
    ]
    assert post_obs(server, {"observations": failing}).status_code == 201

    assert trigger(server, "scoreObservations", now).status_code == 200
    assert count(seeded, "ops_rewards") == 120
    stats = seeded.db.collection("ops_stats").document("router:gpt-5~1h").get().to_dict()
    assert stats["n"] == 120 and stats["avgReward"] == 0.0 and stats["successRate"] == 0.0

    assert trigger(server, "autoTunePolicies", now).status_code == 200
    drafts = [p for p in seeded.policies.versions("router-core") if p["status"] == "draft"]
    assert len(drafts) == 1
    draft = drafts[0]
    assert draft["version"] == "1.0.1" and draft["createdBy"] == "policy-updater"
    assert draft["notes"] == "Auto-tuned from 1.0.0"
    weights = draft["params"]["modelWeights"]
    assert weights["gpt-5"] < 0.6 and weights["gemini"] > 0.25 and weights["claude"] > 0.15
    assert abs(sum(weights.values()) - 1.0) < 1e-9
    assert draft["evidence"]["models"]["gpt-5"]["n"] == 120

    # a second tuning run does not draft the same thing again
    assert trigger(server, "autoTunePolicies", now).status_code == 200
    assert len([p for p in seeded.policies.versions("router-core") if p["status"] == "draft"]) == 1

    r = call(server, "activatePolicy", {"id": "router-core", "version": "1.0.1"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"id": "router-core", "active": "1.0.1", "previous": "1.0.0", "changed": True}
    statuses = {p["version"]: p["status"] for p in seeded.policies.versions("router-core")}
    assert statuses == {"1.0.0": "archived", "1.0.1": "active"}

    r = call(server, "rollbackPolicy", {"id": "router-core"})
    assert r.json()["result"]["active"] == "1.0.0"
    audit = seeded.audit.log(policy_id="router-core")
    assert [(a["action"], a["from"], a["to"], a["actor"]) for a in audit[:3]] == [
        ("rollback", "1.0.1", "1.0.0", "alice"),
        ("activate", "1.0.0", "1.0.1", "alice"),
        ("draft", "1.0.0", "1.0.1", "policy-updater"),
    ]


def test_scheduler_retry_of_same_time_changes_nothing(server: str, seeded: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    assert post_obs(server, {"observations": [obs(ts=int(now.timestamp() * 1000) - 1000)] * 1}).status_code == 201
    assert trigger(server, "scoreObservations", now).status_code == 200
    first = seeded.stats.all("router:gpt-5")
    assert trigger(server, "scoreObservations", now).status_code == 200
    assert seeded.stats.all("router:gpt-5") == first
    assert count(seeded, "ops_rewards") == 1


def test_pii_in_free_text_is_scrubbed_before_storage_and_counted(server: str, seeded: Any) -> None:
    body = obs(id="pii-1", errorCode="upstream 500 for jane.doe@example.com",
               meta={"prompt": "card 4111 1111 1111 1111, call +1 415 555 2671",
                     "user": {"ssn": "123-45-6789"}, "order": "ORD-2026-11-22", "version": "1.0.2"})
    assert post_obs(server, body).status_code == 201
    stored = seeded.db.collection("ops_observations").document("pii-1").get().to_dict()
    assert stored["errorCode"] == "upstream 500 for [redacted:email]"
    assert "4111" not in stored["meta"]["prompt"] and "[redacted:card]" in stored["meta"]["prompt"]
    assert "[redacted:phone]" in stored["meta"]["prompt"] and stored["meta"]["user"]["ssn"] == "[redacted:ssn]"
    assert stored["meta"]["order"] == "ORD-2026-11-22" and stored["meta"]["version"] == "1.0.2"
    assert stored["redactions"] == {"email": 1, "card": 1, "phone": 1, "ssn": 1}
    clean = obs(id="pii-2", meta={"note": "nothing to hide"})
    assert post_obs(server, clean).status_code == 201
    assert "redactions" not in seeded.db.collection("ops_observations").document("pii-2").get().to_dict()


def test_preview_reward_config_is_an_admin_what_if_that_writes_nothing(server: str, seeded: Any) -> None:
    r = requests.post(f"{server}/recordObservation", json={"observations": [
        obs("router:gpt-5", metrics={"judge": 3}), obs("router:gemini", metrics={"judge": 9})]},
        headers=bearer(SERVICE), timeout=60)
    assert r.status_code == 201, r.text
    proposal = {"rules": [{"match": "router:*", "version": "judge-1", "terms": [
        {"name": "quality", "source": "metric:judge", "weight": 1.0, "direction": "higher",
         "range": {"min": 0, "max": 10}}]}]}
    audits = count(seeded, "ops_audit")
    r = call(server, "previewRewardConfig", {"config": proposal, "days": 1})
    assert r.status_code == 200, r.text
    got = r.json()["result"]
    after = {c["component"]: c["meanAfter"] for c in got["components"]}
    assert got["observations"] == 2 and after == {"router:gpt-5": 0.3, "router:gemini": 0.9}
    assert count(seeded, "ops_audit") == audits and count(seeded, "ops_rewards") == 0
    bad = call(server, "previewRewardConfig", {"config": {"rules": [{"match": "router:*"}]}})
    assert bad.status_code == 400 and "rules.0.version" in bad.json()["error"]["message"], bad.text
    assert call(server, "previewRewardConfig", {"days": 1}).status_code == 400
    denied = call(server, "previewRewardConfig", {"config": proposal}, token=SERVICE)
    assert denied.status_code == 403, denied.text


def test_record_feedback_over_http_merges_late_metrics_once(server: str, seeded: Any) -> None:
    r = requests.post(f"{server}/recordObservation", json={"observations": [obs(id="late-1"), obs(id="late-2")]},
                      headers=bearer(SERVICE), timeout=60)
    assert r.status_code == 201, r.text
    body = {"feedback": [{"observationId": "late-1", "metrics": {"thumbsUp": 1}, "id": "fb-1"},
                         {"observationId": "late-2", "metrics": {"thumbsUp": 0}, "id": "fb-2"}]}
    r = requests.post(f"{server}/recordFeedback", json=body, headers=bearer(SERVICE), timeout=60)
    assert r.status_code == 201 and r.json() == {"ids": ["fb-1", "fb-2"], "created": 2, "duplicates": []}, r.text
    again = requests.post(f"{server}/recordFeedback", json=body, headers=bearer(SERVICE), timeout=60)
    assert again.json()["duplicates"] == ["fb-1", "fb-2"] and again.json()["created"] == 0
    assert seeded.db.collection("ops_observations").document("late-1").get().to_dict()["metrics"] == {"thumbsUp": 1}
    unknown = requests.post(f"{server}/recordFeedback", json={"observationId": "nope", "metrics": {"x": 1}},
                            headers=bearer(SERVICE), timeout=60)
    assert unknown.status_code == 404 and unknown.json()["error"]["details"]["code"] == "E_LEARN_NOT_FOUND"
    bad = requests.post(f"{server}/recordFeedback", json={"observationId": "late-1", "metrics": {"x": "1"}},
                        headers=bearer(SERVICE), timeout=60)
    assert bad.status_code == 400 and "metrics" in bad.text
    denied = requests.post(f"{server}/recordFeedback", json=body, timeout=60)
    assert denied.status_code == 401
    # another project's service cannot reach this project's observations, and its own are unknown here
    foreign = emulator_token("router-svc", project="another-project", role="service")
    other = requests.post(f"{server}/recordFeedback", json={"observationId": "late-1", "metrics": {"thumbsUp": 0}},
                          headers=bearer(foreign), timeout=60)
    assert other.status_code == 401, other.text
    theirs = requests.post(f"{server}/recordFeedback", json={"observationId": "their-obs-1", "metrics": {"x": 1}},
                           headers=bearer(SERVICE), timeout=60)
    assert theirs.status_code == 404 and theirs.json()["error"]["details"]["observationId"] == "their-obs-1"
    assert seeded.db.collection("ops_observations").document("late-1").get().to_dict()["metrics"] == {"thumbsUp": 1}
    assert count(seeded, "ops_feedback") == 2  # the two first ones (not scored yet: they wait for the scorer)


def test_deliver_events_runs_as_the_scheduler_calls_it(server: str, seeded: Any) -> None:
    from tests.emulator.test_events import Receiver

    hook = Receiver()
    try:
        seeded.configs.set("events", {"topic": None, "webhookUrl": hook.url})
        now = dt.datetime.now(dt.UTC)
        seeded.alerts.raise_once("failure~e2e", {"kind": "item_failed", "job": "scoreObservations", "item": "chunk 7",
                                                 "error": "DeadlineExceeded", "ts": int(now.timestamp() * 1000)})
        assert trigger(server, "deliverEvents", now).status_code == 200
        assert [b["cloudevent"]["type"] for b in hook.bodies] == ["opsloop.run.failed"]
        assert "scoreObservations failed on chunk 7" in hook.bodies[0]["text"]
        assert seeded.db.collection("ops_events").document("alert-failure~e2e").get().to_dict()["status"] == "delivered"
    finally:
        hook.server.shutdown()
