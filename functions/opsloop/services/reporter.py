"""Client-side volume control: report observations without waiting, in batches, optionally sampled.

    reporter = Reporter(HttpSink(url, token=lambda: id_token), success_sample_rate=0.1)
    reporter.report(component="router:gemini", outcome="success", durationMs=312, costUsd=0.004)
    ...
    reporter.close()          # also runs at interpreter exit: nothing queued is lost on normal shutdown

A background thread sends a batch when ``batch_size`` observations wait or ``flush_interval_s`` has
passed. The queue is bounded (``max_queue``): when it is full, ``report`` waits up to ``block_s`` for
room, then drops the observation and counts it (``stats.dropped``), so a slow backend slows a component
down at most that much and never grows its memory without bound.

Successes may be sampled at ``success_sample_rate``; failures (anything not ``success``) are always
kept. A kept success carries ``weight = 1 / rate`` and the scorer weighs it that many times, so success
rate, mean reward, cost and latency quantiles stay unbiased while far fewer documents are written.
Every observation gets a client id before it is queued, so a retried batch is idempotent.
"""

from __future__ import annotations

import atexit
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..domain.errors import InvalidArgument


class Sink(Protocol):
    def send(self, batch: list[dict[str, Any]]) -> None: ...


class StoreSink:
    """In-process: the same validation and write path as recordObservation."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def send(self, batch: list[dict[str, Any]]) -> None:
        from .record import record_batch

        record_batch(self._store, {"observations": batch})


class HttpSink:
    """Over HTTP to a deployed (or locally served) recordObservation."""

    def __init__(self, url: str, token: Callable[[], str], timeout_s: float = 30.0, attempts: int = 3) -> None:
        import requests

        self._url = url
        self._token = token
        self._timeout = timeout_s
        self._attempts = attempts
        self._session = requests.Session()

    def send(self, batch: list[dict[str, Any]]) -> None:
        import requests

        for attempt in range(self._attempts):
            try:
                r = self._session.post(self._url, json={"observations": batch}, timeout=self._timeout,
                                       headers={"Authorization": f"Bearer {self._token()}"})
            except requests.RequestException:
                if attempt + 1 == self._attempts:
                    raise
            else:
                if r.status_code < 500:
                    r.raise_for_status()
                    return
                if attempt + 1 == self._attempts:
                    r.raise_for_status()
            time.sleep(0.2 * 2**attempt)


@dataclass
class ReporterStats:
    reported: int = 0
    sampled_out: int = 0
    queued: int = 0
    sent: int = 0
    dropped: int = 0
    failed_batches: int = 0


class Reporter:
    def __init__(
        self,
        sink: Sink,
        batch_size: int = 100,
        flush_interval_s: float = 1.0,
        max_queue: int = 10_000,
        block_s: float = 0.05,
        success_sample_rate: float = 1.0,
        rng: random.Random | None = None,
        on_error: Callable[[BaseException, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= 500:
            raise InvalidArgument(f"batch_size must be in 1..500, got {batch_size!r}")
        if not 0.0 < success_sample_rate <= 1.0:
            raise InvalidArgument(f"success_sample_rate must be in (0, 1], got {success_sample_rate!r}")
        if max_queue < batch_size:
            raise InvalidArgument(f"max_queue must be at least batch_size, got {max_queue!r}")
        self._sink = sink
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._block_s = block_s
        self._rate = success_sample_rate
        self._rng = rng or random.Random()
        self._on_error = on_error
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.stats = ReporterStats()
        self._thread = threading.Thread(target=self._run, name="opsloop-reporter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def report(self, **fields: Any) -> bool:
        """Queue one observation; False when it was sampled out or dropped because the queue stayed full."""
        if self._closed.is_set():
            raise RuntimeError("reporter is closed")
        with self._lock:
            self.stats.reported += 1
            if fields.get("outcome") == "success" and self._rate < 1.0:
                if self._rng.random() >= self._rate:
                    self.stats.sampled_out += 1
                    return False
                fields["weight"] = 1.0 / self._rate
        fields.setdefault("id", uuid.uuid4().hex)
        fields.setdefault("ts", int(time.time() * 1000))
        try:
            self._queue.put(fields, timeout=self._block_s)
        except queue.Full:
            with self._lock:
                self.stats.dropped += 1
            return False
        with self._lock:
            self.stats.queued += 1
        return True

    def _drain(self, limit: int) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._sink.send(batch)
        except Exception as exc:  # a component must not crash because reporting failed
            with self._lock:
                self.stats.failed_batches += 1
            if self._on_error is not None:
                self._on_error(exc, batch)
            return
        with self._lock:
            self.stats.sent += len(batch)

    def _run(self) -> None:
        deadline = time.monotonic() + self._interval
        while not self._closed.is_set():
            if self._queue.qsize() >= self._batch_size or time.monotonic() >= deadline:
                batch = self._drain(self._batch_size)
                if batch:
                    self._send(batch)
                if self._queue.qsize() < self._batch_size:
                    deadline = time.monotonic() + self._interval
                continue
            self._closed.wait(min(0.01, self._interval))

    def flush(self) -> None:
        """Send everything queued now, from the calling thread."""
        while True:
            batch = self._drain(self._batch_size)
            if not batch:
                return
            self._send(batch)

    def close(self) -> None:
        """Stop the background thread and send what is left. Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(timeout=10)
        self.flush()
