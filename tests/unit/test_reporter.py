"""The component-side reporter: batching, bounded queue, no loss on close, sampling weights."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from opsloop.domain.errors import InvalidArgument
from opsloop.domain.observation import InvalidBatch, parse_batch
from opsloop.services.reporter import HttpSink, Reporter


class FakeSink:
    def __init__(self, delay: float = 0.0, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.delay, self.fail, self.gate = delay, fail, gate

    def send(self, batch: list[dict[str, Any]]) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("backend down")
        self.batches.append(batch)

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [o for b in self.batches for o in b]


def obs(outcome: str = "success", **kw: Any) -> dict[str, Any]:
    return {"component": "svc", "outcome": outcome, "durationMs": 10.0, **kw}


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_full_batches_go_out_without_waiting_for_the_interval() -> None:
    sink = FakeSink()
    r = Reporter(sink, batch_size=10, flush_interval_s=60)
    for i in range(25):
        r.report(**obs(meta={"n": i}))
    wait_for(lambda: len(sink.sent) >= 20)
    assert [len(b) for b in sink.batches[:2]] == [10, 10]
    r.close()
    assert len(sink.sent) == 25 and [o["meta"]["n"] for o in sink.sent] == list(range(25))


def test_a_partial_batch_goes_out_after_the_interval() -> None:
    sink = FakeSink()
    r = Reporter(sink, batch_size=100, flush_interval_s=0.1)
    r.report(**obs())
    wait_for(lambda: len(sink.sent) == 1, timeout=2)
    r.close()


def test_close_sends_everything_queued_and_ids_make_retries_idempotent() -> None:
    sink = FakeSink(delay=0.01)
    r = Reporter(sink, batch_size=50, flush_interval_s=60)
    for _ in range(1234):
        r.report(**obs())
    r.close()
    assert len(sink.sent) == 1234 and r.stats.sent == 1234 and r.stats.dropped == 0
    assert len({o["id"] for o in sink.sent}) == 1234 and all(isinstance(o["ts"], int) for o in sink.sent)
    with pytest.raises(RuntimeError):
        r.report(**obs())


def test_the_queue_is_bounded_and_overflow_is_counted() -> None:
    gate = threading.Event()
    sink = FakeSink(gate=gate)
    r = Reporter(sink, batch_size=5, flush_interval_s=0.01, max_queue=20, block_s=0.01)
    accepted = sum(r.report(**obs()) for _ in range(100))
    assert r.stats.dropped == 100 - accepted and accepted <= 20 + 5  # queue + one batch in flight
    gate.set()
    r.close()
    assert len(sink.sent) == accepted


def test_successes_are_sampled_with_weights_and_failures_always_kept() -> None:
    sink = FakeSink()
    r = Reporter(sink, batch_size=500, flush_interval_s=60, success_sample_rate=0.1, rng=random.Random(5))
    for i in range(20_000):
        r.report(**obs("success" if i % 5 else "failure"))
    r.close()
    kept = sink.sent
    failures = [o for o in kept if o["outcome"] == "failure"]
    successes = [o for o in kept if o["outcome"] == "success"]
    assert len(failures) == 4000 and all("weight" not in o for o in failures)
    assert abs(len(successes) - 1600) < 120 and all(o["weight"] == pytest.approx(10.0) for o in successes)
    estimated = len(failures) + sum(o["weight"] for o in successes)
    assert abs(estimated - 20_000) / 20_000 < 0.08
    assert r.stats.sampled_out + len(kept) == r.stats.reported == 20_000


def test_a_failing_backend_is_reported_not_raised() -> None:
    errors: list[BaseException] = []
    r = Reporter(FakeSink(fail=True), batch_size=2, flush_interval_s=60, on_error=lambda e, b: errors.append(e))
    r.report(**obs())
    r.report(**obs())
    r.close()
    assert r.stats.failed_batches == 1 and isinstance(errors[0], ConnectionError)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 501}, {"success_sample_rate": 0},
                                    {"success_sample_rate": 1.5}, {"max_queue": 5, "batch_size": 10},
                                    {"success_sample_rate": 1e-7}])  # weight 10^7: above the server's 10^6
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Reporter(FakeSink(), **kwargs)


# ------------------------------------------------------------------ validation and partial rejection
class ServerLikeSink:
    """Answers like recordObservation / StoreSink: the server's parse path, all or nothing per batch.

    ``stricter`` stands for a server that refuses what this client let through (a newer server, a clock
    that disagrees): the observations it names are refused with a field error at their index.
    """

    def __init__(self, stricter: Callable[[dict[str, Any]], bool] = lambda o: False) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.delivered: list[dict[str, Any]] = []
        self.stricter = stricter

    def send(self, batch: list[dict[str, Any]]) -> None:
        self.calls.append(list(batch))
        errors: list[dict[str, str]] = []
        try:
            parse_batch({"observations": batch}, int(time.time() * 1000))
        except InvalidBatch as exc:
            errors = [e.model_dump() for e in exc.errors]
        errors += [{"field": f"observations.{i}.durationMs", "message": "stricter server"}
                   for i, o in enumerate(batch) if self.stricter(o)]
        if errors:
            raise InvalidArgument(f"{len(errors)} invalid field(s)", {"errors": errors})
        self.delivered.extend(batch)


def test_one_observation_the_server_refuses_does_not_lose_the_other_99() -> None:
    sink = ServerLikeSink(stricter=lambda o: o.get("errorCode") == "refused")
    rejected: list[tuple[BaseException, list[dict[str, Any]]]] = []
    r = Reporter(sink, batch_size=100, flush_interval_s=60, on_error=lambda e, b: rejected.append((e, b)))
    accepted = [r.report(**obs(errorCode="refused" if i == 3 else None, meta={"i": i})) for i in range(100)]
    r.close()
    assert all(accepted)
    assert sorted(o["meta"]["i"] for o in sink.delivered) == [i for i in range(100) if i != 3]
    assert [len(c) for c in sink.calls] == [100, 99]  # the valid rest is sent again, once
    assert r.stats.sent == 99 and r.stats.rejected == 1 and r.stats.failed == 0 and r.stats.failed_batches == 0
    (exc, items), = rejected
    assert isinstance(exc, InvalidArgument) and [o["meta"]["i"] for o in items] == [3]


def test_the_rest_is_resent_only_once() -> None:
    sink = ServerLikeSink(stricter=lambda o: o["meta"]["i"] % 10 == 0 or len(sink.calls) > 1)
    r = Reporter(sink, batch_size=20, flush_interval_s=60)
    for i in range(20):
        r.report(**obs(meta={"i": i}))
    r.close()
    assert [len(c) for c in sink.calls] == [20, 18] and sink.delivered == []
    assert r.stats.rejected == 2 and r.stats.failed == 18 and r.stats.failed_batches == 1 and r.stats.sent == 0


def test_a_refusal_that_names_no_item_fails_the_batch_and_counts_it() -> None:
    class Refuses:
        calls = 0

        def send(self, batch: list[dict[str, Any]]) -> None:
            Refuses.calls += 1
            raise InvalidArgument("body is not valid JSON")

    r = Reporter(Refuses(), batch_size=10, flush_interval_s=60)
    for _ in range(10):
        r.report(**obs())
    r.close()
    assert Refuses.calls == 1 and r.stats.failed == 10 and r.stats.failed_batches == 1 and r.stats.rejected == 0


def test_a_repeated_client_id_does_not_sink_its_batch() -> None:
    # the server refuses a batch holding one id twice; the reporter sends the repeat in a batch of its own,
    # where the server answers it as a duplicate of what it already stored
    sink = ServerLikeSink()
    r = Reporter(sink, batch_size=10, flush_interval_s=60)
    for i in range(10):
        r.report(**obs(id="retry-1" if i in (2, 7) else f"obs-{i}"))
    r.close()
    assert [len(c) for c in sink.calls] == [9, 1] and len(sink.delivered) == 10 and r.stats.sent == 10


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (obs(durationMs=-1), "durationMs"),
        (obs(component="router gpt 5"), "component"),
        (obs(propensity=2), "propensity"),
        (obs(outcome="exploded"), "outcome"),
        (obs(durationMs=float("nan")), "durationMs"),
        (obs(tokensIn=1.5), "tokensIn"),
        (obs(policyVersion="router-core@v1"), "policyVersion"),
        (obs(meta={"blob": "x" * 5000}), "meta"),
        (obs(n=1), "n"),
        ({"component": "svc", "outcome": "success"}, "durationMs"),
        (obs(id="__reserved__"), "id"),
        (obs(weight=0.5), "weight"),
        (obs(ts="10 minutes ahead"), "ts"),  # computed when the test runs, not when it is collected
    ],
)
def test_report_refuses_an_observation_the_server_would_refuse(fields: dict[str, Any], field: str) -> None:
    if fields.get("ts") == "10 minutes ahead":
        fields = {**fields, "ts": now_ms() + 10 * 60_000}
    sink = ServerLikeSink()
    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    r = Reporter(sink, batch_size=10, flush_interval_s=0.01, on_error=lambda e, b: errors.append((e, b)))
    assert r.report(**fields) is False
    r.close()
    assert sink.calls == []
    assert r.stats.invalid == 1 and r.stats.queued == 0 and r.stats.sent == 0
    (exc, items), = errors
    assert isinstance(exc, InvalidArgument) and items[0]["component"] == fields["component"]
    assert field in {e["field"] for e in exc.details["errors"]}


def test_a_timestamp_a_little_ahead_is_accepted_like_the_server_does() -> None:
    sink = ServerLikeSink()
    r = Reporter(sink, batch_size=10, flush_interval_s=60)
    assert r.report(**obs(ts=now_ms() + 4 * 60_000))
    r.close()
    assert len(sink.delivered) == 1


def test_invalid_successes_are_refused_before_sampling() -> None:
    r = Reporter(ServerLikeSink(), success_sample_rate=0.1, rng=random.Random(1))
    assert not any(r.report(**obs(durationMs=-5)) for _ in range(50))
    r.close()
    assert r.stats.invalid == 50 and r.stats.sampled_out == 0


def test_every_reported_observation_is_accounted_for() -> None:
    sink = ServerLikeSink(stricter=lambda o: o["meta"]["i"] % 97 == 0)
    r = Reporter(sink, batch_size=50, flush_interval_s=60, success_sample_rate=0.5, rng=random.Random(3))
    for i in range(1000):
        r.report(**obs("success" if i % 3 else "failure", durationMs=-1 if i % 101 == 0 else 5, meta={"i": i}))
    r.close()
    s = r.stats
    assert s.reported == 1000 == s.invalid + s.sampled_out + s.dropped + s.queued
    assert s.queued == s.sent + s.rejected + s.failed and s.invalid == 10 and s.rejected > 0
    assert len(sink.delivered) == s.sent


def test_the_caller_s_dict_is_not_modified() -> None:
    fields = obs(meta={"k": 1})
    r = Reporter(ServerLikeSink(), success_sample_rate=0.5, rng=random.Random(0))
    for _ in range(5):
        r.report(**fields)
    r.close()
    assert fields == obs(meta={"k": 1})


# ------------------------------------------------------------------ HttpSink: a 400 names the bad items
def response(status: int, body: Any) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.headers["Content-Type"] = "application/json"
    return resp


class FakeServer:
    """Stands in for requests.Session.post against recordObservation: 400 with field errors, else 201."""

    def __init__(self, bad: Callable[[dict[str, Any]], bool]) -> None:
        self.bodies: list[list[dict[str, Any]]] = []
        self.bad = bad

    def post(self, url: str, json: Any, timeout: float, headers: dict[str, str]) -> requests.Response:
        batch = json["observations"]
        self.bodies.append(batch)
        errors = [{"field": f"observations.{i}.durationMs", "message": "Input should be greater than or equal to 0"}
                  for i, o in enumerate(batch) if self.bad(o)]
        if errors:
            return response(400, {"error": {"code": "INVALID_ARGUMENT", "message": f"{len(errors)} invalid field(s)",
                                            "details": {"code": "E_LEARN_INVALID_ARGUMENT", "errors": errors}}})
        return response(201, {"ids": [o["id"] for o in batch], "created": len(batch), "duplicates": []})


def http_sink(server: FakeServer) -> HttpSink:
    sink = HttpSink("http://functions.test/recordObservation", token=lambda: "t", attempts=1)
    sink._session = server  # type: ignore[assignment]
    return sink


def test_http_sink_raises_invalid_argument_with_the_server_s_field_errors() -> None:
    sink = http_sink(FakeServer(bad=lambda o: o["meta"]["i"] == 1))
    with pytest.raises(InvalidArgument) as info:
        sink.send([obs(id="a", meta={"i": 0}), obs(id="b", meta={"i": 1})])
    assert info.value.details["errors"][0]["field"] == "observations.1.durationMs"


@pytest.mark.parametrize(("status", "body"), [(401, {"error": {"code": "UNAUTHENTICATED"}}), (413, "too large")])
def test_http_sink_raises_http_errors_for_other_refusals(status: int, body: Any) -> None:
    sink = HttpSink("http://functions.test/recordObservation", token=lambda: "t", attempts=1)
    sink._session = type("S", (), {"post": lambda self, *a, **k: response(status, body)})()  # type: ignore[assignment]
    with pytest.raises(requests.HTTPError):
        sink.send([obs(id="a")])


def test_over_http_one_refused_observation_does_not_lose_the_other_99() -> None:
    server = FakeServer(bad=lambda o: o["meta"]["i"] == 42 and len(server.bodies) == 1)
    r = Reporter(http_sink(server), batch_size=100, flush_interval_s=60)
    for i in range(100):
        r.report(**obs(meta={"i": i}))
    r.close()
    assert [len(b) for b in server.bodies] == [100, 99] and 42 not in {o["meta"]["i"] for o in server.bodies[1]}
    assert r.stats.sent == 99 and r.stats.rejected == 1 and r.stats.failed_batches == 0


class FeedbackSink(FakeSink):
    """Records the order of every call; refuses feedback for observations it never stored (as the server)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[str]]] = []
        self.feedback: list[dict[str, Any]] = []

    def send(self, batch: list[dict[str, Any]]) -> None:
        super().send(batch)
        self.calls.append(("observations", [o["id"] for o in batch]))

    def send_feedback(self, batch: list[dict[str, Any]]) -> None:
        from opsloop.domain.errors import NotFound

        self.calls.append(("feedback", [f["id"] for f in batch]))
        stored = {o["id"] for o in self.sent}
        for f in batch:
            if f["observationId"] not in stored:
                raise NotFound(f"unknown observation {f['observationId']!r}", {"observationId": f["observationId"]})
        self.feedback.extend(batch)


