"""The repositories' contract, checked against Firestore (the emulator) and the in-memory fake alike.

Services are unit-tested on ``tests/fakes.py``; these tests are what entitles them to: every behaviour a
service relies on (create-once, exactly-once folds, the cursor guard, newer stats win, what a transition
writes, the kill switch) holds for both implementations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from opsloop.domain import audit as audit_domain
from opsloop.domain import drift as drift_domain
from opsloop.domain import policy as policy_domain
from opsloop.domain import windows
from opsloop.domain.errors import FailedPrecondition
from opsloop.domain.ingest import Cursor
from opsloop.domain.shards import StampPage
from opsloop.domain.stats import Summary
from opsloop.services import ports
from opsloop.store import paths
from tests.fakes import MemoryStore

NOW_MS = windows.ms(dt.datetime.now(dt.UTC))


@pytest.fixture(params=[pytest.param("firestore", marks=pytest.mark.emulator), "memory"])
def repos(request: pytest.FixtureRequest) -> ports.Store:
    if request.param == "memory":
        return MemoryStore()
    store: ports.Store = request.getfixturevalue("store")
    return store


def version_doc(version: str, status: str = "draft", policy_id: str = "p") -> dict[str, Any]:
    return {"id": policy_id, "version": version, "status": status, "kind": "params",
            "params": {"x": 0.5}, "search": {"x": {"min": 0.0, "max": 1.0}}}


def create(repos: ports.Store, version: str, status: str = "draft") -> None:
    assert repos.policies.create_version(version_doc(version, status),
                                         {"actor": "t", "action": "draft", "id": "p", "from": None, "to": version})


def test_config_get_set_merge_and_good_copies(repos: ports.Store) -> None:
    assert repos.configs.get("rollout") == {}
    repos.configs.set("rollout", {"split": 0.1, "guardrails": {"a": 1}})
    repos.configs.set("rollout", {"guardrails": {"b": 2}})
    assert repos.configs.get("rollout") == {"split": 0.1, "guardrails": {"a": 1, "b": 2}}
    repos.configs.set("rollout", {"split": 0.3}, merge=False)
    assert repos.configs.get("rollout") == {"split": 0.3}
    repos.configs.save_good("rollout", {"split": 0.3})
    got = repos.configs.get_many(["rollout", "tuning"])
    assert got == {"docs": {"rollout": {"split": 0.3}}, "good": {"rollout": {"split": 0.3}}}
    got["docs"]["rollout"]["split"] = 9  # what a caller changes is its own copy
    assert repos.configs.get("rollout") == {"split": 0.3}


def test_flags_change_once_with_one_audit_entry(repos: ports.Store) -> None:
    change = repos.configs.set_flags({"enabled": False}, "alice")
    assert change.doc is not None and change.old["enabled"] is True and change.new["enabled"] is False
    assert repos.configs.get(paths.FLAGS_DOC)["learning"]["enabled"] is False
    assert repos.configs.set_flags({"enabled": False}, "alice").doc is None  # no change, no entry
    entries = repos.audit.entries(audit_domain.FLAGS_CHAIN)
    assert [e["action"] for _, e in entries] == ["set_flags"] and entries[0][1]["actor"] == "alice"


def test_alerts_raise_once_note_counts_and_newest_first(repos: ports.Store) -> None:
    assert repos.alerts.raise_once("a1", {"ts": 1, "kind": "x"})
    assert not repos.alerts.raise_once("a1", {"ts": 5, "kind": "changed"})
    repos.alerts.note("n1", {"ts": 3, "message": "first"})
    repos.alerts.note("n1", {"ts": 4, "message": "second"})
    recent = repos.alerts.recent(limit=5)
    assert [a["ts"] for a in recent] == [4, 1]
    assert recent[0]["count"] == 2 and recent[0]["message"] == "second" and recent[1]["kind"] == "x"
    assert len(repos.alerts.recent(limit=1)) == 1


def test_a_version_is_created_once_with_its_audit_entry(repos: ports.Store) -> None:
    create(repos, "1.0.0")
    assert not repos.policies.create_version(version_doc("1.0.0"), {"actor": "t", "action": "draft", "id": "p"})
    doc = repos.policies.policy("p", "1.0.0") or {}
    assert doc["paramsHash"] == audit_domain.digest({"x": 0.5}) and doc["createdByAudit"]["id"]
    [(entry_id, entry)] = repos.audit.entries(audit_domain.policy_chain("p"))
    assert entry_id == doc["createdByAudit"]["id"] and entry["seq"] == 1
    assert repos.policies.policy("p", "9.9.9") is None
    assert [d["version"] for d in repos.policies.versions("p")] == ["1.0.0"]


def test_a_transition_writes_versions_head_and_audit_together(repos: ports.Store) -> None:
    create(repos, "1.0.0", "active")
    create(repos, "1.0.1")
    assert repos.policies.head("p").active == "1.0.0"  # seeded without a head: its active version

    transition, sealed = repos.policies.apply_transition(
        "p", lambda head, status_of: policy_domain.plan_activate(head, "1.0.1", status_of), "bob")
    assert transition is not None and sealed is not None
    assert sealed["action"] == "activate" and sealed["from"] == "1.0.0" and sealed["to"] == "1.0.1"
    assert {d["version"]: d["status"] for d in repos.policies.versions("p")} == {"1.0.0": "archived",
                                                                                "1.0.1": "active"}
    assert (repos.policies.policy("p", "1.0.1") or {})["activatedBy"] == "bob"
    assert repos.policies.head("p").active == "1.0.1"
    assert [d["version"] for d in repos.policies.with_status("active")] == ["1.0.1"]
    assert [e["seq"] for _, e in repos.audit.entries(audit_domain.policy_chain("p"))] == [1, 2, 3]
    repos.configs.set_flags({"enabled": False}, "ops")  # an entry of another chain
    assert sorted(e["action"] for e in repos.audit.log(policy_id="p")) == ["activate", "draft", "draft"]
    assert len(repos.audit.log(limit=2)) == 2 and len(repos.audit.log()) == 4

    nothing = repos.policies.apply_transition("p", lambda head, status_of: None, "bob")
    assert nothing == (None, None) and len(repos.audit.entries(audit_domain.policy_chain("p"))) == 3


def test_the_kill_switch_is_read_inside_the_change(repos: ports.Store) -> None:
    create(repos, "1.0.0", "active")
    create(repos, "1.0.1")
    repos.configs.set_flags({"enabled": False}, "ops")
    with pytest.raises(FailedPrecondition) as info:
        repos.policies.apply_transition(
            "p", lambda head, status_of: policy_domain.plan_activate(head, "1.0.1", status_of), "bob",
            require_learning=True)
    assert info.value.details["code"] == "E_LEARN_DISABLED"
    with pytest.raises(FailedPrecondition):
        repos.policies.create_version(version_doc("1.0.2"), {"actor": "t", "action": "draft", "id": "p"},
                                      require_learning=True)
    assert repos.policies.head("p").active == "1.0.0" and repos.policies.policy("p", "1.0.2") is None


def test_plain_updates_never_touch_the_lifecycle(repos: ports.Store) -> None:
    create(repos, "1.0.0")
    repos.policies.update("p", "1.0.0", {"estimate": {"reward": 0.5}})
    assert (repos.policies.policy("p", "1.0.0") or {})["estimate"] == {"reward": 0.5}
    with pytest.raises(ValueError, match="lifecycle"):
        repos.policies.update("p", "1.0.0", {"status": "active"})


def test_rollouts_start_evaluate_and_end(repos: ports.Store) -> None:
    create(repos, "1.0.0", "active")
    create(repos, "1.0.1")
    transition, _ = repos.policies.apply_transition(
        "p", lambda head, status_of: policy_domain.plan_start_experiment(head, "1.0.1", status_of, 0.2, "r1", NOW_MS),
        "bob")
    assert transition is not None and transition.rollout is not None
    rid = transition.rollout.rollout_id
    running = repos.rollouts.running()
    assert [(r["id"], r["version"], r["status"], r["split"]) for r in running] == [("p", "1.0.1", "running", 0.2)]
    repos.rollouts.record_evaluation(rid, {"ts": 2, "decision": "continue"}, {"lastDecision": "continue"})
    repos.rollouts.record_evaluation(rid, {"ts": 1, "decision": "wait"}, {"lastDecision": "wait"})
    assert [e["ts"] for e in repos.rollouts.evaluations(rid)] == [1, 2]
    assert (repos.rollouts.get(rid) or {})["lastDecision"] == "wait"
    # a map in a merged summary: nested fields merge, an empty map replaces the stored one
    repos.rollouts.record_evaluation(rid, {"ts": 3}, {"lastEvaluation": {"checks": {"a": 1}, "n": 1}})
    repos.rollouts.record_evaluation(rid, {"ts": 4}, {"lastEvaluation": {"checks": {"b": 2}}})
    assert (repos.rollouts.get(rid) or {})["lastEvaluation"] == {"checks": {"a": 1, "b": 2}, "n": 1}
    repos.rollouts.record_evaluation(rid, {"ts": 5}, {"lastEvaluation": {"checks": {}}})
    assert (repos.rollouts.get(rid) or {})["lastEvaluation"] == {"checks": {}, "n": 1}
    assert repos.rollouts.ended_canaries("p") == []

    repos.policies.apply_transition(
        "p", lambda head, status_of: policy_domain.plan_reject(head, "1.0.1", status_of), "bob")
    [ended] = repos.rollouts.ended_canaries("p")
    assert ended["rolloutId"] == rid and ended["status"] == "rejected" and ended["endedBy"] == "bob"
    assert repos.rollouts.running() == [] and repos.rollouts.recent(limit=5)[0]["rolloutId"] == rid
    assert repos.rollouts.get("nope") is None


def test_experiments_are_written_once_and_listed_newest_first(repos: ports.Store) -> None:
    assert repos.experiments.create({"experimentId": "e1", "id": "p", "endedAt": 1})
    assert not repos.experiments.create({"experimentId": "e1", "id": "p", "endedAt": 9})
    assert repos.experiments.create({"experimentId": "e2", "id": "p", "endedAt": 2})
    assert repos.experiments.create({"experimentId": "e3", "id": "q", "endedAt": 3})
    assert [e["experimentId"] for e in repos.experiments.recent("p")] == ["e2", "e1"]
    assert [e["experimentId"] for e in repos.experiments.recent(limit=1)] == ["e3"]
    assert repos.experiments.ids("p") == {"e1", "e2"} and (repos.experiments.get("e1") or {})["endedAt"] == 1
    assert repos.experiments.get("nope") is None


def test_observations_chunks_and_folds_count_each_once(repos: ports.Store) -> None:
    ts = NOW_MS - 60_000
    docs = [(f"o{i}", {"ts": ts + i, "component": "c", "outcome": "success", "durationMs": 10, "meta": {"k": 1}},
             True) for i in range(5)]
    assert repos.observations.insert(docs) == []
    assert repos.observations.insert([*docs[:2], ("o9", {**docs[0][1]}, True)]) == ["o0", "o1"]
    upper = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    start = repos.observations.cursor()
    assert start.received_at is None and repos.observations.backlog(start, upper) == 6
    first = repos.observations.after(start, upper, 3)
    assert len(first) == 3 and "meta" not in first[0].data
    rest = repos.observations.after(Cursor(first[-1].received_at, first[-1].doc_id), upper, 10)
    assert {o.doc_id for o in first + rest} == {"o0", "o1", "o2", "o3", "o4", "o9"} and len(rest) == 3

    bid = paths.bucket_id("c", "5m", windows.bucket_start(ts, "5m"))
    ident = {"component": "c", "level": "5m", "start": windows.bucket_start(ts, "5m")}
    part = Summary.of(reward=0.5, success=True, cost_usd=0.01, duration_ms=10.0)
    deltas = {bid: (ident, part)}
    new = Cursor(first[-1].received_at, first[-1].doc_id, {"c": ts + 2})
    assert repos.observations.commit_chunk(start, new, [("o0", {"reward": 0.5})], deltas, "d1")
    assert not repos.observations.commit_chunk(start, new, [("o1", {"reward": 0.1})], deltas, "d2")  # stale cursor
    assert repos.observations.cursor().same_position(new)
    assert repos.observations.rewards_for(["o0", "o1"]) == {"o0": {"reward": 0.5}}
    assert repos.observations.active_components(ts) == {"c": ts + 2}
    assert repos.observations.active_components(ts + 3) == {}

    assert repos.buckets.pending() == 1
    assert not repos.buckets.fold_own(["d1", "gone"], {bid: (ident, [deltas[bid][1]])})
    assert repos.buckets.fold_pending() == (1, 1)
    assert repos.buckets.fold_pending() == (0, 0) and repos.buckets.pending() == 0
    [(start_ms, folded)] = repos.buckets.series("c", "5m", 0, NOW_MS + 1)
    assert start_ms == ident["start"] and (folded.n, folded.sum_reward) == (1, 0.5)
    assert repos.buckets.load_segments("c", windows.cover(ident["start"], ident["start"] + windows.FINEST_MS))

    page = [row for p in repos.observations.pages(ts, ts + 3, component="c", page_size=2) for row in p]
    assert [doc_id for doc_id, _ in page] == ["o0", "o9", "o1", "o2"]


def test_each_shard_has_its_own_cursor_and_queue(repos: ports.Store) -> None:
    ts = NOW_MS - 60_000
    docs = [(f"s{i}", {"ts": ts, "component": "c", "outcome": "success", "durationMs": 10,
                       **({"shard": f"2-{i % 2}"} if i < 4 else {})}, True) for i in range(6)]
    repos.observations.insert(docs)
    upper = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    mine = repos.observations.after(Cursor(), upper, 10, shard="2-1")
    assert [o.doc_id for o in mine] == ["s1", "s3"] and mine[0].data["shard"] == "2-1"
    assert len(repos.observations.after(Cursor(), upper, 10)) == 6  # the global scanner sees every one
    assert repos.observations.backlog(Cursor(), upper, shard="2-0") == 2
    moved = Cursor(mine[-1].received_at, mine[-1].doc_id, {"c": ts})
    assert repos.observations.commit_chunk(Cursor(), moved, [], {}, shard="2-1")
    assert repos.observations.cursor("2-1").same_position(moved)
    assert repos.observations.cursor("2-0").received_at is None and repos.observations.cursor().received_at is None
    assert not repos.observations.commit_chunk(Cursor(), moved, [], {}, shard="2-1")  # its cursor moved


def test_past_observations_are_read_key_by_key_and_unkeyed_ones_stamped(repos: ports.Store) -> None:
    ts = NOW_MS - 60_000
    keys = ["1-0", "2-1", None, "2-1", None, "1-0"]
    docs = [(f"k{i}", {"ts": ts + (5 - i), "component": "c" if i % 2 else "d", "outcome": "success",
                       "durationMs": 10, **({"shard": key} if key else {})}, True) for i, key in enumerate(keys)]
    repos.observations.insert(docs)
    rows = [row for p in repos.observations.pages(ts, ts + 10, page_size=2, keys=["1-0", "2-1"]) for row in p]
    assert [doc_id for doc_id, _ in rows] == ["k5", "k3", "k1", "k0"]  # merged in (ts, id) order
    one = [row for p in repos.observations.pages(ts, ts + 10, "c", page_size=1, keys=["2-1"]) for row in p]
    assert [doc_id for doc_id, _ in one] == ["k3", "k1"]
    assert len([r for p in repos.observations.pages(ts, ts + 10) for r in p]) == 6  # unkeyed: every one

    first = repos.observations.stamp_unkeyed(None, 3, "0-0")  # k0 k1 k2
    assert first == StampPage("k2", 1, frozenset({1, 2}), False, 0)
    k2 = repos.observations.after(Cursor(), dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), 10, shard="0-0")[0]
    through = Cursor(k2.received_at, "k2")  # a legacy scanner's last position: k4 is after it (a later id)
    assert repos.observations.stamp_unkeyed("k2", 3, "0-0", through) == StampPage("k5", 1, frozenset({1, 2}),
                                                                                   False, 1)  # k3 k4 k5
    assert repos.observations.stamp_unkeyed("k5", 3, "0-0") == StampPage("k5", 0, frozenset(), True, 0)
    rows = [row for p in repos.observations.pages(ts, ts + 10, keys=["0-0"]) for row in p]
    assert sorted(doc_id for doc_id, _ in rows) == ["k2", "k4"]


def test_components_changed_since_and_due_by(repos: ports.Store) -> None:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    start = repos.observations.cursor()
    repos.observations.commit_chunk(start, Cursor(dt.datetime.now(dt.UTC), "x", {"a": NOW_MS, "b": NOW_MS}), [], {})
    assert repos.observations.changed_components(before) == {"a", "b"}
    assert repos.observations.changed_components(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) == set()
    repos.observations.set_stats_due({"a": 1_000, "b": 5_000, "c": None})
    assert repos.observations.due_components(1_000) == {"a"}
    assert repos.observations.due_components(9_999) == {"a", "b"}
    repos.observations.set_stats_due({"a": None})
    assert repos.observations.due_components(9_999) == {"b"}
    assert repos.observations.active_components(NOW_MS) == {"a": NOW_MS, "b": NOW_MS}  # untouched by due times


def test_the_oldest_bucket_of_a_level_in_a_range(repos: ports.Store) -> None:
    starts = [windows.bucket_start(NOW_MS, "5m") - k * windows.FINEST_MS for k in (2, 5)]
    deltas = {paths.bucket_id("c", "5m", t): ({"component": "c", "level": "5m", "start": t},
                                              Summary.of(reward=0.5, success=True, cost_usd=0.0, duration_ms=1.0))
              for t in starts}
    repos.observations.commit_chunk(repos.observations.cursor(), Cursor(dt.datetime.now(dt.UTC), "x", {}), [],
                                    deltas, "d")
    repos.buckets.fold_pending()
    assert repos.buckets.first_start("c", "5m", 0, NOW_MS + 1) == starts[1]
    assert repos.buckets.first_start("c", "5m", starts[1] + 1, NOW_MS + 1) == starts[0]
    assert repos.buckets.first_start("c", "1h", 0, NOW_MS + 1) is None
    assert repos.buckets.first_start("c", "5m", starts[0] + 1, NOW_MS + 1) is None


def test_a_run_document_changes_in_one_step_and_a_stamp_is_the_stores_time(repos: ports.Store) -> None:
    assert repos.runs.get("layout") is None
    assert repos.runs.change("layout", lambda doc: None) is None  # nothing to write
    assert repos.runs.change("layout", lambda doc: {"n": (doc or {}).get("n", 0) + 1}) == {"n": 1}
    assert repos.runs.change("layout", lambda doc: {"n": (doc or {}).get("n", 0) + 1}) == {"n": 2}
    assert repos.runs.change("layout", lambda doc: doc) == {"n": 2} == repos.runs.get("layout")
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    stamped = repos.runs.stamp("mark")
    assert before < stamped < dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)


def test_a_stats_document_is_replaced_only_by_a_newer_schedule(repos: ports.Store) -> None:
    sid = paths.stats_id("c", "1h")
    assert repos.stats.write({sid: {"component": "c", "ts": 2_000, "n": 2}}, 2_000, now=10_000) == 1
    assert repos.stats.write({sid: {"component": "c", "ts": 1_000, "n": 1}}, 1_000, now=10_000) == 0
    assert repos.stats.for_window(["c", "d"], "1h") == {"c": {"component": "c", "ts": 2_000, "n": 2}}
    # a stored time far beyond the clock (a bad --at) does not block the present
    far = 10_000 + windows.MAX_SCHEDULE_SKEW_MS + 1
    repos.stats.write({sid: {"component": "c", "ts": far, "n": 9}}, far, now=far)
    assert repos.stats.write({sid: {"component": "c", "ts": 3_000, "n": 3}}, 3_000, now=10_000) == 1
    assert [d["n"] for d in repos.stats.all("c")] == [3]


def test_a_lease_has_one_owner_until_released(repos: ports.Store) -> None:
    assert repos.runs.acquire_lease("score", "a", 60)
    assert not repos.runs.acquire_lease("score", "b", 60)
    assert repos.runs.acquire_lease("score", "a", 60)  # renewed by its owner
    repos.runs.release_lease("score", "b")  # not b's to release
    assert not repos.runs.acquire_lease("score", "b", 60)
    repos.runs.release_lease("score", "a")
    assert repos.runs.acquire_lease("score", "b", 60)


def test_drift_state_and_its_alerts_are_written_together(repos: ports.Store) -> None:
    tests = {"reward": {"statistic": 5.0, "p": 1e-6, "drifted": True}}
    raised = repos.drift.update("c", lambda state: drift_domain.advance_episodes("c", state, tests, NOW_MS))
    assert raised == ["reward"]
    assert repos.drift.get("c")["metrics"]["reward"]["drifting"] is True
    again = repos.drift.update("c", lambda state: drift_domain.advance_episodes("c", state, tests, NOW_MS + 1))
    assert again == []  # still drifting: nothing new
    assert set(repos.drift.get_many(["c", "d"])) == {"c"}
    assert [a["kind"] for a in repos.alerts.recent()] == ["drift"]


def test_skill_cards_and_their_marker(repos: ports.Store) -> None:
    assert repos.cards.refreshed_for() is None and repos.cards.all() == []
    assert repos.cards.write({"c": {"component": "c", "n": 1}, "d": {"component": "d", "n": 2}}, 3_600_000) == 2
    assert repos.cards.refreshed_for() == 3_600_000
    assert (repos.cards.get("c") or {})["n"] == 1 and repos.cards.get("x") is None
    assert sorted(c["component"] for c in repos.cards.all()) == ["c", "d"]


def test_a_missing_version_cannot_be_updated_or_transitioned(repos: ports.Store) -> None:
    create(repos, "1.0.0", "active")
    with pytest.raises(Exception, match=r"1\.0\.9|No document|not found|NOT_FOUND"):
        repos.policies.update("p", "1.0.9", {"estimate": 1})
    assert repos.policies.policy("p", "1.0.9") is None


def test_event_sources_in_time_order_and_the_ledger_creates_once(repos: ports.Store) -> None:
    repos.alerts.raise_once("b", {"kind": "drift", "ts": NOW_MS + 2})
    repos.alerts.raise_once("a", {"kind": "drift", "ts": NOW_MS + 1})
    repos.alerts.raise_once("old", {"kind": "drift", "ts": NOW_MS - 5})
    assert [i for i, _ in repos.alerts.since(NOW_MS, 10)] == ["a", "b"]
    assert [i for i, _ in repos.alerts.since(NOW_MS, 1)] == ["a"]
    create(repos, "1.0.1")
    [(doc_id, entry)] = repos.audit.since(0, 10)
    assert entry["action"] == "draft" and entry["to"] == "1.0.1" and doc_id
    assert repos.audit.since(int(entry["ts"]) + 1, 10) == []
    doc = {"id": "alert-a", "event": {"id": "alert-a"}, "status": "pending", "nextAttemptAt": NOW_MS, "attempts": 0}
    assert repos.events.add([doc, {**doc, "id": "alert-b", "nextAttemptAt": NOW_MS + 60_000}]) == ["alert-a", "alert-b"]
    assert repos.events.add([{**doc, "status": "delivered"}]) == []  # created once: the first one stays
    assert [d["id"] for d in repos.events.due(NOW_MS, 10)] == ["alert-a"]
    assert [d["id"] for d in repos.events.due(NOW_MS + 60_000, 10)] == ["alert-a", "alert-b"]
    repos.events.update("alert-a", {"status": "delivered", "sinks": {"pubsub": "delivered"}})
    assert repos.events.get("alert-a") == {**doc, "status": "delivered", "sinks": {"pubsub": "delivered"}}
    assert [d["id"] for d in repos.events.due(NOW_MS + 60_000, 10)] == ["alert-b"]
    assert repos.events.cursor() == {}
    repos.events.save_cursor({"auditTs": 5, "alertTs": 7})
    repos.events.save_cursor({"alertTs": 9})
    assert repos.events.cursor() == {"auditTs": 5, "alertTs": 9}
