"""A bounded load test of ``recordObservation`` over HTTP, on loopback, against the Firestore emulator.

    .venv/bin/python bench/load_test.py [--observations 20000] [--clients 16] [--batch 100] [--timeout 120]

Starts the Firestore emulator and the functions server (``scripts/serve.py``) exactly as the end-to-end
tests do, loads ``seed/``, then ``--clients`` threads (one ``requests.Session`` each) POST batches of
``--batch`` observations until ``--observations`` are acknowledged or ``--timeout`` seconds have passed (no
batch starts after that; those in flight get up to ``DRAIN_S`` more to finish, so nothing is abandoned).
Every observation carries a client ``id``, so a retried batch (after a timeout, a dropped connection, a
409 or a 5xx) writes nothing twice. It reports the accepted count, the stored count
(``ops_observations``), the error rate, the throughput and the per-request latency (p50/p95), asserts
stored == accepted, writes ``bench/results/load_test.json`` and stops everything it started.

``send_observations(base_url, store, ...)`` is the reusable part (``tests/e2e/test_load_http.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT / "functions"), str(ROOT)) if p not in sys.path]
from bench import write_report  # noqa: E402
from scripts import emulator as emu_mod  # noqa: E402
from scripts.tokens import PROJECT, bearer, emulator_token  # noqa: E402

AUTH_EMULATOR = "127.0.0.1:9099"  # only its presence matters: firebase_admin then accepts unsigned tokens
RESULTS = ROOT / "bench" / "results" / "load_test.json"
MODELS = ("gpt-5", "claude", "gemini")
OUTCOMES = ("success",) * 8 + ("failure", "timeout", "rate_limit")
MAX_ATTEMPTS = 5  # per batch; retries are safe because every observation has a client id
REQUEST_TIMEOUT = 30.0  # seconds, per HTTP request
DRAIN_S = 45.0  # after the time limit no batch starts; those in flight may finish (and retry) this long
# The deployed URL. (scripts/serve.py answers it with 308 -> "/recordObservation/", which requests follows,
# re-sending the body; measured at batch 100 this costs < 5 % of the throughput.)
PATH = "/recordObservation"


@dataclass
class LoadResult:
    requested: int
    clients: int
    batch: int
    accepted: int = 0  # distinct observation ids acknowledged by a 201 (created or duplicate on retry)
    stored: int | None = None  # ops_observations documents afterwards
    requests: int = 0  # HTTP requests sent, retries included
    errors: int = 0  # requests answered with something other than 201, or that failed in transport
    failed_batches: int = 0  # batches given up after MAX_ATTEMPTS
    retried_duplicates: int = 0  # ids a retry found already stored (written once, acknowledged once)
    timed_out: bool = False  # the wall-clock limit stopped the run before every batch was sent
    seconds: float = 0.0
    throughput_obs_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate}


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def make_batches(observations: int, batch: int, run_id: str, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """``observations`` valid observations in batches of ``batch``, with ids ``load-<run_id>-<n>``."""
    rng = random.Random(seed)
    for start in range(0, observations, batch):
        items = []
        for n in range(start, min(start + batch, observations)):
            model = MODELS[n % len(MODELS)]
            items.append({
                "id": f"load-{run_id}-{n:08d}",
                "component": f"router:{model}",
                "outcome": rng.choice(OUTCOMES),
                "durationMs": round(rng.lognormvariate(5.5, 0.5), 1),
                "tokensIn": rng.randint(10, 2000),
                "tokensOut": rng.randint(10, 4000),
                "costUsd": round(rng.uniform(0.0005, 0.05), 5),
                "policyVersion": "router-core@1.0.0",
                "propensity": 1 / len(MODELS),
            })
        yield items


def send_observations(base_url: str, store: Any = None, *, observations: int = 20_000, clients: int = 16,
                      batch: int = 100, timeout: float = 120.0, token: str | None = None,
                      run_id: str | None = None) -> LoadResult:
    """POST ``observations`` from ``clients`` threads in batches of ``batch``; bounded by ``timeout`` seconds.

    With a ``store`` (a FirestoreStore on the same emulator) the result carries the stored count of
    ``ops_observations``: equal to ``accepted`` when the collection was empty before.
    """
    if not 1 <= batch <= 500:
        raise ValueError("batch must be in 1..500 (recordObservation's limit)")
    token = token or emulator_token("load-client", role="service", expires_in=max(3600, int(timeout) + 600))
    run_id = run_id or uuid.uuid4().hex[:8]
    url = base_url.rstrip("/") + PATH
    headers = {**bearer(token), "Content-Type": "application/json"}
    result = LoadResult(requested=observations, clients=clients, batch=batch)
    batches = list(make_batches(observations, batch, run_id))
    lock = threading.Lock()
    cursor = iter(range(len(batches)))
    acked: set[str] = set()
    latencies: list[float] = []
    start = time.monotonic()
    deadline = start + timeout

    def next_batch() -> list[dict[str, Any]] | None:
        with lock:
            index = next(cursor, None)
            if index is not None and time.monotonic() >= deadline:
                result.timed_out = True
                return None
            return None if index is None else batches[index]

    def note(status: str, elapsed: float, ok: bool, sample: str = "") -> None:
        with lock:
            result.requests += 1
            latencies.append(elapsed * 1000)
            result.status_counts[status] = result.status_counts.get(status, 0) + 1
            if not ok:
                result.errors += 1
                if sample and len(result.error_samples) < 10:
                    result.error_samples.append(sample)

    def post_batch(session: requests.Session, items: list[dict[str, Any]]) -> bool:
        """POST one batch, retrying transport errors, 409 and 5xx; True once it is acknowledged."""
        body = json.dumps({"observations": items}, separators=(",", ":"))
        for _ in range(MAX_ATTEMPTS):
            # A batch once started is not cut off at the deadline: abandoning a request the server then
            # completes would store observations nobody acknowledged. Retries stop after the drain period.
            remaining = deadline + DRAIN_S - time.monotonic()
            if remaining <= 0:
                return False
            t0 = time.monotonic()
            try:
                r = session.post(url, data=body, headers=headers, timeout=min(REQUEST_TIMEOUT, remaining))
            except requests.RequestException as exc:
                note(type(exc).__name__, time.monotonic() - t0, False, repr(exc)[:300])
                continue
            note(str(r.status_code), time.monotonic() - t0, r.status_code == 201, r.text[:300])
            if r.status_code == 201:
                answer = r.json()
                with lock:
                    acked.update(answer["ids"])
                    result.retried_duplicates += len(answer["duplicates"])
                return True
            if r.status_code < 500 and r.status_code != 409:
                return False  # a 4xx other than a conflict will not get better by retrying
            time.sleep(0.05)
        return False

    def client() -> None:
        with requests.Session() as session:
            while (items := next_batch()) is not None:
                if not post_batch(session, items):
                    with lock:
                        result.failed_batches += 1

    threads = [threading.Thread(target=client, name=f"load-client-{i}", daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + DRAIN_S - time.monotonic()) + REQUEST_TIMEOUT)
    result.seconds = round(time.monotonic() - start, 3)
    result.accepted = len(acked)
    result.throughput_obs_per_s = round(result.accepted / result.seconds, 1) if result.seconds else 0.0
    ordered = sorted(latencies)
    result.latency_ms = {"p50": round(_percentile(ordered, 0.50), 1), "p95": round(_percentile(ordered, 0.95), 1),
                         "max": round(ordered[-1], 1) if ordered else 0.0}
    if store is not None:
        result.stored = int(store.count("ops_observations"))
    return result


def report(result: LoadResult) -> str:
    return (f"accepted {result.accepted}/{result.requested} observations, stored {result.stored}, "
            f"{result.requests} requests, error rate {result.error_rate:.2%}, "
            f"{result.throughput_obs_per_s:.0f} obs/s over {result.seconds:.1f}s, "
            f"latency per request p50 {result.latency_ms.get('p50')} ms p95 {result.latency_ms.get('p95')} ms"
            f"{' (stopped by the time limit)' if result.timed_out else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120.0, help="wall-clock limit of the sending, seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.observations < 1 or args.clients < 1 or not 1 <= args.batch <= 500 or args.timeout <= 0:
        parser.error("need --observations >= 1, --clients >= 1, --batch in 1..500 and --timeout > 0")

    log_dir = ROOT / ".emulator-logs"
    try:
        emu = emu_mod.start(PROJECT, rules=ROOT / "firestore.rules", log_dir=log_dir)
    except emu_mod.EmulatorNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    server: subprocess.Popen[bytes] | None = None
    log = None
    try:
        os.environ.update(FIRESTORE_EMULATOR_HOST=emu.address, GCLOUD_PROJECT=PROJECT,
                          FIREBASE_AUTH_EMULATOR_HOST=AUTH_EMULATOR)
        port = emu_mod.free_port()
        log = open(log_dir / f"functions-load-{port}.log", "wb")  # noqa: SIM115
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(port)],
            env={**os.environ, "PYTHONPATH": str(ROOT / "functions")},
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        emu_mod.wait_http(f"{base}/", timeout=60, proc=server)

        from opsloop.services.seed import load_seed
        from opsloop.store.client import get_db
        from opsloop.store.firestore_store import FirestoreStore

        store = FirestoreStore(get_db())
        load_seed(store, ROOT / "seed")
        print(f"load test: {args.observations} observations, {args.clients} clients, batches of {args.batch}, "
              f"limit {args.timeout:.0f}s, functions on {base}, emulator on {emu.address}", flush=True)
        result = send_observations(base, store, observations=args.observations, clients=args.clients,
                                   batch=args.batch, timeout=args.timeout)
        print(report(result), flush=True)
        env = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
        write_report(args.out, {**result.to_dict(), "environment": env})
        assert result.stored == result.accepted, f"stored {result.stored} != accepted {result.accepted}"
        return 0 if result.accepted == args.observations and result.errors == 0 else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        if log is not None:
            log.close()
        emu.stop()


if __name__ == "__main__":
    sys.exit(main())
