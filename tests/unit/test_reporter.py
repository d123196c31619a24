"""The component-side reporter: batching, bounded queue, no loss on close, sampling weights."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from opsloop.domain.errors import InvalidArgument
from opsloop.services.reporter import Reporter


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
        r.report(**obs(n=i))
    wait_for(lambda: len(sink.sent) >= 20)
    assert [len(b) for b in sink.batches[:2]] == [10, 10]
    r.close()
    assert len(sink.sent) == 25 and [o["n"] for o in sink.sent] == list(range(25))


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
                                    {"success_sample_rate": 1.5}, {"max_queue": 5, "batch_size": 10}])
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Reporter(FakeSink(), **kwargs)