def test_feedback_is_batched_after_its_observations_and_counted() -> None:
    sink = FeedbackSink()
    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    r = Reporter(sink, batch_size=50, flush_interval_s=60, on_error=lambda e, items: errors.append((e, items)))
    for i in range(3):
        assert r.report(**obs(id=f"o{i}"))
        assert r.feedback(f"o{i}", {"judge": i}, feedback_id=f"f{i}")
    assert r.feedback("never-reported", {"judge": 1}, feedback_id="f9")  # the backend will not know it
    assert not r.feedback("o1", {"Judge": 1})  # an invalid metric name: refused on the spot
    assert not r.feedback("o1", {})
    r.close()
    assert sink.calls[0] == ("observations", ["o0", "o1", "o2"])  # observations first, then their feedback
    assert [f["id"] for f in sink.feedback] == ["f0", "f1", "f2"]  # the unknown one peeled off, the rest stored
    s = r.stats
    assert (s.feedback_reported, s.feedback_invalid, s.feedback_queued) == (6, 2, 4)
    assert (s.feedback_sent, s.feedback_failed, s.feedback_rejected, s.feedback_dropped) == (3, 1, 0, 0)
    assert s.feedback_queued == s.feedback_sent + s.feedback_failed + s.feedback_rejected
    assert (s.sent, s.failed) == (3, 0)  # observation counters untouched by feedback
    assert [items[0]["observationId"] for _, items in errors if items and "observationId" in items[0]] == [
        "o1", "o1", "never-reported"]


def test_feedback_in_process_reaches_the_store() -> None:
    from opsloop.services.reporter import StoreSink
    from tests.fakes import MemoryStore

    store = MemoryStore()
    r = Reporter(StoreSink(store), batch_size=10, flush_interval_s=60)
    r.report(**obs(id="obs-1"))
    r.feedback("obs-1", {"thumbsUp": 1}, feedback_id="fb-1")
    r.feedback("obs-1", {"thumbsUp": 1}, feedback_id="fb-1")  # a retry: stored once
    r.close()
    assert store.observations.docs["obs-1"]["metrics"] == {"thumbsUp": 1}
    assert list(store.feedback.docs) == ["fb-1"] and r.stats.feedback_sent == 2
