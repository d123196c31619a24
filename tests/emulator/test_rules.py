"""firestore.rules, checked against Google's Cloud Firestore emulator over its REST API.

The Python clients talk to the emulator with admin rights and bypass the rules, so every call under
test goes over REST with an unsigned emulator ID token (``tests.helpers.emulator_token``) carrying the
``role`` claim, or with no Authorization header at all for an anonymous caller. Fixture documents are
written with the emulator's admin bypass (``Authorization: Bearer owner``), which also reads back what a
call did or did not change.

A denied call answers HTTP 403 with status PERMISSION_DENIED; an allowed one answers 200.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from scripts.emulator import Emulator
from tests.helpers import PROJECT, bearer, emulator_token

pytestmark = pytest.mark.emulator

DB = f"projects/{PROJECT}/databases/(default)"
OWNER_TOKEN = "owner"  # the emulator's admin bypass; not a client role
TIMEOUT = 10

# The callers a client can be. Tokens are minted once: they stay valid for an hour.
TOKENS: dict[str, str | None] = {
    "anonymous": None,
    "no_role": emulator_token("user-1"),
    "viewer": emulator_token("viewer-1", role="viewer"),
    "role_not_string": emulator_token("sneaky-1", role=["admin"]),
    "service": emulator_token("svc-1", role="service"),
    "admin": emulator_token("admin-1", role="admin"),
}
ROLES = tuple(TOKENS)

NOBODY: frozenset[str] = frozenset()
SERVICE = frozenset({"service", "admin"})  # isService(): admins are services too
ADMIN = frozenset({"admin"})


# ----------------------------------------------------------------------------- REST plumbing
def encode(value: Any) -> dict[str, Any]:
    """A Python value as a Firestore REST ``Value``."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, dt.datetime):
        return {"timestampValue": value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}
    if isinstance(value, list):
        return {"arrayValue": {"values": [encode(v) for v in value]}}
    if isinstance(value, dict):
        return {"mapValue": {"fields": {k: encode(v) for k, v in value.items()}}}
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode(value: dict[str, Any]) -> Any:
    """A Firestore REST ``Value`` as a Python value (timestamps stay ISO strings)."""
    kind, raw = next(iter(value.items()))
    if kind == "integerValue":
        return int(raw)
    if kind == "arrayValue":
        return [decode(v) for v in raw.get("values", [])]
    if kind == "mapValue":
        return {k: decode(v) for k, v in raw.get("fields", {}).items()}
    return raw  # stringValue, doubleValue, booleanValue, nullValue, timestampValue


def fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: encode(v) for k, v in data.items()}


def name(path: str) -> str:
    return f"{DB}/documents/{path}"


def server_time(*paths: str) -> list[dict[str, str]]:
    return [{"fieldPath": p, "setToServerValue": "REQUEST_TIME"} for p in paths]


