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

The backend takes a batch all or nothing, so one bad observation must not ride along with good ones.
``report`` validates each observation with the server's own parse path
(:func:`opsloop.domain.observation.parse_batch`, including the 5-minute bound on a future ``ts``) and
refuses an invalid one on the spot. Should the backend still refuse a batch with field errors (a newer,
stricter server; clocks that disagree), the observations it names are counted as ``stats.rejected`` and
the rest of the batch is sent again, once. Every reported observation ends up in exactly one counter:
``reported == invalid + sampled_out + dropped + queued`` and, once closed,
``queued == sent + rejected + failed``.

``feedback(observation_id, metrics)`` queues late metrics (``recordFeedback``) the same way, in their own
batches, sent after the observations queued before them; they count in the ``feedback_*`` counters with
the same identities. Feedback for an observation that was not stored (sampled out, dropped) is refused by
the backend and counted as ``feedback_failed``: send feedback only for observations ``report`` queued.
"""

from __future__ import annotations

import atexit
import queue
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..domain.errors import Conflict, InvalidArgument, NotFound
from ..domain.observation import InvalidBatch, parse_batch, parse_feedback

if TYPE_CHECKING:
    import requests

    from .ports import Store

# The server refuses a weight above 10^6 (ObservationIn.weight), and a kept success weighs 1 / rate.
MIN_SAMPLE_RATE = 1e-6

# "observations.3.durationMs" or "feedback.3": a field error that names one item of the batch
_ITEM_FIELD = re.compile(r"^(?:observations|feedback)\.(\d+)(?:\.|$)")
OBSERVATION, FEEDBACK = "observation", "feedback"

OnError = Callable[[BaseException, list[dict[str, Any]]], None]


class Sink(Protocol):
    """Where batches go. ``send`` raises InvalidArgument, with the server's field errors in
    ``details["errors"]``, when the batch is refused as invalid; any other exception means it was not stored."""

    def send(self, batch: list[dict[str, Any]]) -> None: ...

    def send_feedback(self, batch: list[dict[str, Any]]) -> None: ...


class StoreSink:
    """In-process: the same validation and write path as recordObservation."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def send(self, batch: list[dict[str, Any]]) -> None:
        from .record import record_batch

        record_batch(self._store, {"observations": batch})

    def send_feedback(self, batch: list[dict[str, Any]]) -> None:
        from .feedback import record_feedback

        record_feedback(self._store, {"feedback": batch})


class HttpSink:
    """Over HTTP to a deployed (or locally served) recordObservation; feedback to recordFeedback beside it
    (``feedback_url``, by default the same URL with its last path segment ``recordFeedback``)."""

    def __init__(self, url: str, token: Callable[[], str], timeout_s: float = 30.0, attempts: int = 3,
                 feedback_url: str | None = None) -> None:
        import requests

        self._url = url
        self._feedback_url = feedback_url or url.rstrip("/").rsplit("/", 1)[0] + "/recordFeedback"
        self._token = token
        self._timeout = timeout_s
        self._attempts = attempts
        self._session = requests.Session()

    def send(self, batch: list[dict[str, Any]]) -> None:
        self._post(self._url, {"observations": batch})

    def send_feedback(self, batch: list[dict[str, Any]]) -> None:
        self._post(self._feedback_url, {"feedback": batch})

    def _post(self, url: str, body: dict[str, Any]) -> None:
        import requests

        for attempt in range(self._attempts):
            try:
                r = self._session.post(url, json=body, timeout=self._timeout,
                                       headers={"Authorization": f"Bearer {self._token()}"})
            except requests.RequestException:
                if attempt + 1 == self._attempts:
                    raise
            else:
                if r.status_code == 400:
                    _raise_invalid(r)
                if r.status_code in (404, 409) and url == self._feedback_url:
                    _raise_refused(r)
                if r.status_code < 500:
                    r.raise_for_status()
                    return
                if attempt + 1 == self._attempts:
                    r.raise_for_status()
            time.sleep(0.2 * 2**attempt)


def _raise_invalid(r: requests.Response) -> None:
    """Turn recordObservation's 400 into the InvalidArgument StoreSink raises, field errors included."""
    import requests

    try:
        error = r.json()["error"]
        message, details = str(error.get("message", "invalid batch")), dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError, AttributeError):  # not the JSON error body of our handler
        message, details = f"recordObservation answered 400: {r.text[:200]}", {}
    details.pop("code", None)  # InvalidArgument sets its own learning-domain code
    try:
        r.raise_for_status()
    except requests.HTTPError as exc:
        raise InvalidArgument(message, details) from exc


