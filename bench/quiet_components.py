"""What a scoring run costs when most components are quiet, on a fresh Firestore emulator.

    .venv/bin/python bench/quiet_components.py [--quiet 980] [--active 20]   # bench/results/quiet_components.json

Three measurements of one scoring run each, the run after a first (full) run, in the same hour (so the
hourly skill cards, which read every component, are not due):

1. alone     only the ACTIVE components exist; each gets new observations, then a run
2. mixed     ACTIVE + QUIET components (the quiet ones have data spread over the last 6 days), the same
             new observations for the active ones, then a run: it refreshes the changed and due ones
3. full      the same as 2, but the run refreshes every component (what every run did before)
4. padded    the same as 1, with as many bucket documents as 2 holds written under a name no run reads
             (a control: the emulator answers a query by scanning the collection, Firestore from an index)

The goal (issue 15): mixed costs at most 2x alone, in wall time and in counted document reads. Each
measurement also times one bucket query: on the emulator its latency grows with the number of bucket
documents, which Firestore's indexed queries do not. The stats refresh gets buckets by id from each
component's record (``domain/presence``), so it no longer pays that latency; "padded" is the control that
shows it (the run over the 20 alone with as many bucket documents as "mixed").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import write_report  # noqa: E402
from bench.perf import WARM_UP, RpcCounter, raw_read, raw_write  # noqa: E402

PROJECT = "demo-opsloop"
HOUR = 3_600_000
DAY = 24 * HOUR
PER_ACTIVE = 5  # new observations per active component before the measured run


def observation(component: str, ts: int, rng: random.Random) -> dict[str, Any]:
    return {"component": component, "outcome": "success" if rng.random() < 0.9 else "failure",
            "durationMs": round(rng.lognormvariate(6, 0.5), 2), "costUsd": round(rng.uniform(0, 0.05), 5), "ts": ts}


def pad_buckets(store: Any, n: int, first_ms: int) -> None:
    """``n`` bucket documents of a generation no run reads ("#g0": generations start at 1)."""
    from opsloop.domain.stats import Summary

    doc = Summary.of(reward=0.5, success=True, cost_usd=0.01, duration_ms=100.0).to_doc()
    col = store.db.collection("ops_buckets")
    for i in range(0, n, 500):
        batch = store.db.batch()
        for j in range(i, min(n, i + 500)):
            start = first_ms - HOUR - (j % 2000) * 300_000
            batch.set(col.document(f"pad:{j:05d}#g0~5m~{start}"),
                      {"component": f"pad:{j:05d}#g0", "level": "5m", "start": start, **doc})
        batch.commit()


def measure(store: Any, counter: RpcCounter, active: list[str], quiet: list[str], first_ms: int,
            full: bool, pad: int = 0) -> dict[str, Any]:
    from opsloop.services import scoring
    from opsloop.services.record import record_batch

    rng = random.Random(7)
    at = dt.datetime.fromtimestamp
    history = [observation(c, first_ms - rng.randrange(5 * 60_000, 6 * DAY), rng) for c in quiet]
    history += [observation(c, first_ms - rng.randrange(5 * 60_000, HOUR), rng) for c in active]
    for i in range(0, len(history), 500):
        record_batch(store, {"observations": history[i : i + 500]})
    first = scoring.score_observations(store, at(first_ms / 1000, dt.UTC))
    pad_buckets(store, pad, first_ms)  # after the first run, which finds a new deployment (bucket_index)
    new = [observation(c, first_ms + rng.randrange(0, 5 * 60_000), rng) for c in active for _ in range(PER_ACTIVE)]
    for i in range(0, len(new), 500):
        record_batch(store, {"observations": new[i : i + 500]})
    reads, writes = counter.snapshot()
    t0 = time.perf_counter()
    run = scoring.score_observations(store, at((first_ms + 5 * 60_000) / 1000, dt.UTC), refresh_cards=full)
    seconds = time.perf_counter() - t0
    reads2, writes2 = counter.snapshot()
    # the emulator answers a query by scanning the collection: the same query slows as buckets accumulate
    # (Firestore serves it from an index). One active component's 1h buckets, 50 times:
    key = f"{active[0]}#g{run.generation}"
    t1 = time.perf_counter()
    for _ in range(50):
        store.buckets.series(key, "5m", first_ms - HOUR, first_ms + HOUR)
    query_ms = (time.perf_counter() - t1) / 50 * 1000
    return {"bucketQueryMs": round(query_ms, 2), "bucketDocs": int(store.count("ops_buckets")),
            "components": len(active) + len(quiet), "active": len(active), "firstRunStatsDocs": len(first.stats),
            "scored": run.scored, "statsDocs": len(run.stats), "statsFull": run.stats_full,
            "seconds": round(seconds, 3), "reads": reads2 - reads, "writes": writes2 - writes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quiet", type=int, default=980)
    parser.add_argument("--active", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quiet_components.json")
    args = parser.parse_args(argv)

    from opsloop.services.seed import load_seed
    from opsloop.store import client as client_mod
    from opsloop.store.firestore_store import FirestoreStore
    from scripts import emulator as emu_mod

    now = int(time.time() * 1000)
    first_ms = now - now % HOUR - HOUR + 10 * 60_000  # ten past the last full hour but one: in the past
    active = [f"svc:active-{i:03d}" for i in range(args.active)]
    quiet = [f"svc:quiet-{i:04d}" for i in range(args.quiet)]
    report: dict[str, Any] = {"command": f"bench/quiet_components.py --quiet {args.quiet} --active {args.active}"}
    runs = (("alone", [], False, 0), ("mixed", quiet, False, 0), ("full", quiet, True, 0),
            ("padded", [], False, -1))
    for name, quiet_set, full, pad in runs:
        if pad < 0:  # as many bucket documents as the mixed run held
            pad = report["mixed"]["bucketDocs"] - report["alone"]["bucketDocs"]
        emu = emu_mod.start(PROJECT, log_dir=ROOT / ".emulator-logs")
        os.environ.update({"FIRESTORE_EMULATOR_HOST": emu.address, "GCLOUD_PROJECT": PROJECT})
        client_mod.reset_for_tests()
        try:
            db = client_mod.get_db()
            raw_write(db, WARM_UP, seed=0)
            raw_read(db)
            emu.clear()
            store = FirestoreStore(db)
            load_seed(store, ROOT / "seed")
            store.configs.set("scoring", {"safetyMarginMs": 0})
            counter = RpcCounter(db)
            report[name] = measure(store, counter, active, quiet_set, first_ms, full, pad)
            print(name, report[name], flush=True)
        finally:
            emu.stop()
    alone, mixed = report["alone"], report["mixed"]
    report["ratio"] = {"seconds": round(mixed["seconds"] / alone["seconds"], 2),
                       "reads": round(mixed["reads"] / alone["reads"], 2)}
    report["ratio"]["bucketQueryMs"] = round(mixed["bucketQueryMs"] / alone["bucketQueryMs"], 2)
    padded = report["padded"]
    report["ratioToPadded"] = {"seconds": round(mixed["seconds"] / padded["seconds"], 2),
                               "reads": round(mixed["reads"] / padded["reads"], 2),
                               "bucketQueryMs": round(mixed["bucketQueryMs"] / padded["bucketQueryMs"], 2)}
    report["goalMet"] = report["ratio"]["seconds"] <= 2 and report["ratio"]["reads"] <= 2
    print("ratio", report["ratio"], "goal met" if report["goalMet"] else "goal NOT met", flush=True)
    print("ratio to padded", report["ratioToPadded"], flush=True)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
