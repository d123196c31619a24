"""PolicyClient's live heads (issue 16 part 2): a listener pushes head changes; a dropped or quiet
listener is logged, counted and replaced by polling every ttl_s, then listened to again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from opsloop.client import PolicyClient
from opsloop.domain.policy import Head


class Watch:
    def __init__(self, on_head: Callable[[Head], None]) -> None:
        self.on_head = on_head
        self.is_active = True
        self.unsubscribed = False

    def unsubscribe(self) -> None:
        self.unsubscribed = True
        self.is_active = False


class Reader:
    """Heads as stored; a new listener delivers the stored head at once, as Firestore's do."""

    def __init__(self) -> None:
        self.stored = Head("p", active="1.0.0", seq=1)
        self.reads = 0
        self.watches: list[Watch] = []

    def head(self, policy_id: str) -> Head:
        self.reads += 1
        return self.stored

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None:
        return {"kind": "params", "params": {"v": version}}

    def watch_head(self, policy_id: str, on_head: Callable[[Head], None]) -> Watch:
        self.watches.append(Watch(on_head))
        on_head(self.stored)
        return self.watches[-1]

    def commit(self, active: str, push: bool = True) -> None:
        self.stored = replace(self.stored, active=active, seq=self.stored.seq + 1)
        if push and self.watches and self.watches[-1].is_active:
            self.watches[-1].on_head(self.stored)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_pushed_change_is_used_by_the_next_assignment_without_a_read() -> None:
    reader, clock = Reader(), Clock()
    client = PolicyClient(reader, ttl_s=300, clock=clock)
    assert client.assign("r", "p").version == "1.0.0" and len(reader.watches) == 1
    reader.commit("1.0.1")
    clock.t += 1
    assert client.assign("r", "p").version == "1.0.1"
    assert reader.reads == 0 and client.listener.updates == 2  # the listener's first snapshot, then the change


def test_a_dropped_listener_is_logged_counted_polled_and_listened_to_again(caplog: pytest.LogCaptureFixture) -> None:
    reader, clock = Reader(), Clock()
    client = PolicyClient(reader, ttl_s=60, clock=clock, relisten_s=100)
    client.assign("r", "p")
    reader.watches[0].is_active = False  # the stream died
    reader.commit("1.0.1", push=False)
    clock.t += 1
    assert client.assign("r", "p").version == "1.0.0"  # within ttl_s: the cache
    assert "listening again in 100 s" in caplog.text
    assert client.listener.drops == 1 and "listener on p dropped; polling its head every 60 s" in caplog.text
    clock.t += 60
    assert client.assign("r", "p").version == "1.0.1"  # the poll
    assert len(reader.watches) == 1  # not before relisten_s
    clock.t += 40
    client.assign("r", "p")
    assert len(reader.watches) == 2 and client.listener.restarts == 1
    reader.commit("1.0.2")
    assert client.assign("r", "p").version == "1.0.2" and client.listener.drops == 1


def test_a_listener_that_goes_quiet_is_found_by_the_poll_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    reader, clock = Reader(), Clock()
    client = PolicyClient(reader, ttl_s=60, clock=clock)
    client.assign("r", "p")
    reader.commit("1.0.1", push=False)  # active, but the change never arrives
    clock.t += 61
    assert client.assign("r", "p").version == "1.0.1"
    assert client.listener.stale == 1 and reader.watches[0].unsubscribed
    assert "listener on p missed a change (seq 2, had 1)" in caplog.text
    client.assign("r", "p")
    assert len(reader.watches) == 2 and client.listener.restarts == 1


def test_a_poll_that_raced_a_push_never_goes_back_to_an_older_head() -> None:
    reader, clock = Reader(), Clock()
    client = PolicyClient(reader, ttl_s=60, clock=clock)
    client.assign("r", "p")
    old = reader.stored
    reader.commit("1.0.1")  # pushed
    reader.stored = old  # a poll answered with what it read before the change
    clock.t += 61
    assert client.assign("r", "p").version == "1.0.1" and client.listener.stale == 0


def test_a_reader_that_cannot_listen_polls_and_close_stops_listening() -> None:
    reader = Reader()
    with PolicyClient(reader, ttl_s=60, live=False) as client:
        client.assign("r", "p")
        assert reader.watches == []
    client = PolicyClient(reader, ttl_s=60)
    client.assign("r", "p")
    client.close()
    assert reader.watches[0].unsubscribed


def test_a_failed_poll_keeps_the_cached_head_and_retries_later(caplog: pytest.LogCaptureFixture) -> None:
    reader, clock = Reader(), Clock()
    client = PolicyClient(reader, ttl_s=60, clock=clock, live=False)
    assert client.assign("r", "p").version == "1.0.0"

    def down(policy_id: str) -> Head:
        raise ConnectionError("firestore unreachable")

    reader.head = down  # type: ignore[method-assign]
    clock.t += 61
    assert client.assign("r", "p").version == "1.0.0"  # routing goes on with what it had
    assert client.listener.poll_failures == 1 and "could not read the head of p; keeping seq 1" in caplog.text
    clock.t += 5
    client.assign("r", "p")
    assert client.listener.poll_failures == 1  # not retried on every request
    clock.t += 6
    client.assign("r", "p")
    assert client.listener.poll_failures == 2
    with pytest.raises(ConnectionError):  # nothing cached: nothing to route by
        PolicyClient(reader, ttl_s=60, clock=clock, live=False).assign("r", "p")


def test_two_first_assignments_at_once_keep_one_listener_whose_pushes_count() -> None:
    import threading
    import time

    class Slow(Reader):
        def watch_head(self, policy_id: str, on_head: Callable[[Head], None]) -> Watch:
            time.sleep(0.05)  # both threads are inside watch_head together
            return super().watch_head(policy_id, on_head)

    reader, clock = Slow(), Clock()
    client = PolicyClient(reader, ttl_s=60, clock=clock)
    threads = [threading.Thread(target=client.assign, args=("r", "p")) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    live = [w for w in reader.watches if not w.unsubscribed]
    assert len(reader.watches) == 2 and len(live) == 1 and client._watches["p"] is live[0]
    assert client._tokens["p"] in client._heard  # the registered listener's own first push was heard
    reader.commit("1.0.1", push=False)  # it then misses a change: the poll must notice
    clock.t += 61
    assert client.assign("r", "p").version == "1.0.1" and client.listener.stale == 1