@dataclass
class Rest:
    """The emulator's Firestore REST API, called as one role at a time."""

    base_url: str

    def url(self, path: str = "") -> str:
        return f"{self.base_url}/v1/{DB}/documents" + (f"/{path}" if path else "")

    @staticmethod
    def headers(role: str) -> dict[str, str]:
        return bearer(OWNER_TOKEN if role == "owner" else TOKENS[role])

    def get(self, path: str, role: str) -> requests.Response:
        return requests.get(self.url(path), headers=self.headers(role), timeout=TIMEOUT)

    def list(self, collection: str, role: str) -> requests.Response:
        return requests.get(self.url(collection), headers=self.headers(role), timeout=TIMEOUT)

    def query(self, collection: str, role: str, order_by: str) -> requests.Response:
        body = {"structuredQuery": {
            "from": [{"collectionId": collection}],
            "orderBy": [{"field": {"fieldPath": order_by}, "direction": "DESCENDING"}],
            "limit": 100,
        }}
        return requests.post(self.url() + ":runQuery", json=body, headers=self.headers(role), timeout=TIMEOUT)

    def commit(self, writes: list[dict[str, Any]], role: str) -> requests.Response:
        return requests.post(self.url() + ":commit", json={"writes": writes}, headers=self.headers(role),
                             timeout=TIMEOUT)

    def create(self, path: str, data: dict[str, Any], role: str, *, stamp: tuple[str, ...] = ()) -> requests.Response:
        """Create only (fails if the document exists); ``stamp`` fields get the commit time."""
        write: dict[str, Any] = {"update": {"name": name(path), "fields": fields(data)},
                                 "currentDocument": {"exists": False}}
        if stamp:
            write["updateTransforms"] = server_time(*stamp)
        return self.commit([write], role)

    def update(self, path: str, data: dict[str, Any], role: str) -> requests.Response:
        """Update only the given fields of an existing document."""
        return self.commit([{"update": {"name": name(path), "fields": fields(data)},
                             "updateMask": {"fieldPaths": list(data)},
                             "currentDocument": {"exists": True}}], role)

    def set(self, path: str, data: dict[str, Any], role: str) -> requests.Response:
        """Overwrite (or create) the whole document, no precondition."""
        return self.commit([{"update": {"name": name(path), "fields": fields(data)}}], role)

    def delete(self, path: str, role: str) -> requests.Response:
        return requests.delete(self.url(path), headers=self.headers(role), timeout=TIMEOUT)

    def read(self, path: str) -> dict[str, Any] | None:
        """The document as stored (admin bypass), or None when it does not exist."""
        resp = self.get(path, "owner")
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return {k: decode(v) for k, v in resp.json().get("fields", {}).items()}


def assert_allowed(resp: requests.Response) -> None:
    assert resp.status_code == 200, f"expected 200, got {resp.status_code}: {resp.text}"


def assert_denied(resp: requests.Response) -> None:
    assert resp.status_code == 403, f"expected 403, got {resp.status_code}: {resp.text}"
    assert resp.json()["error"]["status"] == "PERMISSION_DENIED", resp.text


def assert_outcome(resp: requests.Response, allowed: bool) -> None:
    (assert_allowed if allowed else assert_denied)(resp)


# ----------------------------------------------------------------------------- fixture documents
NOW_MS = 1_760_000_000_000


