"""Generated inputs against the served functions: extreme observations and type-confused config documents.

Whatever the API or the rules accept is scored exactly once and validly; whatever config/* holds, every
scheduled function answers 2xx, normal observations are scored exactly once, and a kill switch that is not
a real ``true`` never lets the tuner draft.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsloop.domain import config as config_domain
from opsloop.domain import observation, shards
from opsloop.services import scoring
from opsloop.services.seed import load_seed
from opsloop.store import paths
from opsloop.store.client import get_db
from opsloop.store.firestore_store import FirestoreStore
from tests.e2e.test_functions_http import post_obs, trigger
from tests.emulator.test_rules import Rest

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]
JOBS = ("scoreObservations", "autoTunePolicies", "evaluateRollouts")
DRAIN = scoring.ScoringSettings(safety_margin_ms=0)
MAX_VERSION = "a" * 63 + "@999999999.999999999.999999999"


def now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def fresh(emulator: Any) -> FirestoreStore:
    emulator.clear()
    store = FirestoreStore(get_db())
    load_seed(store, ROOT / "seed")
    store.configs.set("scoring", {"safetyMarginMs": 0})
    return store


def run_jobs(server: str) -> None:
    for job in JOBS:
        r = trigger(server, job, dt.datetime.now(dt.UTC))
        assert r.status_code // 100 == 2, (job, r.status_code, r.text[:300])


def assert_scored_once(store: FirestoreStore, ids: set[str], all_valid: bool) -> None:
    rewards = {s.id: s.to_dict() or {} for s in store.db.collection(paths.REWARDS).stream()}
    observed = {s.id for s in store.db.collection(paths.OBSERVATIONS).stream()}
    assert set(rewards) == observed and ids <= observed  # one reward per observation, none lost
    invalid = {i: r.get("error") for i, r in rewards.items() if r.get("invalid")}
    assert not (invalid if all_valid else {i: e for i, e in invalid.items() if i in ids})
    assert store.buckets.pending() == 0


# ------------------------------------------------------------------------------- extreme observations
def numbers(low: float, high: float, *edges: float) -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from([low, high, *edges]), st.floats(low, high, allow_nan=False))


extreme = st.fixed_dictionaries(
    {
        "component": st.one_of(st.from_regex(observation.COMPONENT_PATTERN, fullmatch=True),
                               st.sampled_from(["Z" * 128, "a:" + "-." * 63, "0"])),
        "outcome": st.sampled_from(["success", "failure", "timeout", "rate_limit"]),
        "durationMs": numbers(0.0, 86_400_000.0, 5e-324, 86_399_999.99),
    },
    optional={
        "id": st.from_regex(observation.ID_PATTERN, fullmatch=True).filter(lambda s: not s.startswith("__")),
        "costUsd": numbers(0.0, 1_000_000.0, 5e-324),
        "tokensIn": st.sampled_from([0, 100_000_000]),
        "tokensOut": st.integers(0, 100_000_000),
        "propensity": numbers(observation.MIN_PROPENSITY, 1.0),
        "weight": numbers(1.0, 1_000_000.0),
        "policyVersion": st.one_of(st.from_regex(observation.POLICY_REF_PATTERN, fullmatch=True),
                                   st.just(MAX_VERSION)),
        "arm": st.sampled_from(["champion", "challenger"]),
        "errorCode": st.text(st.characters(blacklist_categories=("Cs",)), max_size=128),
        "meta": st.one_of(st.just({"k": "é" * 2040}), st.just({"日本": "語" * 1300}),
                          st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1,
                                                  max_size=20).filter(lambda k: not k.startswith("__")),
                                          st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=30)),
                                          max_size=5)),
    },
)


def normal_batch(n: int) -> list[dict[str, Any]]:
    return [{"id": f"normal-{i}", "component": "checkout", "outcome": "success", "durationMs": 120,
             "costUsd": 0.001, "ts": now_ms() - 30_000} for i in range(n)]


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=st.lists(extreme, min_size=5, max_size=40, unique_by=lambda o: o.get("id", object())))
def test_extreme_observations_over_http_and_through_the_rules_never_stop_the_loop(
    server: str, emulator: Any, items: list[dict[str, Any]]
) -> None:
    store = fresh(emulator)
    now = now_ms()
    for item in items:
        item["ts"] = now - 1000
    half = len(items) // 2
    many = [{"component": f"m{i:03d}:" + "w" * 123, "outcome": "success", "durationMs": 1, "ts": now - 1000}
            for i in range(150)]  # many long component names in one batch
    over_http = [*items[:half], *many, *normal_batch(20)]
    r = post_obs(server, {"observations": over_http})
    assert r.status_code == 201, r.text[:500]
    api = Rest(emulator.base_url)
    for i, item in enumerate(items[half:]):
        doc = {**item, "id": f"rules-{i}", "shard": shards.shard_of(f"rules-{i}", 1)}  # as recordObservation keys it
        resp = api.create(f"ops_observations/rules-{i}", doc, "service", stamp=("receivedAt",))
        assert resp.status_code == 200, (doc, resp.text[:300])  # what the API takes, the rules take
    run_jobs(server)
    run_jobs(server)
    scoring.score_observations(store, dt.datetime.now(dt.UTC), settings=DRAIN)
    assert_scored_once(store, {f"normal-{i}" for i in range(20)}, all_valid=True)
    assert store.stats.for_window(["checkout"], "1h")["checkout"]["n"] == 20


# ------------------------------------------------------------------------------ type-confused config
leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**13), st.floats(allow_nan=False),
                 st.sampled_from(["false", "true", "off", "0", "1h", "48h", "", "thompson"]))
value = st.recursive(leaf, lambda inner: st.lists(leaf, max_size=2) | st.dictionaries(  # (Firestore: no list in a list)
    st.sampled_from(["enabled", "autoActivatePolicies", "x"]), inner, max_size=2), max_leaves=5)


def config_doc(name: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = [*sorted(config_domain.default_doc(name)), "typo"]
    return st.dictionaries(st.sampled_from(keys), value, max_size=4)


configs = st.fixed_dictionaries({}, optional={name: config_doc(name) for name in config_domain.NAMES})


def traffic() -> list[dict[str, Any]]:
    """Enough for the tuner to want a change: gpt-5 fails, the others do well."""
    out = []
    for model, ok in (("gpt-5", 0.2), ("gemini", 0.97), ("claude", 0.95)):
        out += [{"id": f"{model}-{i}", "component": f"router:{model}", "outcome": "success" if i < ok * 150
                 else "failure", "durationMs": 500, "costUsd": 0.01, "policyVersion": "router-core@1.0.0",
                 "ts": now_ms() - 60_000} for i in range(150)]
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(docs=configs)
def test_any_config_documents_keep_every_schedule_2xx_and_the_kill_switch_closed(
    server: str, emulator: Any, docs: dict[str, dict[str, Any]]
) -> None:
    store = fresh(emulator)
    r = post_obs(server, {"observations": traffic()})
    assert r.status_code == 201, r.text[:300]
    for name, doc in docs.items():
        store.configs.set(name, doc, merge=False)
    before = {p["version"] for p in store.policies.versions("router-core")}
    run_jobs(server)
    try:
        flags = config_domain.parse("flags", docs.get("flags", {"learning": {"enabled": True}}))
    except config_domain.ConfigInvalid:
        flags = config_domain.FLAGS_OFF
    if not flags.enabled:  # never fail open: no draft, no activation
        assert {p["version"] for p in store.policies.versions("router-core")} == before
        assert store.policies.head("router-core").active == "1.0.0"
    for name in docs:
        try:
            config_domain.parse(name, docs[name])
        except config_domain.ConfigInvalid:
            assert any(a.get("path") == f"config/{name}" for a in store.alerts.recent(500)), name
    scoring.score_observations(store, dt.datetime.now(dt.UTC), settings=DRAIN)
    assert_scored_once(store, {o["id"] for o in traffic()}, all_valid=True)


def test_a_schedule_time_without_a_timezone_is_utc(server: str, seeded: FirestoreStore) -> None:
    post_obs(server, {"observations": normal_batch(3)})
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    r = requests.post(f"{server}/scoreObservations", timeout=60, headers={
        "X-CloudScheduler-JobName": "firebase-schedule-scoreObservations-us-central1",
        "X-CloudScheduler-ScheduleTime": when})
    assert r.status_code == 200, r.text
    assert seeded.stats.for_window(["checkout"], "1h")["checkout"]["n"] == 3


def test_a_schedule_time_days_ahead_is_refused_without_a_retry_storm(server: str, seeded: FirestoreStore) -> None:
    post_obs(server, {"observations": normal_batch(3)})
    for job in JOBS:
        r = trigger(server, job, dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
        assert r.status_code == 200, (job, r.text)
    assert seeded.count(paths.REWARDS) == 0 and seeded.count(paths.STATS) == 0
    run_jobs(server)
    assert seeded.count(paths.REWARDS) == 3


def test_recording_goes_on_with_a_bad_retention_setting(server: str, seeded: FirestoreStore) -> None:
    seeded.configs.set("scoring", {"retentionDays": 7})
    post_obs(server, {"observations": normal_batch(1)})  # a good value, kept as the last good one
    seeded.configs.set("scoring", {"retentionDays": "thirty"})
    before = dt.datetime.now(dt.UTC)
    r = post_obs(server, {"observations": [{**o, "id": f"later-{i}"} for i, o in enumerate(normal_batch(2))]})
    assert r.status_code == 201, r.text
    for i in range(2):
        stored = seeded.db.collection(paths.OBSERVATIONS).document(f"later-{i}").get().to_dict() or {}
        assert abs(stored["expireAt"] - before - dt.timedelta(days=7)) < dt.timedelta(minutes=1)
    [alert] = [a for a in seeded.alerts.recent() if a.get("kind") == "config"]
    assert (alert["path"], alert["field"]) == ("config/scoring", "retentionDays")
