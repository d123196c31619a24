"""The loop's events: which records become which CloudEvents, and the delivery on the in-memory store."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from opsloop.domain import events as ev
from opsloop.domain.config import EventsSettings, Settings
from opsloop.services import events as delivery
from opsloop.services.learning import LOOP_ACTORS
from tests.fakes import MemoryStore

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
UPDATER = LOOP_ACTORS[0]


def audit(action: str, actor: str = "uid-1", **kw: Any) -> dict[str, Any]:
    return {"ts": NOW_MS - 1000, "action": action, "actor": actor, "id": "router-core", "from": "1.0.0",
            "to": "1.0.1", **kw}


def test_promotions_safety_rollbacks_and_the_loops_waiting_drafts_are_events() -> None:
    def draft_(pid: str, version: str) -> bool:
        return version == "1.0.1"

    def gone(pid: str, version: str) -> bool:
        return False

    promoted = ev.from_audit("a1", audit("promote", actorEmail="alice@example.com"), LOOP_ACTORS, draft_)
    assert promoted is not None and (promoted.id, promoted.type, promoted.subject) == (
        "audit-a1", ev.PROMOTED, "router-core")
    assert "alice@example.com" in promoted.summary and promoted.data["to"] == "1.0.1"
    rolled = ev.from_audit("a2", audit("canary_rollback", actor="rollout-controller", reason="p95 up 40 %"),
                           LOOP_ACTORS, draft_)
    assert rolled is not None and rolled.type == ev.SAFETY_ROLLBACK and "p95 up 40 %" in rolled.summary
    draft = ev.from_audit("a3", audit("draft", actor=UPDATER), LOOP_ACTORS, draft_)
    assert draft is not None and draft.type == ev.DRAFT
    # a draft already activated, shadowed or canaried (by an admin, or by the loop itself) waits for nobody;
    # an admin's own drafts are not news to her
    assert ev.from_audit("a3", audit("draft", actor=UPDATER), LOOP_ACTORS, gone) is None
    assert ev.from_audit("a4", audit("draft", actor="test"), LOOP_ACTORS, draft_) is None
    for action in ("activate", "rollback", "seed", "shadow", "canary", "reject", "set_flags"):
        assert ev.from_audit("a5", audit(action), LOOP_ACTORS, draft_) is None
    assert ev.from_audit("a6", {**audit("promote"), "ts": None}, LOOP_ACTORS, draft_) is None


def test_drift_config_failure_and_srm_alerts_are_events_but_the_deliverys_own_alerts_are_not() -> None:
    drift = ev.from_alert("router:gpt-5~p95Latency~1", {"kind": "drift", "component": "router:gpt-5",
                                                        "metric": "p95Latency", "statistic": "ks", "p": 1e-5,
                                                        "ts": NOW_MS})
    assert drift is not None and (drift.type, drift.subject) == (ev.DRIFT, "router:gpt-5")
    config = ev.from_alert("config~x", {"kind": "config", "path": "config/tuning", "message": "bad", "ts": NOW_MS})
    assert config is not None and config.type == ev.CONFIG_INVALID
    failed = ev.from_alert("failure~1", {"kind": "item_failed", "job": "scoreObservations", "item": "x",
                                         "error": "E", "ts": NOW_MS, "count": 3})
    assert failed is not None and failed.type == ev.RUN_FAILED and "count" not in failed.data
    srm = ev.from_alert("srm~r", {"kind": "srm", "id": "router-core", "version": "1.0.1", "srmP": 1e-4, "ts": NOW_MS})
    assert srm is not None and srm.type == ev.SRM
    for kind in ev.DELIVERY_ALERTS:
        assert ev.from_alert("x", {"kind": kind, "ts": NOW_MS}) is None
    assert ev.from_alert("x", {"kind": "drift", "ts": "yesterday"}) is None


def test_the_pubsub_message_is_a_binary_mode_cloudevent_and_the_webhook_is_slack_compatible() -> None:
    event = ev.Event("audit-a1", ev.PROMOTED, "router-core", NOW_MS, "router-core 1.0.1 promoted", {"to": "1.0.1"})
    data, attributes = event.pubsub()
    assert json.loads(data) == {"to": "1.0.1"}
    assert attributes == {"ce-specversion": "1.0", "ce-id": "audit-a1", "ce-source": "//opsloop",
                          "ce-type": ev.PROMOTED, "ce-subject": "router-core", "ce-time": "2026-12-03T12:00:00.000Z",
                          "content-type": "application/json"}
    hook = event.webhook()
    assert hook["text"] == "[opsloop] router-core 1.0.1 promoted"
    assert hook["cloudevent"]["specversion"] == "1.0" and hook["cloudevent"]["data"] == {"to": "1.0.1"}
    assert ev.Event.from_doc(event.to_doc()) == event


def test_backoff_doubles_from_a_minute_up_to_an_hour() -> None:
    waits = [ev.next_attempt_ms(0, n) for n in range(1, 10)]
    assert waits == [60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000, 3_600_000]


class FakeSink:
    def __init__(self, name: str, fail: int = 0, error: str = "down") -> None:
        self.name, self.fail, self.error = name, fail, error
        self.sent: list[str] = []
        self.calls = 0

    def send(self, event: ev.Event) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError(self.error)
        self.sent.append(event.id)


def settings(**kw: Any) -> Settings:
    return Settings(events=EventsSettings(**kw))


def run(store: MemoryStore, sinks: list[FakeSink], at: dt.datetime = NOW, **kw: Any) -> delivery.DeliveryResult:
    return delivery.deliver(store, lambda cfg: list(sinks), at, loaded=settings(**kw))


def seed_records(store: MemoryStore) -> None:
    store.shared.audit["a1"] = audit("promote")
    store.shared.audit["a2"] = audit("activate")
    store.shared.alerts["router~p95~1"] = {"kind": "drift", "component": "router", "metric": "p95", "statistic": "ks",
                                           "p": 0.001, "ts": NOW_MS - 500}


def test_each_event_is_sent_once_to_each_sink_even_when_its_records_are_read_again() -> None:
    store = MemoryStore()
    seed_records(store)
    pubsub, hook = FakeSink("pubsub"), FakeSink("webhook")
    first = run(store, [pubsub, hook])
    assert (first.found, first.delivered) == (2, 2)
    assert sorted(pubsub.sent) == sorted(hook.sent) == ["alert-router~p95~1", "audit-a1"]
    store.shared.alerts["router~p95~1"]["ts"] = NOW_MS + 10  # refreshed: read again, not told again
    again = run(store, [pubsub, hook], NOW + dt.timedelta(minutes=1))
    assert (again.found, again.delivered) == (0, 0) and len(pubsub.sent) == 2
    assert store.events.get("audit-a1")["status"] == "delivered"  # type: ignore[index]


def test_a_failing_sink_is_retried_with_backoff_alone_and_told_once_per_sink() -> None:
    store = MemoryStore()
    seed_records(store)
    pubsub, hook = FakeSink("pubsub"), FakeSink("webhook", fail=1, error="HTTP 500")
    first = run(store, [pubsub, hook])
    assert first.retried == 1 and first.errors == {"webhook": "RuntimeError: HTTP 500"}
    assert hook.calls == 1  # the second event did not hit the sink that failed this run, and lost no attempt
    assert len(pubsub.sent) == 2
    docs = {d["id"]: d for d in store.events.docs.values()}
    failed = next(d for d in docs.values() if d["attempts"] == 1 and d["status"] == "pending")
    assert failed["sinks"] == {"pubsub": "delivered", "webhook": "pending"}
    assert failed["nextAttemptAt"] == NOW_MS + 60_000
    other = next(d for d in docs.values() if d is not failed)
    assert other["attempts"] == 0 and other["status"] == "pending" and other["sinks"]["webhook"] == "pending"
    assert store.shared.alerts["events~sink~webhook"]["count"] == 1
    # next minute: the webhook works; Pub/Sub is not sent anything twice
    later = run(store, [pubsub, hook], NOW + dt.timedelta(minutes=1))
    assert later.delivered == 2 and len(pubsub.sent) == 2 and len(hook.sent) == 2
    assert store.shared.alerts["events~sink~webhook"]["count"] == 1


def test_after_the_last_attempt_an_event_is_dead_lettered_in_the_alerts_and_not_an_event_itself() -> None:
    store = MemoryStore()
    store.shared.audit["a1"] = audit("promote")
    hook = FakeSink("webhook", fail=100)
    at = NOW
    for _ in range(3):
        result = run(store, [hook], at, max_attempts=3)
        at += dt.timedelta(hours=1)
    assert result.dead == 1 and hook.calls == 3
    dead = store.events.get("audit-a1")
    assert dead is not None and dead["status"] == "dead" and dead["attempts"] == 3
    letter = store.shared.alerts["event-undelivered~audit-a1"]
    assert letter["kind"] == "event_undelivered" and letter["type"] == ev.PROMOTED
    assert run(store, [hook], at, max_attempts=3).found == 0 and hook.calls == 3


def test_events_that_are_not_due_wait_and_a_removed_sink_is_skipped() -> None:
    store = MemoryStore()
    store.shared.audit["a1"] = audit("promote")
    hook = FakeSink("webhook", fail=1)
    run(store, [FakeSink("pubsub"), hook])
    assert run(store, [FakeSink("pubsub"), hook], NOW + dt.timedelta(seconds=30)).delivered == 0  # not due yet
    without = run(store, [FakeSink("pubsub")], NOW + dt.timedelta(minutes=2))
    assert without.delivered == 1
    assert store.events.get("audit-a1")["sinks"] == {"pubsub": "delivered", "webhook": "skipped"}  # type: ignore[index]


def test_a_new_deployment_does_not_replay_history_and_disabled_delivery_does_nothing() -> None:
    store = MemoryStore()
    store.shared.audit["old"] = {**audit("promote"), "ts": NOW_MS - 3_600_000}
    store.shared.audit["new"] = audit("promote")
    sink = FakeSink("pubsub")
    assert run(store, [sink], enabled=False).enabled is False and sink.calls == 0
    run(store, [sink])
    assert sink.sent == ["audit-new"]


def test_one_delivery_at_a_time() -> None:
    store = MemoryStore()
    assert store.runs.acquire_lease(delivery.LEASE, "someone-else", 60)
    assert run(store, [FakeSink("pubsub")]).lease_acquired is False


@pytest.mark.parametrize("doc", [{"topic": "a b"}, {"webhookUrl": "ftp://x"}, {"maxAttempts": 0},
                                 {"webhookTimeoutS": 0}, {"topic": 5}])
def test_bad_events_config_is_refused_naming_its_field(doc: dict[str, Any]) -> None:
    from opsloop.domain import config
    from opsloop.domain.config import ConfigInvalid

    with pytest.raises(ConfigInvalid) as err:
        config.parse("events", doc)
    assert next(iter(doc)) in str(err.value)
