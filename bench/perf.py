"""Performance of the loop against a fresh Firestore emulator, every figure a ratio taken in one run.

    .venv/bin/python bench/perf.py [--sizes 10000 30000 100000]      # writes bench/results/perf.json

Each measurement below gets its own freshly started, warmed-up emulator; a scoring ratio is taken against
the raw ceiling measured on that same emulator, at that backlog size, just before.

1. ceiling   raw emulator throughput with the plain client: batched writes, reads by query pages
2. scoring   a backlog across 20 components scored by score_observations (in a child process, so its
             peak RSS is its own): throughput as a share of raw read+write, RSS and wall time vs size
3. cost      Firestore document reads and writes per scored observation, counted by instrumenting the
             client's RPCs; reads of a stats refresh per window length
4. ingestion recordObservation over HTTP in batches of 100 and 500 vs raw batched writes; single
             observation requests' latency
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import write_report  # noqa: E402

PROJECT = "demo-opsloop"
COMPONENTS = [f"svc:{i:02d}" for i in range(20)]
WARM_UP = 5_000  # documents written and read on each fresh emulator before it is measured


class RpcCounter:
    """Counts billable document reads and writes by wrapping the client's RPC methods."""

    def __init__(self, client: Any) -> None:
        self.reads = 0
        self.writes = 0
        api = client._firestore_api
        for name in ("run_query", "batch_get_documents", "run_aggregation_query"):
            setattr(api, name, self._reader(getattr(api, name), name))
        api.commit = self._committer(api.commit)

    def _reader(self, fn: Any, name: str) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Iterator[Any]:
            found = 0
            for response in fn(*args, **kwargs):
                if (
                    (name == "run_query" and response.document.name)
                    or (name == "batch_get_documents" and (response.found.name or response.missing))
                    or name == "run_aggregation_query"
                ):
                    found += 1
                yield response
            self.reads += max(found, 1)  # a query that returns nothing is billed one read

        return wrapped

    def _committer(self, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or (args[0] if args else None)
            writes = getattr(request, "writes", None)
            if writes is None and isinstance(request, dict):
                writes = request.get("writes", [])
            self.writes += len(writes or [])
            return fn(*args, **kwargs)

        return wrapped

    def snapshot(self) -> tuple[int, int]:
        return self.reads, self.writes


def observation(i: int, rng: random.Random, now_ms: int, span_ms: int) -> dict[str, Any]:
    return {
        "id": f"b{i:07d}-{rng.randrange(1 << 30):x}",
        "ts": now_ms - rng.randrange(0, span_ms),
        "component": COMPONENTS[i % len(COMPONENTS)],
        "outcome": "success" if rng.random() < 0.9 else "failure",
        "durationMs": round(rng.lognormvariate(6, 0.5), 2),
        "tokensIn": rng.randrange(100, 900),
        "tokensOut": rng.randrange(100, 900),
        "costUsd": round(rng.random() * 0.05, 5),
        "policyVersion": "router-core@1.0.0",
    }


def raw_write(db: Any, n: int, span_ms: int = 3600_000, seed: int = 1) -> float:
    """Write n observation-shaped documents in batches of 500; returns seconds."""
    from google.cloud import firestore

    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) - 10_000
    col = db.collection("ops_observations")
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        batch = db.batch()
        for i in range(start, min(n, start + 500)):
            doc = observation(i, rng, now_ms, span_ms)
            batch.set(col.document(doc["id"]), {**doc, "receivedAt": firestore.SERVER_TIMESTAMP})
        batch.commit()
    return time.perf_counter() - t0


def raw_read(db: Any, page_size: int = 500) -> tuple[int, float]:
    """Read the whole collection by query pages (of 500) ordered by name; returns (docs, seconds)."""
    col = db.collection("ops_observations")
    t0 = time.perf_counter()
    n, last = 0, None
    while True:
        q = col.order_by("__name__").limit(page_size)
        if last is not None:
            q = q.start_after(last)
        page = list(q.stream())
        n += len(page)
        if len(page) < page_size:
            return n, time.perf_counter() - t0
        last = page[-1]


