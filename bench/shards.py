"""Scoring a backlog with K concurrent shard workers on a fresh Firestore emulator.

    .venv/bin/python bench/shards.py [--size 100000] [--workers 1 2 4] [--rss-sizes 10000 100000]
                                     [--kill-size 20000]        # writes bench/results/shards.json

1. throughput  for each K: the raw ceiling (batched writes + paged reads of SIZE plain documents) on a
               fresh, warmed-up emulator; then SIZE observations recorded with config/scoring.shards = K
               and scored by K worker processes at once (``scoring.score_shard``, one shard each, as the
               scoreShard task queue runs them; K = 1 too: its one key, "1-0").
               Reported: observations/s, its ratio to raw read+write (reads in pages of 500), its ratio to
               raw read+write in pages of the scanner's read size, each worker's peak RSS.
2. exactly once  K = 4 workers are killed with SIGKILL mid-run, their leases left to expire, and K new
               workers finish: every observation has one reward and the buckets count each once.
3. memory      peak RSS of one worker scoring 10k and 100k (the backlog is streamed in chunks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import write_report  # noqa: E402
from bench.perf import COMPONENTS, WARM_UP, raw_read, raw_write  # noqa: E402

PROJECT = "demo-opsloop"
LEASE_TTL_S = 60  # the shortest config/scoring allows: killed workers' leases expire within the bench

WORKER = r"""
import json, os, resource, sys, time, datetime as dt
sys.path[:0] = [os.environ["ROOT"] + "/functions", os.environ["ROOT"]]
from opsloop.store.client import get_db
from opsloop.store.firestore_store import FirestoreStore
from opsloop.services import scoring
store = FirestoreStore(get_db())
key = sys.argv[1]
t0 = time.perf_counter()
scored = 0
while True:  # a worker goes on while its budget allows; a task would be re-enqueued by the next run
    r = scoring.score_shard(store, key)
    scored += r.scored
    if not r.budget_exhausted:
        break