def _raise_refused(r: requests.Response) -> None:
    """recordFeedback's 404 (unknown observation) / 409 (expired): the error StoreSink raises."""
    try:
        error = r.json()["error"]
        message, details = str(error.get("message", "refused")), dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        message, details = f"recordFeedback answered {r.status_code}: {r.text[:200]}", {}
    code = details.pop("code", None)
    raise (NotFound(message, details) if r.status_code == 404 else Conflict(message, details, code=code))


def _rejected_items(exc: InvalidArgument, size: int) -> set[int]:
    """The indexes of the items a refused batch of ``size`` names in its field errors."""
    errors = exc.details.get("errors")
    found: set[int] = set()
    for err in errors if isinstance(errors, list) else []:
        m = _ITEM_FIELD.match(str(err.get("field", ""))) if isinstance(err, dict) else None
        if m is not None and int(m.group(1)) < size:
            found.add(int(m.group(1)))
    return found


def _unique_id_rounds(batch: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split a batch so no id appears twice in one part: the server refuses such a batch as a whole.

    A repeated id is a retry of the same observation; sent in a later part, the server answers it as
    a duplicate of the one it stored (idempotent), instead of refusing every other observation with it.
    """
    seen: Counter[Any] = Counter()
    rounds: list[list[dict[str, Any]]] = []
    for item in batch:
        n = seen[item.get("id")]
        seen[item.get("id")] += 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(item)
    return rounds


@dataclass
class ReporterStats:
    """Where the reported observations went (see the module docstring for how the counters add up)."""

    reported: int = 0
    invalid: int = 0  # refused by report(): the server would refuse it
    sampled_out: int = 0
    queued: int = 0
    sent: int = 0  # stored by the backend (or answered as a duplicate of one it stored)
    dropped: int = 0  # the queue stayed full
    rejected: int = 0  # queued, then refused by the backend as invalid; the rest of its batch went again
    failed: int = 0  # queued, but its batch failed (backend down, refused as a whole): not stored
    failed_batches: int = 0
    # feedback(): the same identities over its own counters
    feedback_reported: int = 0
    feedback_invalid: int = 0
    feedback_dropped: int = 0
    feedback_queued: int = 0
    feedback_sent: int = 0  # stored (or answered as a duplicate of a stored one)
    feedback_rejected: int = 0
    feedback_failed: int = 0  # not stored: its batch failed, or its observation is unknown or expired


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
        on_error: OnError | None = None,
    ) -> None:
        """``on_error(exc, observations)`` hears of every observation that will not be stored: refused
        by ``report`` (an InvalidArgument with the field errors), refused by the backend, or in a failed
        batch. It runs on the thread that found out (the caller's, or the sender's) and must not raise."""
        if not 1 <= batch_size <= 500:
            raise InvalidArgument(f"batch_size must be in 1..500, got {batch_size!r}")
        if not MIN_SAMPLE_RATE <= success_sample_rate <= 1.0:
            raise InvalidArgument(
                f"success_sample_rate must be in [{MIN_SAMPLE_RATE}, 1] (a kept success weighs 1/rate, at most "
                f"10^6), got {success_sample_rate!r}"
            )
        if max_queue < batch_size:
            raise InvalidArgument(f"max_queue must be at least batch_size, got {max_queue!r}")
        self._sink = sink
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._block_s = block_s
        self._rate = success_sample_rate
        self._rng = rng or random.Random()
        self._on_error = on_error
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=max_queue)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.stats = ReporterStats()
        self._thread = threading.Thread(target=self._run, name="opsloop-reporter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def report(self, **fields: Any) -> bool:
        """Queue one observation (the fields of recordObservation's item); True when it was queued.

        False when it was not: refused as invalid (``stats.invalid``; ``on_error`` gets an InvalidArgument
        whose ``details["errors"]`` name the fields, as the server would), sampled out, or dropped because
        the queue stayed full. An invalid observation is never sent and never sampled: it is checked
        first, with the server's parse path, after ``id`` and ``ts`` (now) are filled in when missing.
        Raises RuntimeError after ``close``.
        """
        if self._closed.is_set():
            raise RuntimeError("reporter is closed")
        now_ms = int(time.time() * 1000)
        fields.setdefault("id", uuid.uuid4().hex)
        fields.setdefault("ts", now_ms)
        try:
            parse_batch(fields, now_ms)
        except InvalidBatch as exc:
            with self._lock:
                self.stats.reported += 1
                self.stats.invalid += 1
            self._notify(InvalidArgument(str(exc), {"errors": [e.model_dump() for e in exc.errors]}), [fields])
            return False
        with self._lock:
            self.stats.reported += 1
            if fields["outcome"] == "success" and self._rate < 1.0:
                if self._rng.random() >= self._rate:
                    self.stats.sampled_out += 1
                    return False
                fields["weight"] = 1.0 / self._rate
        return self._put(OBSERVATION, fields)

    def feedback(self, observation_id: str, metrics: dict[str, Any], feedback_id: str | None = None) -> bool:
        """Queue late metrics for an observation this reporter queued (``recordFeedback``'s item); True
        when queued. A retry with the same ``feedback_id`` is stored once. False when refused as invalid
        (``stats.feedback_invalid``, ``on_error`` hears of it) or dropped because the queue stayed full."""
        if self._closed.is_set():
            raise RuntimeError("reporter is closed")
        item = {"observationId": observation_id, "metrics": dict(metrics), "id": feedback_id or uuid.uuid4().hex}
        try:
            parse_feedback(item)
        except InvalidBatch as exc:
            with self._lock:
                self.stats.feedback_reported += 1
                self.stats.feedback_invalid += 1
            self._notify(InvalidArgument(str(exc), {"errors": [e.model_dump() for e in exc.errors]}), [item])
            return False
        with self._lock:
            self.stats.feedback_reported += 1
        return self._put(FEEDBACK, item)

    def _count(self, kind: str, counter: str, n: int) -> None:
        with self._lock:
            name = counter if kind == OBSERVATION else f"feedback_{counter}"
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def _put(self, kind: str, item: dict[str, Any]) -> bool:
        try:
            self._queue.put((kind, item), timeout=self._block_s)
        except queue.Full:
            self._count(kind, "dropped", 1)
            return False
        self._count(kind, "queued", 1)
        return True

    def _drain(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        batch: list[tuple[str, dict[str, Any]]] = []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _notify(self, exc: BaseException, items: list[dict[str, Any]]) -> None:
        if self._on_error is not None:
            self._on_error(exc, items)

    def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """Observations first: feedback queued after its observation must find it stored."""
        for kind in (OBSERVATION, FEEDBACK):
            items = [item for k, item in batch if k == kind]
            for part in _unique_id_rounds(items) if items else []:
                self._deliver(kind, part, resend=True)

    def _deliver(self, kind: str, batch: list[dict[str, Any]], resend: bool) -> None:
        """Send one batch; when the backend names invalid items (or, for feedback, an unknown or expired
        observation), count them and send the rest once more."""
        send = self._sink.send if kind == OBSERVATION else self._sink.send_feedback
        try:
            send(batch)
        except (InvalidArgument, NotFound, Conflict) as exc:
            if isinstance(exc, InvalidArgument):
                bad = _rejected_items(exc, len(batch)) if resend else set()
            else:  # recordFeedback names the observation it could not take
                target = exc.details.get("observationId")
                bad = {i for i, o in enumerate(batch) if o.get("observationId") == target} if resend else set()
            if not bad:  # nothing to tell good from bad, or the resend was refused too
                self._fail(kind, exc, batch)
                return
            self._count(kind, "rejected" if isinstance(exc, InvalidArgument) else "failed", len(bad))
            self._notify(exc, [o for i, o in enumerate(batch) if i in bad])
            rest = [o for i, o in enumerate(batch) if i not in bad]
            if rest:
                self._deliver(kind, rest, resend=not isinstance(exc, InvalidArgument))
            return
        except Exception as exc:  # a component must not crash because reporting failed
            self._fail(kind, exc, batch)
            return
        self._count(kind, "sent", len(batch))

    def _fail(self, kind: str, exc: BaseException, batch: list[dict[str, Any]]) -> None:
        if kind == OBSERVATION:
            with self._lock:
                self.stats.failed_batches += 1
        self._count(kind, "failed", len(batch))
        self._notify(exc, batch)

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