SCORE_CHILD = r"""
import json, os, resource, sys, time, datetime as dt
sys.path[:0] = [os.environ["ROOT"] + "/functions", os.environ["ROOT"]]
from bench.perf import RpcCounter
from opsloop.store.client import get_db
from opsloop.store.firestore_store import FirestoreStore
from opsloop.services import scoring
db = get_db()
counter = RpcCounter(db)
store = FirestoreStore(db)
t0 = time.perf_counter()
result = scoring.score_observations(store, dt.datetime.now(dt.UTC))
wall = time.perf_counter() - t0
print(json.dumps({"scored": result.scored, "chunks": result.chunks, "wall": wall,
                  "reads": counter.reads, "writes": counter.writes, "statsWritten": result.stats_written,
                  "peakRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_scoring_child(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", SCORE_CHILD], env={**env, "ROOT": str(ROOT)},
                         capture_output=True, text=True, timeout=3600, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@contextmanager
def functions_server(env: dict[str, str]) -> Iterator[str]:
    from scripts import emulator as emu_mod

    port = emu_mod.free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(port)],
                            env={**env, "PYTHONPATH": str(ROOT / "functions")}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        emu_mod.wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def http_ingest(base: str, n: int, batch: int, seed: int) -> float:
    import requests

    from scripts.tokens import bearer, emulator_token

    headers = bearer(emulator_token("bench", project=PROJECT, role="service"))
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) - 10_000
    items = [observation(i, rng, now_ms, 3600_000) for i in range(n)]
    session = requests.Session()
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        r = session.post(f"{base}/recordObservation", json={"observations": items[start : start + batch]},
                         headers=headers, timeout=120)
        r.raise_for_status()
    return time.perf_counter() - t0


def single_latencies(base: str, n: int) -> list[float]:
    import requests

    from scripts.tokens import bearer, emulator_token

    headers = bearer(emulator_token("bench", project=PROJECT, role="service"))
    rng = random.Random(9)
    now_ms = int(time.time() * 1000) - 10_000
    session = requests.Session()
    out = []
    for i in range(n):
        body = observation(10_000_000 + i, rng, now_ms, 60_000)
        t0 = time.perf_counter()
        session.post(f"{base}/recordObservation", json=body, headers=headers, timeout=60).raise_for_status()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return round(sorted(values)[min(len(values) - 1, int(q * len(values)))], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "perf.json")
    args = parser.parse_args(argv)

    from scripts import emulator as emu_mod

    report: dict[str, Any] = {"command": "bench/perf.py --sizes " + " ".join(map(str, args.sizes))}
    from opsloop.services.seed import load_seed
    from opsloop.store import client as client_mod
    from opsloop.store.firestore_store import FirestoreStore

    @contextmanager
    def fresh() -> Iterator[tuple[dict[str, str], Any, Any]]:
        """A new, warmed-up emulator for one measurement, so every figure starts from the same state.

        (One emulator for the whole run, cleared between phases, was several times slower after the
        100k phase than at the start; a cold JVM writes at about half its warm speed, hence the warm-up.)
        """
        emu = emu_mod.start(PROJECT, log_dir=ROOT / ".emulator-logs")
        env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.address, "GCLOUD_PROJECT": PROJECT,
               "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}
        os.environ.update(env)
        client_mod.reset_for_tests()
        try:
            db = client_mod.get_db()
            store = FirestoreStore(db)
            raw_write(db, WARM_UP, seed=0)
            raw_read(db)
            emu.clear()
            load_seed(store, ROOT / "seed")
            store.configs.set("scoring", {"safetyMarginMs": 0})
            yield env, db, store
        finally:
            emu.stop()

    # 1. the ceiling
    n = 10_000
    with fresh() as (env, db, store):
        w_s = raw_write(db, n)
        r_n, r_s = raw_read(db)
    ceiling = {"docs": n, "writesPerS": round(n / w_s), "readsPerS": round(r_n / r_s),
               "readPlusWritePerS": round(1 / (w_s / n + r_s / r_n))}
    report["ceiling"] = ceiling
    print(f"ceiling: {ceiling['writesPerS']} writes/s (batches of 500), {ceiling['readsPerS']} reads/s "
          f"(pages of 500) -> {ceiling['readPlusWritePerS']} obs/s for one read + one write", flush=True)

    # 2 + 3. scoring a backlog, against the raw ceiling measured at the same size (the emulator's
    # queries get slower as a collection grows, so each size has its own ceiling)
    report["scoring"] = []
    for size in args.sizes:
        with fresh() as (env, db, store):
            ws = raw_write(db, size, seed=size)
            rn, rs = raw_read(db)
            raw_rw = 1 / (ws / size + rs / rn)
            time.sleep(0.2)
            res = run_scoring_child(env)
        row = {
            "backlog": size, "wallS": round(res["wall"], 2), "obsPerS": round(res["scored"] / res["wall"]),
            "rawReadPlusWritePerS": round(raw_rw),
            "shareOfRaw": round(res["scored"] / res["wall"] / raw_rw, 3),
            "peakRssMb": round(res["peakRssMb"], 1), "scored": res["scored"],
            "readsPerObs": round(res["reads"] / res["scored"], 3),
            "writesPerObs": round(res["writes"] / res["scored"], 3),
        }
        row["opsPerObs"] = round(row["readsPerObs"] + row["writesPerObs"], 3)
        report["scoring"].append(row)
        print(f"scoring {size:>7}: {row['wallS']:>7}s, {row['obsPerS']} obs/s = {row['shareOfRaw']:.0%} of raw, "
              f"peak RSS {row['peakRssMb']} MB, {row['readsPerObs']} reads + {row['writesPerObs']} writes "
              f"per observation", flush=True)

    # stats refresh cost per window length: data spread over 7 days
    from bench.perf import RpcCounter
    from opsloop.domain import windows
    from opsloop.domain.stats import total
    from opsloop.services import generations

    refresh: dict[str, Any] = {}
    with fresh() as (env, db, store):
        raw_write(db, 20_000, span_ms=7 * 24 * 3600_000, seed=7)
        run_scoring_child(env)
        counter = RpcCounter(db)
        now_ms = int(time.time() * 1000)
        key = generations.current(store).read_key(COMPONENTS[0])
        for window in windows.WINDOWS:
            start, end = windows.window_bounds(now_ms, window)
            before = counter.snapshot()
            total(store.buckets.load_segments(key, windows.cover(start, end)))
            after = counter.snapshot()
            refresh[window] = {"reads": after[0] - before[0], "bucketsInCover": len(
                [1 for s in windows.cover(start, end) for _ in range(s.count)])}
    report["statsRefreshPerComponent"] = refresh
    print("stats refresh reads per component: " + ", ".join(
        f"{w} {v['reads']} (cover of {v['bucketsInCover']} buckets)" for w, v in refresh.items()), flush=True)

    # 4. ingestion over HTTP: each figure on its own fresh emulator, the server started against it
    with fresh() as (env, db, store):
        raw_s = raw_write(db, 10_000, seed=3)
    raw_rate = 10_000 / raw_s
    ingestion: dict[str, Any] = {"rawBatchedWritesPerS": round(raw_rate)}
    for batch in (100, 500):
        with fresh() as (env, db, store), functions_server(env) as base:
            http_ingest(base, 500, 100, seed=0)  # warm up
            s = http_ingest(base, 10_000, batch, seed=batch)
            rate = 10_000 / s
            ingestion[f"batch{batch}"] = {"obsPerS": round(rate), "shareOfRaw": round(rate / raw_rate, 3)}
    with fresh() as (env, db, store), functions_server(env) as base:
        http_ingest(base, 500, 100, seed=0)  # warm up
        lat = single_latencies(base, 300)
        ingestion["single"] = {"p50Ms": pct(lat, 0.5), "p95Ms": pct(lat, 0.95), "requests": len(lat),
                               "meanMs": round(statistics.mean(lat), 2)}
    report["ingestion"] = ingestion
    print(f"ingestion: batches of 100 {ingestion['batch100']['obsPerS']} obs/s "
          f"({ingestion['batch100']['shareOfRaw']:.0%} of raw), of 500 {ingestion['batch500']['obsPerS']} obs/s "
          f"({ingestion['batch500']['shareOfRaw']:.0%}); single requests p50 {ingestion['single']['p50Ms']} ms, "
          f"p95 {ingestion['single']['p95Ms']} ms", flush=True)
    report["at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
