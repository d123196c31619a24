"""Events out, for real: gcloud's Pub/Sub emulator and a local HTTP receiver, on the Firestore emulator."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.domain import events as ev
from opsloop.domain.drift import advance_episodes
from opsloop.services import events as delivery
from opsloop.services import scoring, tuning
from opsloop.services.record import record_batch
from opsloop.store.firestore_store import FirestoreStore
from opsloop.store.sinks import PubSubSink, WebhookSink
from scripts import emulator as emu_mod
from tests.helpers import PROJECT

pytestmark = pytest.mark.emulator

NOW = dt.datetime.now(dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture(scope="module")
def pubsub() -> Iterator[str]:
    """gcloud's Pub/Sub emulator (platform/pubsub-emulator under the SDK root); yields HOST:PORT."""
    sdk = emu_mod.find_jar().resolve().parents[2]
    binary = sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    assert binary.exists(), "the Pub/Sub emulator: gcloud components install pubsub-emulator"
    port = emu_mod.free_port()
    log = open(Path(__file__).resolve().parents[2] / ".emulator-logs" / f"pubsub-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(binary), "--host=127.0.0.1", f"--port={port}"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    try:
        emu_mod.wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
        log.close()


def topic(name: str, subscription: str) -> Any:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    publisher, subscriber = PublisherClient(), SubscriberClient()
    path = publisher.topic_path(PROJECT, name)
    publisher.create_topic(name=path)
    sub = subscriber.subscription_path(PROJECT, subscription)
    subscriber.create_subscription(name=sub, topic=path)
    return subscriber, sub


def pull(subscriber: Any, sub: str, want: int) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + 20
    while len(got) < want and time.monotonic() < deadline:
        response = subscriber.pull(subscription=sub, max_messages=50, timeout=5)
        got += [m.message for m in response.received_messages]
        if response.received_messages:
            subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in response.received_messages])
    time.sleep(0.5)  # and nothing more arrives
    response = subscriber.pull(subscription=sub, max_messages=50, timeout=2)
    return got + [m.message for m in response.received_messages]


class Receiver:
    """A local webhook: answers with the statuses queued (200 once they run out), or hangs."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.hang_s = 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.hang_s:
                    time.sleep(outer.hang_s)
                status = outer.statuses.pop(0) if outer.statuses else 200
                if status == 200:
                    outer.bodies.append(body)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def draft_and_drift(store: FirestoreStore) -> None:
    """A tuner's draft waiting for an admin, and a drift alert: what the loop itself writes."""
    items = [{"component": "router:gpt-5", "outcome": "failure", "durationMs": 5000, "ts": NOW_MS - 60_000 + i}
             for i in range(120)]
    items += [{"component": "router:gemini", "outcome": "success", "durationMs": 400, "costUsd": 0.01,
               "ts": NOW_MS - 60_000 + i} for i in range(60)]
    record_batch(store, {"observations": items})
    scoring.score_observations(store, NOW)
    assert [o.action for o in tuning.auto_tune(store, NOW).outcomes] == ["drafted"]
    tests = {"p95Latency": {"drifted": True, "statistic": "ks", "p": 0.0001}}
    assert store.drift.update("router:gpt-5", lambda st: advance_episodes("router:gpt-5", st, tests, NOW_MS)) == [
        "p95Latency"]


def sinks_for(store: FirestoreStore, url: str | None) -> Any:
    def make(cfg: Any) -> list[Any]:
        out: list[Any] = [PubSubSink(PROJECT, cfg.topic, timeout_s=10)] if cfg.topic else []
        return out + ([WebhookSink(url, cfg.webhook_timeout_s)] if url else [])

    return make


def test_drafts_and_drift_reach_pubsub_as_cloudevents_and_the_webhook_as_slack_text(
    seeded: FirestoreStore, pubsub: str, receiver: Receiver,
) -> None:
    subscriber, sub = topic("opsloop-events", "ops-team")
    seeded.configs.set("events", {"topic": "opsloop-events", "webhookUrl": receiver.url})
    draft_and_drift(seeded)
    result = delivery.deliver(seeded, sinks_for(seeded, receiver.url), NOW + dt.timedelta(seconds=5))
    assert (result.found, result.delivered, result.errors) == (2, 2, {})
    messages = pull(subscriber, sub, 2)
    by_type = {m.attributes["ce-type"]: m for m in messages}
    assert sorted(by_type) == sorted([ev.DRAFT, ev.DRIFT]) and len(messages) == 2
    draft = by_type[ev.DRAFT]
    assert draft.attributes["ce-specversion"] == "1.0" and draft.attributes["ce-source"] == "//opsloop"
    assert draft.attributes["ce-subject"] == "router-core" and draft.attributes["ce-id"].startswith("audit-")
    assert json.loads(draft.data)["to"] == "1.0.1"
    assert json.loads(by_type[ev.DRIFT].data)["metric"] == "p95Latency"
    texts = sorted(b["text"] for b in receiver.bodies)
    assert len(texts) == 2 and any("waiting for an admin" in t for t in texts) and any("drifted" in t for t in texts)
    assert {b["cloudevent"]["id"] for b in receiver.bodies} == {m.attributes["ce-id"] for m in messages}
    # the next minute's run finds nothing new and sends nothing again
    again = delivery.deliver(seeded, sinks_for(seeded, receiver.url), NOW + dt.timedelta(minutes=1))
    assert (again.found, again.delivered) == (0, 0)
    assert pull(subscriber, sub, 0) == [] and len(receiver.bodies) == 2


