"""The reward what-if against a plain export of the same rows: time, and memory that stays flat.

    .venv/bin/python bench/whatif_speed.py [--n 100000]      # writes bench/results/whatif_speed.json

On a fresh emulator: ``n`` observations of 20 components (and their rewards, written raw in batches of 500,
as ``bench/export_mem.py`` does), then ``export_dataset`` of those rows to Parquet and ``what_if`` of a
proposed config over the same window, each timed, with the Python heap's peak (tracemalloc) of each.
Issue 12's goal: a 100k-observation what-if within a few times a plain export.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import emulator_store, write_report  # noqa: E402
from bench.perf import PROJECT, observation  # noqa: E402

PROPOSAL = {"rules": [{"match": "svc:*", "version": "proposal-1", "terms": [
    {"name": "speed", "source": "durationMs", "weight": 0.5, "direction": "lower", "bound": 2000},
    {"name": "tokens", "source": "tokensOut", "weight": 0.2, "direction": "lower", "bound": 1000},
    {"name": "ok", "source": "success", "weight": 0.3, "direction": "higher"}]}]}


def timed(work: Any) -> tuple[Any, float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    out = work()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "whatif_speed.json")
    args = parser.parse_args(argv)

    import random

    from google.cloud import firestore

    from opsloop.services import whatif
    from opsloop.services.export import export_dataset
    from opsloop.services.seed import load_seed

    with emulator_store(PROJECT) as (_, db, store):
        load_seed(store, ROOT / "seed")
        rng = random.Random(7)
        now_ms = int(time.time() * 1000) - 60_000
        obs_col, rew_col = db.collection("ops_observations"), db.collection("ops_rewards")
        t0 = time.perf_counter()
        for start in range(0, args.n, 250):  # an observation and its reward each: 500 writes a batch
            batch = db.batch()
            for i in range(start, min(args.n, start + 250)):
                doc = observation(i, rng, now_ms, 6 * 3600_000)
                batch.set(obs_col.document(doc["id"]), {**doc, "receivedAt": firestore.SERVER_TIMESTAMP})
                batch.set(rew_col.document(doc["id"]), {"obsId": doc["id"], "ts": doc["ts"], "score": 0.5,
                                                        "rewardVersion": "1.0.0", "component": doc["component"]})
            batch.commit()
        print(f"wrote {args.n} observations and rewards in {time.perf_counter() - t0:.0f} s", flush=True)
        until = int(time.time() * 1000) + 1
        since = until - dt.timedelta(days=1) // dt.timedelta(milliseconds=1)
        with tempfile.TemporaryDirectory() as tmp:
            export, export_s, export_peak = timed(lambda: export_dataset(store, Path(tmp) / "x.parquet", since, until))
        result, whatif_s, whatif_peak = timed(lambda: whatif.what_if(store, PROPOSAL, days=1))
        report = {"command": f"bench/whatif_speed.py --n {args.n}", "observations": args.n,
                  "export": {"rows": export.manifest["rows"], "seconds": round(export_s, 1),
                             "peakHeapMiB": round(export_peak / 2**20, 1)},
                  "whatif": {"observations": result.observations, "seconds": round(whatif_s, 1),
                             "peakHeapMiB": round(whatif_peak / 2**20, 1), "components": len(result.components)},
                  "ratio": round(whatif_s / export_s, 2), "goal": "within a few times a plain export"}
        print(f"export {export_s:.1f} s (peak heap {export_peak / 2**20:.0f} MiB); what-if {whatif_s:.1f} s "
              f"(peak heap {whatif_peak / 2**20:.0f} MiB): {report['ratio']}x the export", flush=True)
        write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
