"""Reporter against the real write path: a refused observation costs only itself; meta keys are scrubbed."""

from __future__ import annotations

from typing import Any

import pytest

from opsloop.services.record import record_batch
from opsloop.services.reporter import HttpSink, Reporter, Sink, StoreSink
from opsloop.store.firestore_store import FirestoreStore
from tests.helpers import emulator_token

pytestmark = pytest.mark.emulator

SERVICE = emulator_token("router-svc", role="service")
EMAIL, PHONE = "[redacted:email]", "[redacted:phone]"


class Stricter:
    """A backend stricter than this client (say, a newer server): it refuses ``durationMs`` of 13."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.sizes: list[int] = []

    def send(self, batch: list[dict[str, Any]]) -> None:
        self.sizes.append(len(batch))
        self.sink.send([{**o, "durationMs": -1} if o["durationMs"] == 13 else o for o in batch])


def report_100_with_one_refused(sink: Sink) -> Reporter:
    reporter = Reporter(sink, batch_size=100, flush_interval_s=60)
    for i in range(100):
        assert reporter.report(component="router:gpt-5", outcome="success", durationMs=13 if i == 3 else 200 + i,
                               id=f"obs-{i}")
    reporter.close()
    return reporter


def test_store_sink_one_refused_observation_does_not_lose_the_other_99(seeded: FirestoreStore) -> None:
    sink = Stricter(StoreSink(seeded))
    reporter = report_100_with_one_refused(sink)
    assert sink.sizes == [100, 99]
    assert reporter.stats.sent == 99 and reporter.stats.rejected == 1 and reporter.stats.failed == 0
    assert seeded.count("ops_observations") == 99
    assert not seeded.db.collection("ops_observations").document("obs-3").get().exists


@pytest.mark.e2e
def test_http_sink_one_refused_observation_does_not_lose_the_other_99(server: str, seeded: FirestoreStore) -> None:
    sink = Stricter(HttpSink(f"{server}/recordObservation", token=lambda: SERVICE))
    reporter = report_100_with_one_refused(sink)
    assert sink.sizes == [100, 99]
    assert reporter.stats.sent == 99 and reporter.stats.rejected == 1 and reporter.stats.failed == 0
    assert seeded.count("ops_observations") == 99


def test_meta_keys_are_scrubbed_and_colliding_ones_all_stored(seeded: FirestoreStore) -> None:
    meta = {"jane.doe@example.com": 1, "john@example.com": {"plan": "pro"}, "region": "eu",
            "calls": [{"+1 415 555 2671": "mobile"}]}
    record_batch(seeded, {"component": "router:gpt-5", "outcome": "success", "durationMs": 12, "id": "pii-keys",
                          "meta": meta})
    stored = seeded.db.collection("ops_observations").document("pii-keys").get().to_dict()
    assert stored["meta"] == {EMAIL: 1, f"{EMAIL}~2": {"plan": "pro"}, "region": "eu", "calls": [{PHONE: "mobile"}]}
    assert stored["redactions"] == {"email": 2, "phone": 1}


@pytest.mark.e2e
def test_http_sink_sends_feedback_to_record_feedback_and_peels_an_unknown_observation(
        server: str, seeded: FirestoreStore) -> None:
    reporter = Reporter(HttpSink(f"{server}/recordObservation", token=lambda: SERVICE), batch_size=50,
                        flush_interval_s=60)
    for i in range(5):
        reporter.report(component="router:gpt-5", outcome="success", durationMs=100 + i, id=f"late-{i}")
        reporter.feedback(f"late-{i}", {"judge": i}, feedback_id=f"fb-{i}")
    reporter.feedback("not-there", {"judge": 1}, feedback_id="fb-x")
    reporter.close()
    s = reporter.stats
    assert (s.sent, s.feedback_sent, s.feedback_failed) == (5, 5, 1)
    assert seeded.count("ops_feedback") == 5
    assert seeded.db.collection("ops_observations").document("late-4").get().to_dict()["metrics"] == {"judge": 4}
