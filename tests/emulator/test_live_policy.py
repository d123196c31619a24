"""Live policy changes on the real emulator: a running PolicyClient/Router sees an activation, a canary
start, a promotion and a rollback through its head listener, without polling; a dropped listener is
counted and polling takes over."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from opsloop.client import PolicyClient, Router
from opsloop.services import policies
from opsloop.store.firestore_store import FirestoreStore
from opsloop.store.policy_reader import FirestorePolicyReader
from tests.helpers import AUTOSCALER

pytestmark = pytest.mark.emulator


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Wait for a pushed change (it takes milliseconds; the bound only stops a broken listener hanging)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the change never reached the client"
        time.sleep(0.01)


def seed_autoscaler(store: FirestoreStore) -> None:
    for version, target, status in (("1.0.0", 0.6, "active"), ("1.0.1", 0.7, "draft"), ("1.0.2", 0.8, "draft")):
        params = {**AUTOSCALER["params"], "targetCpu": target}
        doc = {**AUTOSCALER, "version": version, "status": status, "params": params}
        assert store.policies.create_version(doc, {"actor": "test", "action": "seed", "id": "autoscaler-core",
                                                   "from": None, "to": version})


def test_activation_canary_promotion_and_rollback_reach_a_running_client_through_its_listener(
        store: FirestoreStore) -> None:
    from opsloop.services import rollouts

    seed_autoscaler(store)
    with PolicyClient(FirestorePolicyReader(store.db), ttl_s=3600) as client:  # no poll within the test
        assert client.assign("r-1", "autoscaler-core").version == "1.0.0"
        reads = client.reads
        policies.activate(store, "autoscaler-core", "1.0.1", actor="alice")
        eventually(lambda: client.assign("r-1", "autoscaler-core").version == "1.0.1")
        policies.rollback(store, "autoscaler-core", None, actor="alice")
        eventually(lambda: client.assign("r-1", "autoscaler-core").version == "1.0.0")
        rollouts.start_canary(store, "autoscaler-core", "1.0.2", 0.5, actor="alice")
        eventually(lambda: {client.assign(f"r-{i}", "autoscaler-core").arm for i in range(40)}
                   == {"champion", "challenger"})
        rollouts.promote(store, "autoscaler-core", "1.0.2", actor="alice")
        eventually(lambda: (a := client.assign("r-1", "autoscaler-core")).arm is None and a.version == "1.0.2")
        assert client.reads == reads + 2  # the params of 1.0.1 and 1.0.2, once each; no head was polled
        assert client.listener.updates >= 4 and client.listener.drops == 0  # one push per change


def test_a_dropped_listener_is_counted_and_polling_takes_over(seeded: FirestoreStore,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    clock = {"t": 0.0}
    router = Router(FirestorePolicyReader(seeded.db), ttl_s=60, clock=lambda: clock["t"], relisten_s=120)
    try:
        assert router.route("r-1", "router-core").version == "1.0.0"
        router._watches["router-core"].unsubscribe()  # the stream closes under it
        draft = {**(seeded.policies.policy("router-core", "1.0.0") or {}), "version": "1.0.1", "status": "draft"}
        assert seeded.policies.create_version(draft, {"actor": "t", "action": "draft", "id": "router-core",
                                                      "from": "1.0.0", "to": "1.0.1"})
        policies.activate(seeded, "router-core", "1.0.1", actor="alice")
        time.sleep(0.5)
        assert router.route("r-1", "router-core").version == "1.0.0"  # nothing pushed; the cache holds
        assert router.listener.drops == 1 and "listener on router-core dropped" in caplog.text
        clock["t"] += 61
        assert router.route("r-1", "router-core").version == "1.0.1"  # the poll, ttl_s after
        clock["t"] += 60
        router.route("r-1", "router-core")
        assert router.listener.restarts == 1 and router._watches["router-core"].is_active
    finally:
        router.close()
