"""Late feedback over HTTP: ``recordFeedback`` in batches of 100 and 500 against raw batched writes (issue 12).

    .venv/bin/python bench/feedback_http.py [--n 5000] [--repeats 3]   # writes bench/results/feedback_http.json

For each batch size, on one freshly started emulator (``bench.emulator_store``):

1. **raw**: ``n`` observation-shaped documents written by the plain client in batches of 500
   (``bench.perf.raw_write``; a 2,000-document warm-up first, the emulator cleared after each repeat);
2. the seed loaded, ``config/reward_config`` with a ``metric:judge`` term (``bench.feedback_cost.QUALITY``),
   ``(2 * repeats + 1) * n`` observations recorded and scored, so every feedback below is *late*;
3. **http**: the real functions served by ``scripts/serve.py`` (functions-framework, one process, the same
   server ``make serve`` and ``bench/perf.py`` use) against that emulator, and one client posting
   ``{"feedback": [...]}`` bodies of ``batch`` items (``observationId``, ``metrics.judge``, ``id``) to
   ``/recordFeedback`` with an unsigned emulator ID token of role ``service`` (``scripts.tokens``;
   ``FIREBASE_AUTH_EMULATOR_HOST`` set, as ``bench/perf.py`` does), one request at a time over a kept-alive
   session; every answer must be 201 with ``created == batch``. A warm-up of ``n`` items comes first;
4. **in process**: ``services.feedback.record_feedback`` with the same batches on other observations of the
   same emulator (what ``bench/feedback_cost.py`` measures), for the HTTP overhead.

Each of raw / http / in-process is repeated ``repeats`` times (http and in-process interleaved, each on
observations of its own) and the median taken; the ratio is items per second over raw documents per second.
Both the server and the emulator share this machine's cores with the client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import emulator_store, write_report  # noqa: E402
from bench.feedback_cost import QUALITY  # noqa: E402
from bench.perf import PROJECT, functions_server, raw_write  # noqa: E402


def items(prefix: str, lo: int, hi: int) -> list[dict[str, Any]]:
    return [{"observationId": f"{prefix}{j}", "metrics": {"judge": j % 10}, "id": f"f{prefix}{j}"}
            for j in range(lo, hi)]


def post_all(base: str, prefix: str, n: int, size: int) -> float:
    """POST feedback for observations ``prefix0..prefix{n-1}`` in bodies of ``size``; returns seconds."""
    import requests

    from scripts.tokens import bearer, emulator_token

    headers = bearer(emulator_token("bench", project=PROJECT, role="service"))
    session = requests.Session()
    t0 = time.perf_counter()
    for i in range(0, n, size):
        batch = items(prefix, i, min(n, i + size))
        r = session.post(f"{base}/recordFeedback", json={"feedback": batch}, headers=headers, timeout=300)
        if r.status_code != 201 or r.json().get("created") != len(batch):
            raise RuntimeError(f"recordFeedback answered {r.status_code}: {r.text[:500]}")
    return time.perf_counter() - t0


def in_process(store: Any, prefix: str, n: int, size: int) -> float:
    from opsloop.services.feedback import record_feedback

    t0 = time.perf_counter()
    for i in range(0, n, size):
        batch = items(prefix, i, min(n, i + size))
        if len(record_feedback(store, {"feedback": batch}).created) != len(batch):
            raise RuntimeError("record_feedback created fewer than it was given")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="feedback items per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "feedback_http.json")
    args = parser.parse_args(argv)

    import datetime as dt

    from opsloop.services import scoring
    from opsloop.services.record import record_batch
    from opsloop.services.seed import load_seed

    n, reps = args.n, args.repeats
    report: dict[str, Any] = {"command": f"bench/feedback_http.py --n {n} --repeats {reps} --sizes "
                                         + " ".join(map(str, args.sizes)), "batches": {}}
    started = time.perf_counter()
    for size in args.sizes:
        with emulator_store(PROJECT) as (emu, db, store):
            raw_write(db, 2000, seed=0)  # warm the JVM, then measure the ceiling on it
            emu.clear()
            raw = []
            for r in range(reps):
                raw.append(n / raw_write(db, n, seed=3 + r))
                emu.clear()
            load_seed(store, ROOT / "seed")
            store.configs.set("scoring", {"safetyMarginMs": 0})
            store.configs.set("reward_config", QUALITY)
            now_ms = int(time.time() * 1000) - 60_000
            prefixes = ["w", *(f"h{r}-" for r in range(reps)), *(f"p{r}-" for r in range(reps))]
            obs = [{"id": f"{p}{i}", "ts": now_ms, "component": f"router:m{i % 5}", "outcome": "success",
                    "durationMs": 100.0 + i % 400, "costUsd": 0.01} for p in prefixes for i in range(n)]
            for i in range(0, len(obs), 500):
                record_batch(store, {"observations": obs[i : i + 500]})
            scoring.score_observations(store, dt.datetime.now(dt.UTC))
            env = {**os.environ, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}
            http, inproc = [], []
            with functions_server(env) as base:
                post_all(base, "w", n, size)  # warm-up: the server's first requests import and connect
                for r in range(reps):
                    http.append(n / post_all(base, f"h{r}-", n, size))
                    inproc.append(n / in_process(store, f"p{r}-", n, size))
            raw_rate, http_rate, in_rate = (statistics.median(x) for x in (raw, http, inproc))
            row = {
                "feedback": n, "repeats": reps,
                "rawWritesPerS": round(raw_rate), "httpPerS": round(http_rate), "inProcessPerS": round(in_rate),
                "httpRatioOfRawWrites": round(http_rate / raw_rate, 3),
                "inProcessRatioOfRawWrites": round(in_rate / raw_rate, 3),
                "httpRatioOfInProcess": round(http_rate / in_rate, 3),
                "runs": {"raw": [round(x) for x in raw], "http": [round(x) for x in http],
                         "inProcess": [round(x) for x in inproc]},
            }
            report["batches"][str(size)] = row
            print(f"batches of {size}: HTTP {row['httpPerS']}/s = {row['httpRatioOfRawWrites']:.3f} of raw batched "
                  f"writes ({row['rawWritesPerS']}/s); in process {row['inProcessPerS']}/s = "
                  f"{row['inProcessRatioOfRawWrites']:.3f}; runs {row['runs']}", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
