"""The turnstile in front of contended transactions: one holder at a time, dead holders expire."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time

from google.cloud import firestore

from opsloop.services import policies
from opsloop.store.firestore_store import FirestoreStore
from opsloop.store.tx import release_claim, try_claim, turnstile


def claim_ref(store: FirestoreStore, name: str = "turn-test") -> firestore.DocumentReference:
    return store.db.collection("ops_runs").document(name)


def test_holders_take_turns_and_leave_nothing_behind(store: FirestoreStore) -> None:
    ref = claim_ref(store)
    spans: list[tuple[float, float, bool]] = []
    lock = threading.Lock()

    def go() -> None:
        with turnstile(ref) as claimed:
            start = time.monotonic()
            time.sleep(0.05)
            with lock:
                spans.append((start, time.monotonic(), claimed))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spans) == 6 and all(claimed for _, _, claimed in spans)
    ordered = sorted(spans)
    assert all(a_end <= b_start for (_, a_end, _), (b_start, _, _) in itertools.pairwise(ordered))
    assert not ref.get().exists


def test_a_dead_holders_claim_is_taken_over_after_it_expires(store: FirestoreStore) -> None:
    ref = claim_ref(store)
    started = time.monotonic()  # before the claim's expiry is computed: the set's round trip counts as waiting
    ref.set({"owner": "crashed", "expiresAt": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.6)})
    with turnstile(ref, wait_s=30) as claimed:
        waited = time.monotonic() - started
        assert claimed
        assert ref.get().to_dict()["owner"] != "crashed"
    assert waited >= 0.5
    assert not ref.get().exists


def test_a_live_holder_past_the_wait_lets_the_block_run_unclaimed_and_keeps_its_claim(
    store: FirestoreStore,
) -> None:
    ref = claim_ref(store)
    ref.set({"owner": "busy", "expiresAt": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)})
    with turnstile(ref, wait_s=0.3) as claimed:
        assert not claimed
    assert ref.get().to_dict()["owner"] == "busy"


def test_the_claim_is_released_when_the_block_raises_and_a_taken_over_claim_is_not_deleted(
    store: FirestoreStore,
) -> None:
    ref = claim_ref(store)
    try:
        with turnstile(ref):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not ref.get().exists
    with turnstile(ref, ttl_s=30):
        ref.set({"owner": "successor", "expiresAt": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)})
    assert ref.get().to_dict()["owner"] == "successor"


def test_a_policy_change_waits_for_the_policys_turnstile(seeded: FirestoreStore) -> None:
    seeded.policies.create_version({"id": "router-core", "version": "1.0.1", "status": "draft", "params": {}},
                                 {"actor": "t", "action": "draft", "id": "router-core", "from": None, "to": "1.0.1"})
    ref = claim_ref(seeded, "turn-policy-router-core")
    ref.set({"owner": "other-admin", "expiresAt": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)})
    done = threading.Event()

    def activate() -> None:
        policies.activate(seeded, "router-core", "1.0.1", actor="a")
        done.set()

    t = threading.Thread(target=activate)
    t.start()
    time.sleep(0.5)
    assert not done.is_set()  # queued behind the holder, not racing it
    status = {p["version"]: p["status"] for p in seeded.policies.versions("router-core")}
    assert status["1.0.1"] == "draft"
    ref.delete()
    t.join(timeout=30)
    assert done.is_set()
    assert {p["version"]: p["status"] for p in seeded.policies.versions("router-core")}["1.0.1"] == "active"
    assert not ref.get().exists


def test_a_claim_is_refused_to_others_while_live_renewed_by_its_owner_and_taken_once_expired(
    store: FirestoreStore,
) -> None:
    ref = claim_ref(store, "lease-test")
    first = try_claim(ref, "a", ttl_s=60)
    assert first is not None
    assert try_claim(ref, "b", ttl_s=60) is None  # live and someone else's
    renewed = try_claim(ref, "a", ttl_s=-1)  # its owner renews it (here: into the past)
    assert renewed is not None and renewed != first
    assert try_claim(ref, "b", ttl_s=60) is not None  # expired: taken over
    release_claim(ref, "a")  # no longer a's: left alone
    assert ref.get().to_dict()["owner"] == "b"
    release_claim(ref, "b")
    assert not ref.get().exists
