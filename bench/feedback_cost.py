"""What late feedback costs: Firestore operations per feedback, and its throughput against raw writes.

    .venv/bin/python bench/feedback_cost.py [--n 2000]      # writes bench/results/feedback_cost.json

On a fresh emulator: ``n`` observations are recorded and scored (no metric yet), then feedback for every one
is recorded in process (``record_feedback``, batches of 100 and of 500: each corrects its scored rewards and
buckets in its own transaction), then whatever waits for the scorer is applied (``scoring.apply_feedback``)
and the bucket corrections are folded. Document reads and writes are counted
by instrumenting the client's RPCs (``bench.perf.RpcCounter``); the recording throughput is compared with
writing the same number of documents in raw batches of 500 on the same emulator. Issue 12's goal: at most
3 operations per feedback, amortised.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import emulator_store, write_report  # noqa: E402
from bench.perf import PROJECT, RpcCounter, raw_write  # noqa: E402

QUALITY = {"rules": [{"match": "router:*", "version": "quality-1", "terms": [
    {"name": "quality", "source": "metric:judge", "weight": 0.6, "direction": "higher",
     "range": {"min": 0, "max": 10}, "missing": "skip"},
    {"name": "latency", "source": "durationMs", "weight": 0.4, "direction": "lower", "bound": 1000}]}]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="observations, and feedback items, per batch size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "feedback_cost.json")
    args = parser.parse_args(argv)

    from opsloop.services import feedback, generations, scoring
    from opsloop.services.record import record_batch
    from opsloop.services.seed import load_seed

    report: dict[str, Any] = {"command": f"bench/feedback_cost.py --n {args.n}", "goalOpsPerFeedback": 3,
                              "batches": {}}
    started = time.perf_counter()
    for size in (100, 500):
        with emulator_store(PROJECT) as (emu, db, store):
            raw_write(db, 2000, seed=0)  # warm the JVM, then measure the ceiling on it
            emu.clear()
            raw_s = raw_write(db, args.n, seed=3)
            emu.clear()
            load_seed(store, ROOT / "seed")
            store.configs.set("scoring", {"safetyMarginMs": 0})
            store.configs.set("reward_config", QUALITY)
            now_ms = int(time.time() * 1000) - 60_000
            obs = [{"id": f"o{i}", "ts": now_ms, "component": f"router:m{i % 5}", "outcome": "success",
                    "durationMs": 100.0 + i % 400, "costUsd": 0.01} for i in range(args.n)]
            for i in range(0, args.n, 500):
                record_batch(store, {"observations": obs[i : i + 500]})
            scoring.score_observations(store, dt.datetime.now(dt.UTC))
            counter = RpcCounter(db)
            t0 = time.perf_counter()
            for i in range(0, args.n, size):
                feedback.record_feedback(store, {"feedback": [
                    {"observationId": f"o{j}", "metrics": {"judge": j % 10}, "id": f"f{j}"}
                    for j in range(i, min(args.n, i + size))]})
            record_s = time.perf_counter() - t0
            rec_r, rec_w = counter.snapshot()
            gens = generations.current(store)
            t1 = time.perf_counter()
            applied: dict[str, int] = {}
            while True:  # what waits for the scorer (feedback for observations scored after it arrived: none)
                got = scoring.apply_feedback(store, gens)
                if not got:
                    break
                for k, v in got.items():
                    applied[k] = applied.get(k, 0) + v
            scoring.fold_all(store)
            apply_s = time.perf_counter() - t1
            all_r, all_w = counter.snapshot()
            n = args.n
            row = {
                "feedback": n, "applied": applied,
                "record": {"readsPerFeedback": round(rec_r / n, 2), "writesPerFeedback": round(rec_w / n, 2),
                           "perS": round(n / record_s), "rawWritesPerS": round(n / raw_s),
                           "ratioOfRawWrites": round(raw_s / record_s, 3)},
                "applyAndFold": {"readsPerFeedback": round((all_r - rec_r) / n, 2),
                                 "writesPerFeedback": round((all_w - rec_w) / n, 2), "perS": round(n / apply_s)},
                "opsPerFeedback": round((all_r + all_w) / n, 2),
            }
            report["batches"][str(size)] = row
            print(f"batches of {size}: record {row['record']['perS']}/s "
                  f"({row['record']['ratioOfRawWrites']:.2f} of raw batched writes), "
                  f"{row['record']['readsPerFeedback']} reads + {row['record']['writesPerFeedback']} writes each; "
                  f"apply + fold {row['applyAndFold']['perS']}/s, {row['applyAndFold']['readsPerFeedback']} reads + "
                  f"{row['applyAndFold']['writesPerFeedback']} writes each; {row['opsPerFeedback']} ops per feedback "
                  f"(goal <= 3)", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
