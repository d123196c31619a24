"""assignPolicy over HTTP: the same assignment as the Python client, for components in any language."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from opsloop.client import PolicyClient, Router
from opsloop.services import experiments
from opsloop.store.firestore_store import FirestoreStore
from opsloop.store.policy_reader import FirestorePolicyReader
from tests.e2e.test_functions_http import ADMIN, NO_ROLE, SERVICE
from tests.helpers import bearer

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

AUTOSCALER: dict[str, Any] = {
    "id": "autoscaler-core", "version": "1.0.0", "kind": "params", "status": "active", "createdBy": "test",
    "params": {"targetCpu": 0.6, "minInstances": 2, "cooldownS": 60},
    "search": {"targetCpu": {"min": 0.3, "max": 0.9}, "cooldownS": {"choices": [30, 60, 120]}},
}


def assign(server: str, body: Any, token: str | None = SERVICE) -> requests.Response:
    return requests.post(f"{server}/assignPolicy", json=body, headers=bearer(token), timeout=30)


@pytest.fixture()
def autoscaler(seeded: FirestoreStore) -> FirestoreStore:
    assert seeded.policies.create_version(AUTOSCALER, {"actor": "test", "action": "seed", "id": "autoscaler-core",
                                                     "from": None, "to": "1.0.0"})
    return seeded


def test_assignment_outside_and_inside_an_experiment_matches_the_client(server: str,
                                                                        autoscaler: FirestoreStore) -> None:
    r = assign(server, {"policyId": "autoscaler-core", "requestId": "r-1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"policyId": "autoscaler-core", "version": "1.0.0", "arm": None,
                        "params": AUTOSCALER["params"], "propensity": 1.0}
    draft = {**AUTOSCALER, "version": "1.0.1", "status": "draft", "params": {**AUTOSCALER["params"], "cooldownS": 120}}
    assert autoscaler.policies.create_version(draft, {"actor": "test", "action": "draft", "id": "autoscaler-core",
                                                    "from": "1.0.0", "to": "1.0.1"})
    experiments.start_experiment(autoscaler, "autoscaler-core", "1.0.1", 0.5, "alice")
    body = {"requests": [{"policyId": "autoscaler-core", "requestId": f"r-{i}"} for i in range(200)]}
    r = assign(server, body)
    assert r.status_code == 200, r.text
    got = r.json()["assignments"]
    client = PolicyClient(autoscaler.policies, ttl_s=0)
    assert got == [client.assign(f"r-{i}", "autoscaler-core").to_dict() for i in range(200)]
    arms = {a["arm"] for a in got}
    assert arms == {"champion", "challenger"}
    for a in got:
        assert a["params"]["cooldownS"] == (120 if a["arm"] == "challenger" else 60) and a["propensity"] == 0.5


def test_a_router_policy_s_assignment_names_the_model(server: str, seeded: FirestoreStore) -> None:
    r = assign(server, {"policyId": "router-core", "requestId": "req-7"})
    assert r.status_code == 200, r.text
    call = Router(seeded.policies, ttl_s=0).route("req-7", "router-core")
    assert r.json()["model"] == call.model and r.json()["modelPropensity"] == call.model_propensity
    assert r.json()["version"] == call.version == "1.0.0"


def test_a_router_policy_s_model_respects_max_cost_like_the_library(server: str, seeded: FirestoreStore) -> None:
    from tests.emulator.test_router_params import record_costs

    record_costs(seeded)  # gpt-5 costs 0.12 a call in its stats; router-core caps at 0.09
    body = {"requests": [{"policyId": "router-core", "requestId": f"c-{i}"} for i in range(200)]}
    r = assign(server, body)
    assert r.status_code == 200, r.text
    got = r.json()["assignments"]
    assert {a["model"] for a in got} == {"gemini", "claude"}
    library = Router(FirestorePolicyReader(seeded.db), ttl_s=0, live=False)
    assert [(a["model"], a["modelPropensity"]) for a in got] == [
        (c.model, c.model_propensity) for c in (library.route(f"c-{i}", "router-core") for i in range(200))]


@pytest.mark.parametrize(("body", "field"), [
    ({"policyId": "autoscaler-core"}, "requestId"),
    ({"policyId": "autoscaler-core", "requestId": ""}, "requestId"),
    ({"policyId": "autoscaler-core", "requestId": "r" * 257}, "requestId"),
    ({"policyId": "autoscaler-core", "requestId": 7}, "requestId"),
    ({"policyId": "Bad Id", "requestId": "r-1"}, "policyId"),
    ({"policyId": 123, "requestId": "r-1"}, "policyId"),
    ({"policyId": "autoscaler-core", "requestId": "r-1", "arm": "challenger"}, "arm"),
    ({"requests": []}, "requests"),
    ({"requests": [{"policyId": "autoscaler-core", "requestId": "r-1"}] * 501}, "requests"),
    ({"requests": [{"policyId": "autoscaler-core", "requestId": "r-1"}, {"policyId": "autoscaler-core"}]},
     "requests.1.requestId"),
    ({"requests": [], "policyId": "x"}, "policyId"),
    ([1, 2], "body"),
])
def test_bad_requests_are_400_with_the_field(server: str, autoscaler: FirestoreStore, body: Any, field: str) -> None:
    r = assign(server, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["details"]["field"] == field and err["details"]["code"] == "E_LEARN_INVALID_ARGUMENT"


def test_unknown_policy_is_404_and_auth_is_required(server: str, autoscaler: FirestoreStore) -> None:
    r = assign(server, {"policyId": "nope", "requestId": "r-1"})
    assert r.status_code == 404 and r.json()["error"]["details"]["code"] == "E_LEARN_NOT_FOUND"
    assert r.json()["error"]["details"]["field"] == "policyId"
    r = assign(server, {"requests": [{"policyId": "autoscaler-core", "requestId": "r-1"},
                                     {"policyId": "nope", "requestId": "r-2"}]})
    assert r.status_code == 404 and r.json()["error"]["details"]["field"] == "requests.1.policyId"
    assert assign(server, {"policyId": "autoscaler-core", "requestId": "r-1"}, token=None).status_code == 401
    assert assign(server, {"policyId": "autoscaler-core", "requestId": "r-1"}, token=NO_ROLE).status_code == 403
    assert assign(server, {"policyId": "autoscaler-core", "requestId": "r-1"}, token=ADMIN).status_code == 200
    assert requests.get(f"{server}/assignPolicy", headers=bearer(SERVICE), timeout=30).status_code == 405