print(json.dumps({"key": key, "scored": scored, "wall": time.perf_counter() - t0,
                  "peakRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def observation(i: int, rng: random.Random, now_ms: int) -> dict[str, Any]:
    return {"ts": now_ms - rng.randrange(0, 3_600_000), "component": COMPONENTS[i % len(COMPONENTS)],
            "outcome": "success" if rng.random() < 0.9 else "failure",
            "durationMs": round(rng.lognormvariate(6, 0.5), 2), "costUsd": round(rng.random() * 0.05, 5)}


def ingest(store: Any, n: int, seed: int) -> float:
    from opsloop.services.record import record_batch

    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) - 10_000
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        record_batch(store, {"observations": [observation(i, rng, now_ms) for i in range(start, min(n, start + 500))]})
    return time.perf_counter() - t0


def keys(k: int) -> list[str]:
    from opsloop.domain import shards

    return [shards.label(key) for key in shards.keys(k)]


def start_workers(env: dict[str, str], k: int) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", WORKER, key], env={**env, "ROOT": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for key in keys(k)]


def finish(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({p.returncode}):\n{stderr[-3000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def reseed(store: Any) -> None:
    """Empty the emulator and load the seed again."""
    import urllib.request

    from opsloop.services.seed import load_seed

    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    url = f"http://{host}/emulator/v1/projects/{PROJECT}/databases/(default)/documents"
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=120).read()
    load_seed(store, ROOT / "seed")


class Fresh:
    """A new, warmed-up emulator for one measurement."""

    def __enter__(self) -> tuple[dict[str, str], Any, Any]:
        from opsloop.services.seed import load_seed
        from opsloop.store import client as client_mod
        from opsloop.store.firestore_store import FirestoreStore
        from scripts import emulator as emu_mod

        self.emu = emu_mod.start(PROJECT, log_dir=ROOT / ".emulator-logs")
        env = {**os.environ, "FIRESTORE_EMULATOR_HOST": self.emu.address, "GCLOUD_PROJECT": PROJECT}
        os.environ.update(env)
        client_mod.reset_for_tests()
        db = client_mod.get_db()
        raw_write(db, WARM_UP, seed=0)
        raw_read(db)
        self.emu.clear()
        store = FirestoreStore(db)
        load_seed(store, ROOT / "seed")
        return env, db, store

    def __exit__(self, *exc: object) -> None:
        self.emu.stop()


def configure(store: Any, k: int) -> Any:
    from opsloop.store.client import get_db
    from opsloop.store.firestore_store import FirestoreStore

    store.configs.set("scoring", {"safetyMarginMs": 0, "shards": k, "leaseTtlS": LEASE_TTL_S})
    fresh = FirestoreStore(get_db())  # its config cache reads shards = k
    if k > 1:  # adopt the layout first (as the scheduled run does), so workers find their keys current
        from opsloop.services import scoring

        scoring.score_observations(fresh, dt.datetime.now(dt.UTC))
    return fresh


def throughput(size: int, k: int) -> dict[str, Any]:
    with Fresh() as (env, db, store):
        from opsloop.domain.config import ScoringSettings
        from opsloop.services.scoring import READ_CHUNKS

        write_s = raw_write(db, size)
        _, read_s = raw_read(db)
        raw_rate = size / (write_s + read_s)
        # the scanner reads pages of READ_CHUNKS chunks: the emulator answers each query in about the time
        # of a scan of the collection, so the same reads in pages of that size are the fairer ceiling
        page = ScoringSettings().chunk_size * READ_CHUNKS
        _, page_read_s = raw_read(db, page)
        raw_page_rate = size / (write_s + page_read_s)
        reseed(store)
        fresh = configure(store, k)
        ingest_s = ingest(fresh, size, seed=k)
        t0 = time.perf_counter()
        workers = finish(start_workers(env, k))
        wall = time.perf_counter() - t0
        scored = sum(w["scored"] for w in workers)
        rewards = int(store.count("ops_rewards"))
        rate = scored / wall
        return {"workers": k, "size": size, "scored": scored, "rewards": rewards, "wallS": round(wall, 1),
                "perSecond": round(rate), "rawPerSecond": round(raw_rate), "ratioToRaw": round(rate / raw_rate, 3),
                "readPage": page, "rawSamePagePerSecond": round(raw_page_rate),
                "ratioToRawSamePage": round(rate / raw_page_rate, 3),
                "ingestPerSecond": round(size / ingest_s), "peakRssMb": [round(w["peakRssMb"]) for w in workers]}


def killed_and_rerun(size: int, k: int) -> dict[str, Any]:
    with Fresh() as (env, _db, store):
        fresh = configure(store, k)
        ingest(fresh, size, seed=99)
        procs = start_workers(env, k)
        deadline = time.monotonic() + 120
        while store.count("ops_rewards") < size // 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        at_kill = int(store.count("ops_rewards"))
        time.sleep(LEASE_TTL_S + 2)  # the killed workers' leases expire
        finish(start_workers(env, k))
        from opsloop.services import scoring

        final = scoring.score_observations(fresh, dt.datetime.now(dt.UTC))
        rewards = int(store.count("ops_rewards"))
        counted = 0
        for snap in store.db.collection("ops_buckets").where("level", "==", "1d").stream():
            counted += int((snap.to_dict() or {}).get("n", 0))
        n_1h = sum(int(d.get("n", 0)) for sid, d in final.stats.items() if sid.endswith("~1h"))
        ok = rewards == size and counted == size
        return {"workers": k, "size": size, "rewardsAtKill": at_kill, "rewards": rewards,
                "bucketCount1d": counted, "stats1hTotal": n_1h, "exactlyOnce": ok}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rss-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kill-size", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shards.json")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"command": "bench/shards.py " + " ".join(argv or sys.argv[1:]),
                              "cpus": os.cpu_count(), "throughput": [], "memory": []}
    for k in args.workers:
        row = throughput(args.size, k)
        report["throughput"].append(row)
        print("throughput", row, flush=True)
    for size in args.rss_sizes:
        if size == args.size and 1 in args.workers:
            row = next(r for r in report["throughput"] if r["workers"] == 1)
        else:
            row = throughput(size, 1)
        report["memory"].append({"size": size, "peakRssMb": row["peakRssMb"][0]})
        print("memory", report["memory"][-1], flush=True)
    report["killed"] = killed_and_rerun(args.kill_size, 4)
    print("killed", report["killed"], flush=True)
    write_report(args.out, report)
    return 0 if report["killed"]["exactlyOnce"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
