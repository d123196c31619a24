"""The reward backfill against the scorer: throughput on the same observations, and memory that stays flat.

    .venv/bin/python bench/backfill_speed.py [--n 100000]      # writes bench/results/backfill_speed.json

On a fresh emulator: ``n`` observations (``bench/perf.py``'s shape: 20 components, written raw in batches of
500) are scored by ``score_observations`` in one run; then ``config/reward_config`` changes (a rule with its
own formula for every component), and ``generations.backfill`` re-scores all of them under the new
generation, as ``opsloop reward backfill`` does. Both are timed, with the Python heap's peak (tracemalloc)
of the backfill at n/5 and at n observations. Issue 12's goal: the backfill's throughput at least 0.8 of
the scorer's, with flat memory.
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
from bench.perf import PROJECT, raw_write  # noqa: E402
from bench.whatif_speed import PROPOSAL, timed  # noqa: E402  (a formula of its own for every svc:* component)


def measure(n: int) -> dict[str, Any]:
    from opsloop.domain.config import ScoringSettings
    from opsloop.services import config as config_service
    from opsloop.services import generations, scoring
    from opsloop.services.seed import load_seed

    with emulator_store(PROJECT) as (_, db, store):
        load_seed(store, ROOT / "seed")
        raw_write(db, n, span_ms=6 * 3600_000, seed=5)
        time.sleep(0.1)
        settings = ScoringSettings(safety_margin_ms=0, run_budget_s=3600)
        t0 = time.perf_counter()
        run = scoring.score_observations(store, dt.datetime.now(dt.UTC), settings=settings)
        score_s = time.perf_counter() - t0
        assert run.scored == n, run
        store.configs.set("reward_config", PROPOSAL, merge=False)
        gens = generations.adopt(store, config_service.load(store).reward_rules)
        assert gens.backfilling, gens
        result, backfill_s, peak = timed(lambda: generations.backfill(store))
        assert result.done and result.scored == n, result
        folded_t0 = time.perf_counter()
        scoring.fold_all(store)
        fold_s = time.perf_counter() - folded_t0
        print(f"n={n}: scorer {n / score_s:,.0f} obs/s ({score_s:.0f} s); backfill {n / backfill_s:,.0f} obs/s "
              f"({backfill_s:.0f} s, then {fold_s:.1f} s folding), peak heap {peak / 2**20:.0f} MiB", flush=True)
        return {"observations": n, "scorer": {"seconds": round(score_s, 1), "perSecond": round(n / score_s)},
                "backfill": {"seconds": round(backfill_s, 1), "perSecond": round(n / backfill_s),
                             "chunks": result.chunks, "foldSeconds": round(fold_s, 1),
                             "peakHeapMiB": round(peak / 2**20, 1)},
                "ratio": round(score_s / (backfill_s + fold_s), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "backfill_speed.json")
    args = parser.parse_args(argv)
    small, large = measure(args.n // 5), measure(args.n)
    report = {"command": f"bench/backfill_speed.py --n {args.n}", "runs": [small, large],
              "ratio": large["ratio"], "goal": 0.8, "met": large["ratio"] >= 0.8,
              "flatMemory": large["backfill"]["peakHeapMiB"] <= 1.5 * small["backfill"]["peakHeapMiB"] + 5}
    print(f"backfill/scorer throughput: {report['ratio']} (goal >= 0.8); peak heap "
          f"{small['backfill']['peakHeapMiB']} -> {large['backfill']['peakHeapMiB']} MiB", flush=True)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
