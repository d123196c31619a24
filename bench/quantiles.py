"""How accurate are the p50/p95/p99 latencies of merged windows? The stats sketch beside a 200-sample cap.

    .venv/bin/python bench/quantiles.py [--trials 5] [--max-per-bucket 5000]   # writes bench/results/quantiles.json

Each hourly bucket is a ``Summary`` whose latency DDSketch is built by adding the bucket's values (the
same sketch ``scoreObservations`` keeps), serialised and parsed back as a bucket document would be, and
windows are ``total()`` of 24 and 168 buckets, as ``window_summaries`` computes them. The reference is the
exact quantile of every value in the window: ``np.quantile(..., method="lower")`` (the order statistic
DDSketch's relative-accuracy guarantee is about) and numpy's default ``linear`` method.

Beside it, the seed design's approach: "cap latencies arrays at 200 samples" per bucket. We keep the
*first* 200 values of each bucket (the array stops growing once full); values inside a bucket are i.i.d.
here, so this is distributed exactly like a 200-sample reservoir. A window concatenates the capped
arrays and takes ``np.quantile`` (default ``linear``) of the result.

Bucket sizes follow a daily load curve between ~1,000 and 5,000 values. Four latency worlds:
lognormal, bimodal (fast cache hits + slow misses), heavy-tailed Pareto (tail index 1.5: infinite
variance), and lognormal whose median rises with the hour's load (busy hours are slower), which is
where a per-bucket cap also weights quiet hours as much as busy ones.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from ddsketch import DDSketch  # noqa: E402

from bench import write_report  # noqa: E402
from opsloop.domain.stats import SKETCH_RELATIVE_ACCURACY, Summary, total  # noqa: E402

QUANTILES = (0.5, 0.95, 0.99)
WINDOWS = (24, 168)  # hourly buckets merged
CAP = 200
TARGET = 0.01

Sampler = Callable[[np.random.Generator, int, float], np.ndarray]  # (rng, n, load in [0, 1]) -> latencies ms


def _lognormal(rng: np.random.Generator, n: int, load: float) -> np.ndarray:
    return rng.lognormal(math.log(800.0), 0.6, n)


def _bimodal(rng: np.random.Generator, n: int, load: float) -> np.ndarray:
    slow = rng.random(n) < 0.15
    return np.where(slow, rng.lognormal(math.log(2500.0), 0.4, n), rng.lognormal(math.log(300.0), 0.3, n))


def _pareto(rng: np.random.Generator, n: int, load: float) -> np.ndarray:
    return 200.0 * (1.0 + rng.pareto(1.5, n))  # classical Pareto, x_m = 200 ms, tail index 1.5


def _lognormal_load(rng: np.random.Generator, n: int, load: float) -> np.ndarray:
    return rng.lognormal(math.log(600.0 * (1.0 + 1.0 * load)), 0.5, n)  # busy hours twice as slow


WORLDS: dict[str, Sampler] = {
    "lognormal": _lognormal,
    "bimodal": _bimodal,
    "pareto a=1.5": _pareto,
    "lognormal, load-dependent": _lognormal_load,
}


def _load(hour: int) -> float:
    """Daily load curve in [0, 1]: quiet at 04:00, busiest at 16:00."""
    return 0.5 - 0.5 * math.cos(2.0 * math.pi * ((hour - 4) % 24) / 24.0)


def bucket_summary(latencies: np.ndarray) -> Summary:
    """One hourly bucket as scoring stores it: a Summary with a latency sketch, through its document form."""
    sketch = DDSketch(SKETCH_RELATIVE_ACCURACY)
    for v in latencies.tolist():
        sketch.add(v)
    summary = Summary(n=len(latencies), successes=len(latencies), sum_latency=float(latencies.sum()),
                      latency=sketch)
    return Summary.from_doc(summary.to_doc())


def _rel(estimate: float, exact: float) -> float:
    return abs(estimate - exact) / exact


def trial(world: Sampler, seed: int, max_per_bucket: int) -> tuple[list[dict[str, object]], float]:
    rng = np.random.default_rng(seed)
    hours = max(WINDOWS)
    values: list[np.ndarray] = []
    buckets: list[Summary] = []
    sketch_bytes = 0
    for h in range(hours):
        load = _load(h)
        n = round(max_per_bucket * (0.2 + 0.8 * load))
        lat = world(rng, n, load)
        values.append(lat)
        b = bucket_summary(lat)
        sketch_bytes += len(b.to_doc()["latencySketch"])
        buckets.append(b)
    rows = []
    for k in WINDOWS:
        exact_all = np.concatenate(values[:k])
        capped = np.concatenate([v[:CAP] for v in values[:k]])
        merged = total(buckets[:k])
        assert merged.n == len(exact_all)
        for q in QUANTILES:
            lower = float(np.quantile(exact_all, q, method="lower"))
            linear = float(np.quantile(exact_all, q))
            sk = merged.latency_quantile(q)
            assert sk is not None
            cap = float(np.quantile(capped, q))
            rows.append({"buckets": k, "q": q, "n": len(exact_all), "nCapped": len(capped),
                         "exactLower": lower, "exactLinear": linear, "sketch": sk, "cap200": cap,
                         "sketchErrLower": _rel(sk, lower), "sketchErrLinear": _rel(sk, linear),
                         "cap200ErrLower": _rel(cap, lower), "cap200ErrLinear": _rel(cap, linear)})
    return rows, sketch_bytes / hours


ERR_KEYS = ("sketchErrLower", "sketchErrLinear", "cap200ErrLower", "cap200ErrLinear")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5, help="seeds per world (errors: max and mean over them)")
    parser.add_argument("--max-per-bucket", type=int, default=5000, help="values in the busiest hour's bucket")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quantiles.json")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    print(f"latency quantiles of merged hourly buckets: {args.trials} seeds per world, "
          f"{int(args.max_per_bucket * 0.2)}-{args.max_per_bucket} values per bucket, "
          f"sketch relative accuracy {SKETCH_RELATIVE_ACCURACY}, cap {CAP} (first values of each bucket)")
    print("relative errors, worst over seeds (mean in parentheses); 'lower'/'linear' = numpy method of the exact")
    header = (f"{'world':<26} {'bkts':>4} {'q':>4} {'n':>7} {'exact lower':>11} "
              f"{'sketch/lower':>15} {'sketch/linear':>15} {'cap200/lower':>15} {'cap200/linear':>15}")
    print(header)
    print("-" * len(header))
    results = []
    worst_sketch = 0.0
    for wi, (name, world) in enumerate(WORLDS.items()):
        per_trial = []
        sizes = []
        for s in range(args.trials):
            rows, size = trial(world, 1000 * wi + s, args.max_per_bucket)
            per_trial.append(rows)
            sizes.append(size)
        for i, first in enumerate(per_trial[0]):
            errs = {key: [t[i][key] for t in per_trial] for key in ERR_KEYS}
            row = {"world": name, "buckets": first["buckets"], "q": first["q"], "n": first["n"],
                   "nCapped": first["nCapped"], "exactLowerSeed0": first["exactLower"],
                   **{f"{key}Max": max(v) for key, v in errs.items()},
                   **{f"{key}Mean": sum(v) / len(v) for key, v in errs.items()}}
            worst_sketch = max(worst_sketch, row["sketchErrLowerMax"])
            results.append(row)
            cells = " ".join(f"{row[key + 'Max']:>7.2%} ({row[key + 'Mean']:>5.2%})" for key in ERR_KEYS)
            print(f"{name:<26} {first['buckets']:>4} {first['q']:>4} {first['n']:>7} "
                  f"{first['exactLower']:>11.1f} {cells}")
        results.append({"world": name, "meanSketchBytesPerBucket": sum(sizes) / len(sizes),
                        "cap200BytesPerBucket": CAP * 8})
    seconds = round(time.monotonic() - t0, 1)
    print(f"worst sketch error vs exact (lower): {worst_sketch:.3%} (target <= {TARGET:.0%}); {seconds} s")
    report = {
        "command": f"bench/quantiles.py --trials {args.trials} --max-per-bucket {args.max_per_bucket}",
        "relativeAccuracy": SKETCH_RELATIVE_ACCURACY,
        "cap": CAP,
        "capMethod": "first 200 values of each bucket, concatenated, np.quantile (linear)",
        "target": TARGET,
        "worstSketchErrLower": worst_sketch,
        "seconds": seconds,
        "rows": [r for r in results if "q" in r],
        "sizes": [r for r in results if "q" not in r],
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