def test_a_missing_topic_and_a_failing_or_hanging_webhook_are_retried_recorded_and_told_once(
    seeded: FirestoreStore, pubsub: str, receiver: Receiver,
) -> None:
    seeded.configs.set("events", {"topic": "not-yet", "webhookUrl": receiver.url, "webhookTimeoutS": 1})
    draft_and_drift(seeded)
    receiver.statuses = [500]
    first = delivery.deliver(seeded, sinks_for(seeded, receiver.url), NOW + dt.timedelta(seconds=5))
    assert first.retried == 1 and first.delivered == 0
    assert "NotFound" in first.errors["pubsub"] and "HTTP 500" in first.errors["webhook"]
    sink_alerts = {a["sink"]: a for a in seeded.alerts.recent() if a.get("kind") == "event_sink"}
    assert set(sink_alerts) == {"pubsub", "webhook"} and sink_alerts["pubsub"]["count"] == 1
    pending = [s.to_dict() for s in seeded.db.collection("ops_events").stream()]
    assert sorted(d["attempts"] for d in pending) == [0, 1] and all(d["status"] == "pending" for d in pending)

    # the topic appears; the webhook now hangs past its timeout: Pub/Sub gets each event once
    subscriber, sub = topic("not-yet", "late")
    receiver.hang_s = 2.0
    second = delivery.deliver(seeded, sinks_for(seeded, receiver.url), NOW + dt.timedelta(minutes=2))
    assert "did not answer" in second.errors["webhook"] and "pubsub" not in second.errors
    receiver.hang_s = 0.0
    third = delivery.deliver(seeded, sinks_for(seeded, receiver.url), NOW + dt.timedelta(minutes=10))
    assert third.errors == {}
    assert all(s.to_dict()["status"] == "delivered" for s in seeded.db.collection("ops_events").stream())
    assert len(pull(subscriber, sub, 2)) == 2  # exactly one message per event
    # the hanging receiver took the event after the sender gave up: it arrives again, with the same id
    assert {b["cloudevent"]["type"] for b in receiver.bodies} == {ev.DRAFT, ev.DRIFT}
    assert len({b["cloudevent"]["id"] for b in receiver.bodies}) == 2 < len(receiver.bodies)
    sink_alerts = {a["sink"]: a for a in seeded.alerts.recent() if a.get("kind") == "event_sink"}
    assert sink_alerts["pubsub"]["count"] == 1 and sink_alerts["webhook"]["count"] == 2  # one entry per sink
    # the delivery's own alerts never became events
    assert not [s.id for s in seeded.db.collection("ops_events").stream() if "events~sink" in s.id]


def test_bad_events_config_alerts_and_the_last_good_one_is_used(seeded: FirestoreStore, receiver: Receiver) -> None:
    seeded.configs.set("events", {"topic": None, "webhookUrl": receiver.url})
    seeded.alerts.raise_once("failure~x", {"kind": "item_failed", "job": "scoreObservations", "item": "chunk",
                                           "error": "boom", "ts": NOW_MS})
    assert delivery.deliver(seeded, sinks_for(seeded, receiver.url), NOW).delivered == 1
    seeded.configs.set("events", {"topic": "bad topic", "webhookUrl": receiver.url})
    seeded.alerts.raise_once("failure~y", {"kind": "item_failed", "job": "evaluateRollouts", "item": "r",
                                           "error": "boom", "ts": NOW_MS + 1})
    result = delivery.deliver(seeded, sinks_for(seeded, receiver.url), NOW + dt.timedelta(minutes=1))
    # the invalid document is an alert (itself an event), the last good config still delivers
    assert result.delivered == 2 and result.errors == {}
    types = [b["cloudevent"]["type"] for b in receiver.bodies]
    assert types.count(ev.RUN_FAILED) == 2 and types.count(ev.CONFIG_INVALID) == 1