def observation(doc_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid client-written observation, minus ``receivedAt`` (the commit stamps it)."""
    return {"id": doc_id, "ts": NOW_MS, "component": "router:gpt-5", "outcome": "success",
            "durationMs": 234.5, "shard": "1-0", **overrides}


# One existing document per collection (path -> data), written before every test.
SEED: dict[str, dict[str, Any]] = {
    "ops_observations/obs-1": {**observation("obs-1"), "receivedAt": dt.datetime(2025, 10, 9, tzinfo=dt.UTC)},
    "ops_rewards/obs-1": {"obsId": "obs-1", "ts": NOW_MS, "component": "router:gpt-5", "score": 0.9},
    "ops_stats/checkout~1h": {"component": "checkout", "window": "1h", "n": 10, "avgReward": 0.8, "ts": NOW_MS},
    "ops_skill_cards/checkout": {"kind": "component", "component": "checkout", "judged": False, "ts": NOW_MS},
    "ops_policies/router-core@1.0.0": {"id": "router-core", "version": "1.0.0", "status": "active",
                                       "params": {"modelWeights": {"gpt-5": 1.0}}},
    "ops_audit/audit-1": {"ts": NOW_MS, "actor": "admin-1", "action": "activate", "id": "router-core",
                          "from": None, "to": "1.0.0", "seq": 1},
    "config/flags": {"autoActivate": False},
    "ops_buckets/checkout~5m~0": {"component": "checkout", "level": "5m", "start": 0, "n": 1},
    "ops_runs/score-cursor": {"docId": "obs-1", "components": {"checkout": NOW_MS}},
    "ops_policy_heads/router-core": {"active": "1.0.0", "seq": 1},
    "ops_alerts/alert-1": {"component": "checkout", "kind": "regression"},
    "ops_rollouts/r-1": {"id": "router-core", "version": "1.0.1", "status": "running"},
    "ops_rollouts/r-1/evaluations/1": {"ts": 1, "outcome": "continue"},
    "ops_experiments/r-0": {"experimentId": "r-0", "id": "autoscaler-core", "outcome": "promoted"},
    "ops_learning/router-core": {"id": "router-core", "changes": [], "rates": {}},
    "ops_drift/checkout": {"component": "checkout", "drifting": False},
    "ops_events/alert-x": {"id": "alert-x", "status": "pending"},
    "ops_feedback/fb-1": {"observationId": "obs-1", "metrics": {"judge": 9}, "status": "pending"},
    "ops_components/checkout": {"component": "checkout", "lastTs": NOW_MS},
    "ops_audit_chains/policy:router-core": {"chain": "policy:router-core", "seq": 1, "hash": "0" * 64},
    "anything_else/thing-1": {"x": 1},
    "ops_observations/obs-1/notes/note-1": {"text": "subcollections fall under the catch-all"},
}
EXISTING = {path.rsplit("/", 1)[0]: path for path in SEED}  # collection path -> its seeded document


@pytest.fixture()
def rest(emulator: Emulator) -> Iterator[Rest]:
    """An emptied emulator holding only SEED."""
    emulator.clear()
    api = Rest(emulator.base_url)
    writes = [{"update": {"name": name(path), "fields": fields(data)}} for path, data in SEED.items()]
    assert_allowed(api.commit(writes, "owner"))
    yield api


# ----------------------------------------------------------------------------- the access table
# collection -> roles allowed each operation, on the seeded document (get/update/delete), the collection
# (list) or a new, valid document (create). Every other role must get 403 PERMISSION_DENIED.
ACCESS: dict[str, dict[str, frozenset[str]]] = {
    "ops_observations": {"get": SERVICE, "list": SERVICE, "create": SERVICE, "update": NOBODY, "delete": NOBODY},
    # Derived by the scorer (Admin SDK) and read by the tuner: clients only read them.
    "ops_rewards":      {"get": SERVICE, "list": SERVICE, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_stats":        {"get": SERVICE, "list": SERVICE, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_skill_cards":  {"get": SERVICE, "list": SERVICE, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    # Versions and audit entries are created by the loop only (sealed into the audit hash chain).
    "ops_policies":     {"get": SERVICE, "list": SERVICE, "create": NOBODY, "update": ADMIN, "delete": NOBODY},
    "ops_audit":        {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    # Read by the admin console; written by the Admin SDK only.
    "ops_audit_chains": {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "config":           {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    # Admin SDK only: the loop's internal state, anything unknown, any subcollection.
    "ops_buckets":                  dict.fromkeys(("get", "list", "create", "update", "delete"), NOBODY),
    "ops_runs":                     dict.fromkeys(("get", "list", "create", "update", "delete"), NOBODY),
    "ops_policy_heads":             dict.fromkeys(("get", "list", "create", "update", "delete"), NOBODY),
    "ops_alerts":       {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_rollouts":     {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_rollouts/r-1/evaluations": {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY,
                                     "delete": NOBODY},
    "ops_experiments":  {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_learning":     {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_events":       {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_drift":        {"get": ADMIN, "list": ADMIN, "create": NOBODY, "update": NOBODY, "delete": NOBODY},
    "ops_feedback":                 dict.fromkeys(("get", "list", "create", "update", "delete"), NOBODY),
    "ops_components":               dict.fromkeys(("get", "list", "create", "update", "delete"), NOBODY),
    "anything_else":                dict.fromkeys(("get", "list", "create", "update", "delete"), NOBODY),
    "ops_observations/obs-1/notes": dict.fromkeys(("get", "list", "create", "update", "delete"), NOBODY),
}


UIDS = {"no_role": "user-1", "viewer": "viewer-1", "role_not_string": "sneaky-1", "service": "svc-1",
        "admin": "admin-1"}


UPDATE_FIELD = {"ops_policies": "notes"}  # the one field an admin may change on a version


def _new_doc(collection: str, role: str = "admin") -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """Path, data and server-stamped fields of a document that is valid to create in ``collection``."""
    path = f"{collection}/new-1"
    if collection == "ops_observations":
        return path, observation("new-1"), ("receivedAt",)
    if collection == "ops_policies":
        return "ops_policies/router-core@1.0.1", {"id": "router-core", "version": "1.0.1", "status": "draft"}, ()
    if collection == "ops_audit":
        return path, {"ts": NOW_MS, "actor": UIDS.get(role, "nobody"), "action": "note"}, ()
    return path, {"ts": NOW_MS, "note": "created by a client"}, ()


def _do(api: Rest, op: str, collection: str, role: str) -> requests.Response:
    existing = EXISTING[collection]
    if op == "get":
        return api.get(existing, role)
    if op == "list":
        return api.list(collection, role)
    if op == "create":
        path, data, stamp = _new_doc(collection, role)
        return api.create(path, data, role, stamp=stamp)
    if op == "update":
        return api.update(existing, {UPDATE_FIELD.get(collection, "note"): "changed by a client"}, role)
    if op == "delete":
        return api.delete(existing, role)
    raise AssertionError(op)


def _check_effect(api: Rest, op: str, collection: str, allowed: bool, role: str) -> None:
    """What the store holds afterwards: the write happened exactly when it was allowed."""
    existing = EXISTING[collection]
    if op == "create":
        path, data, _ = _new_doc(collection, role)
        stored = api.read(path)
        if allowed:
            assert stored is not None
            assert {k: stored[k] for k in data} == data
        else:
            assert stored is None
    elif op == "update":
        stored = api.read(existing)
        assert stored is not None
        assert (stored.get(UPDATE_FIELD.get(collection, "note")) == "changed by a client") is allowed
    elif op == "delete":
        assert (api.read(existing) is None) is allowed


MATRIX = [
    pytest.param(collection, op, role, role in allowed,
                 id=f"{collection}-{op}-{role}-{'allowed' if role in allowed else 'denied'}")
    for collection, ops in ACCESS.items()
    for op, allowed in ops.items()
    for role in ROLES
]


@pytest.mark.parametrize(("collection", "op", "role", "allowed"), MATRIX)
def test_access(rest: Rest, collection: str, op: str, role: str, allowed: bool) -> None:
    resp = _do(rest, op, collection, role)
    assert_outcome(resp, allowed)
    _check_effect(rest, op, collection, allowed, role)


@pytest.mark.parametrize("role", ["service", "admin"])
@pytest.mark.parametrize("collection", ["ops_observations", "ops_rewards", "ops_stats", "ops_skill_cards",
                                        "ops_policies"])
def test_allowed_reads_return_the_documents(rest: Rest, collection: str, role: str) -> None:
    got = rest.get(EXISTING[collection], role)
    assert_allowed(got)
    assert got.json()["name"] == name(EXISTING[collection])
    listed = rest.list(collection, role)
    assert_allowed(listed)
    assert [d["name"] for d in listed.json()["documents"]] == [name(EXISTING[collection])]


# ----------------------------------------------------------------------------- observations
DROP = object()  # a field to leave out


@dataclass(frozen=True)
class ObsCase:
    changes: dict[str, Any]
    stamp: tuple[str, ...] = ("receivedAt",)
    doc_id: str = "obs-new"
    allowed: bool = False


OBSERVATION_CASES: dict[str, ObsCase] = {
    # allowed
    "minimal": ObsCase({}, allowed=True),
    "every_optional_field": ObsCase({"tokensIn": 10, "tokensOut": 20, "costUsd": 0.02,
                                     "policyVersion": "router-core@1.0.0", "arm": "champion",
                                     "errorCode": "E42", "meta": {"region": "eu"}}, allowed=True),
    "integer_duration": ObsCase({"durationMs": 0}, allowed=True),
    "metrics_map": ObsCase({"metrics": {"thumbsUp": 1, "grounding": 0.8}}, allowed=True),
    "each_outcome_failure": ObsCase({"outcome": "failure"}, allowed=True),
    "each_outcome_timeout": ObsCase({"outcome": "timeout"}, allowed=True),
    "each_outcome_rate_limit": ObsCase({"outcome": "rate_limit"}, allowed=True),
    "component_128_chars": ObsCase({"component": "c" * 128}, allowed=True),
    # denied: receivedAt must be the commit time
    "receivedAt_missing": ObsCase({}, stamp=()),
    "receivedAt_from_client": ObsCase({"receivedAt": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)}, stamp=()),
    "receivedAt_as_int": ObsCase({"receivedAt": NOW_MS}, stamp=()),
    # denied: id must match the document id
    "id_mismatch": ObsCase({"id": "someone-else"}),
    "id_missing": ObsCase({"id": DROP}),
    # denied: field types and values
    "outcome_unknown": ObsCase({"outcome": "ok"}),
    "outcome_missing": ObsCase({"outcome": DROP}),
    "ts_missing": ObsCase({"ts": DROP}),
    "ts_string": ObsCase({"ts": str(NOW_MS)}),
    "ts_double": ObsCase({"ts": float(NOW_MS)}),
    "ts_negative": ObsCase({"ts": -1}),
    "component_missing": ObsCase({"component": DROP}),
    "component_empty": ObsCase({"component": ""}),
    "component_129_chars": ObsCase({"component": "c" * 129}),
    "component_not_string": ObsCase({"component": 7}),
    "durationMs_missing": ObsCase({"durationMs": DROP}),
    "durationMs_negative": ObsCase({"durationMs": -0.5}),
    "durationMs_string": ObsCase({"durationMs": "234"}),
    "unknown_field": ObsCase({"score": 1.0}),
    "ts_far_future": ObsCase({"ts": 4_000_000_000_000}),
    "durationMs_over_a_day": ObsCase({"durationMs": 86_400_001}),
    "component_with_slash": ObsCase({"component": "router/gpt-5"}),
    "tokensIn_negative": ObsCase({"tokensIn": -1}),
    "tokensOut_string": ObsCase({"tokensOut": "20"}),
    "costUsd_negative": ObsCase({"costUsd": -0.01}),
    "arm_unknown": ObsCase({"arm": "treatment"}),
    "errorCode_too_long": ObsCase({"errorCode": "E" * 129}),
    "meta_not_a_map": ObsCase({"meta": "free text"}),
    "metrics_not_a_map": ObsCase({"metrics": [1, 2]}),
    "metrics_over_32": ObsCase({"metrics": {f"m{i}": i for i in range(33)}}),
    # the same bounds and id formats as recordObservation (issue 11: these once wedged the scorer)
    "policyVersion_longest": ObsCase({"policyVersion": "a" * 63 + "@999999999.999999999.999999999",
                                      "arm": "challenger"}, allowed=True),
    "propensity_smallest": ObsCase({"propensity": 0.000001}, allowed=True),
    "tokens_largest": ObsCase({"tokensIn": 100_000_000, "tokensOut": 100_000_000}, allowed=True),
    "policyVersion_with_path": ObsCase({"policyVersion": "router-core@1.0.0/../x", "arm": "challenger"}),
    "policyVersion_1600_chars": ObsCase({"policyVersion": "r" * 1594 + "@1.0.0"}),
    "policyVersion_no_semver": ObsCase({"policyVersion": "router-core"}),
    "policyVersion_uppercase": ObsCase({"policyVersion": "Router@1.0.0"}),
    "propensity_tiny": ObsCase({"propensity": 1e-300}),
    "tokensIn_over_bound": ObsCase({"tokensIn": 100_000_001}),
    "id_with_space": ObsCase({"id": "obs new"}, doc_id="obs new"),
    # a shard key of the layout in use (config/scoring.shards, 1 here), or no scanner would ever read it
    "shard_missing": ObsCase({"shard": DROP}),
    "shard_of_another_layout": ObsCase({"shard": "4-0"}),
    "shard_index_past_count": ObsCase({"shard": "1-1"}),
    "shard_legacy_key": ObsCase({"shard": "0-0"}),
    "shard_not_a_string": ObsCase({"shard": 1}),
    "shard_trailing_text": ObsCase({"shard": "1-0x"}),
}


@pytest.mark.parametrize("case", [pytest.param(c, id=k) for k, c in OBSERVATION_CASES.items()])
def test_service_observation_create(rest: Rest, case: ObsCase) -> None:
    data = {k: v for k, v in observation(case.doc_id, **case.changes).items() if v is not DROP}
    resp = rest.create(f"ops_observations/{case.doc_id}", data, "service", stamp=case.stamp)
    assert_outcome(resp, case.allowed)
    stored = rest.read(f"ops_observations/{case.doc_id}")
    if case.allowed:
        assert stored is not None
        assert {k: stored[k] for k in data} == data
        commit_time = resp.json()["writeResults"][0]["transformResults"][0]["timestampValue"]
        assert stored["receivedAt"] == commit_time
    else:
        assert stored is None


def test_a_client_keys_its_observations_with_the_shards_in_use(rest: Rest) -> None:
    assert_allowed(rest.commit([{"update": {"name": name("config/scoring"), "fields": fields({"shards": 4})}}],
                               "owner"))
    for key, allowed in [("4-3", True), ("4-0", True), ("1-0", False), ("4-4", False), ("2-1", False)]:
        doc_id = f"keyed-{key}"
        resp = rest.create(f"ops_observations/{doc_id}", observation(doc_id, shard=key), "service",
                           stamp=("receivedAt",))
        assert_outcome(resp, allowed)
        assert (rest.read(f"ops_observations/{doc_id}") is not None) is allowed, key


def test_service_observation_read_back_by_service(rest: Rest) -> None:
    assert_allowed(rest.create("ops_observations/obs-2", observation("obs-2"), "service", stamp=("receivedAt",)))
    got = rest.get("ops_observations/obs-2", "service")
    assert_allowed(got)
    assert decode(got.json()["fields"]["outcome"]) == "success"


def test_one_bad_observation_refuses_the_whole_commit(rest: Rest) -> None:
    good = {"update": {"name": name("ops_observations/good"), "fields": fields(observation("good"))},
            "currentDocument": {"exists": False}, "updateTransforms": server_time("receivedAt")}
    bad = {"update": {"name": name("ops_observations/bad"), "fields": fields(observation("bad", outcome="ok"))},
           "currentDocument": {"exists": False}, "updateTransforms": server_time("receivedAt")}
    assert_denied(rest.commit([good, bad], "service"))
    assert rest.read("ops_observations/good") is None
    assert rest.read("ops_observations/bad") is None


@pytest.mark.parametrize("role", ["service", "admin"])
def test_observations_cannot_be_overwritten(rest: Rest, role: str) -> None:
    before = rest.read("ops_observations/obs-1")
    resp = rest.commit([{"update": {"name": name("ops_observations/obs-1"),
                                    "fields": fields(observation("obs-1", outcome="failure"))},
                         "updateTransforms": server_time("receivedAt")}], role)
    assert_denied(resp)
    assert rest.read("ops_observations/obs-1") == before


# ----------------------------------------------------------------------------- audit: append-only
Attempt = Callable[[Rest, str, str], requests.Response]

AUDIT_TAMPERING: dict[str, Attempt] = {
    "update_field": lambda api, path, role: api.update(path, {"actor": "someone-else"}, role),
    "overwrite_with_set": lambda api, path, role: api.set(path, {"ts": 0, "actor": "someone-else"}, role),
    "server_transform": lambda api, path, role: api.commit(
        [{"transform": {"document": name(path), "fieldTransforms": server_time("ts")}}], role),
    "delete": lambda api, path, role: api.delete(path, role),
    "delete_with_precondition": lambda api, path, role: api.commit(
        [{"delete": name(path), "currentDocument": {"exists": True}}], role),
}


@pytest.mark.parametrize("role", ["service", "admin"])
@pytest.mark.parametrize("attempt", [pytest.param(a, id=k) for k, a in AUDIT_TAMPERING.items()])
def test_audit_entries_cannot_be_changed_or_deleted(rest: Rest, attempt: Attempt, role: str) -> None:
    before = rest.read("ops_audit/audit-1")
    assert before is not None
    assert_denied(attempt(rest, "ops_audit/audit-1", role))
    assert rest.read("ops_audit/audit-1") == before


@pytest.mark.parametrize("role", ["service", "admin"])
def test_clients_cannot_append_to_the_audit_and_only_admins_read_it(rest: Rest, role: str) -> None:
    entry = {"ts": NOW_MS + 1, "actor": UIDS[role], "action": "note", "id": "router-core"}
    assert_denied(rest.create("ops_audit/audit-2", entry, role))
    assert rest.read("ops_audit/audit-2") is None
    got = rest.get("ops_audit/audit-1", "admin")
    assert_allowed(got)
    assert decode(got.json()["fields"]["actor"]) == "admin-1"
    listed = rest.list("ops_audit", "admin")
    assert_allowed(listed)
    assert [d["name"] for d in listed.json()["documents"]] == [name("ops_audit/audit-1")]
    assert_denied(rest.get("ops_audit/audit-1", "service"))


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("service", False), ("no_role", False),
                                               ("anonymous", False)])
def test_audit_log_query(rest: Rest, role: str, allowed: bool) -> None:
    """The query FirestoreAuditRepo.log runs (newest first), issued by a client."""
    resp = rest.query("ops_audit", role, order_by="ts")
    assert_outcome(resp, allowed)
    if allowed:
        assert [r["document"]["name"] for r in resp.json() if "document" in r] == [name("ops_audit/audit-1")]


# ----------------------------------------------------------------------------- policies
def test_admin_annotates_a_version_but_cannot_create_one(rest: Rest) -> None:
    draft = {"id": "router-core", "version": "1.0.1", "status": "draft", "createdBy": "admin-1",
             "params": {"modelWeights": {"gpt-5": 0.5, "claude": 0.5}}}
    path = "ops_policies/router-core@1.0.1"
    for role in ("service", "admin"):
        assert_denied(rest.create(path, draft, role))
    assert rest.read(path) is None

    existing = "ops_policies/router-core@1.0.0"
    before = rest.read(existing)
    assert before is not None
    assert_denied(rest.update(existing, {"notes": "by a service"}, "service"))
    assert_allowed(rest.update(existing, {"notes": "reviewed"}, "admin"))
    assert rest.read(existing) == {**before, "notes": "reviewed"}
    got = rest.get(existing, "service")
    assert_allowed(got)
    assert decode(got.json()["fields"]["notes"]) == "reviewed"
    assert_denied(rest.delete(existing, "admin"))
    assert rest.read(existing) is not None


@pytest.mark.parametrize(
    "change",
    [{"status": "archived"}, {"version": "9.9.9"}, {"id": "other"},
     {"params": {"modelWeights": {"gpt-5": 0.5, "gemini": 0.5}}},
     {"paramsHash": "0" * 64}, {"createdByAudit": {"id": "x", "hash": "y"}}],
)
def test_admins_cannot_change_a_versions_content_identity_or_status(rest: Rest, change: dict[str, Any]) -> None:
    before = rest.read("ops_policies/router-core@1.0.0")
    assert_denied(rest.update("ops_policies/router-core@1.0.0", change, "admin"))
    assert rest.read("ops_policies/router-core@1.0.0") == before
