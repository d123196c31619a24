"""Dataset export: memory stays flat as the export grows (streaming), and its speed vs raw reads.

    .venv/bin/python bench/export_mem.py [--sizes 10000 50000]     # writes bench/results/export.json

For each size, against a fresh emulator: write that many observations and their rewards with the plain
client (batches of 500), read the observations raw by query pages (the ceiling), then run
``opsloop export`` in a child process and take its peak RSS and wall time. Flat RSS across sizes is what
streaming means: one page (5,000 rows) in memory, not the export.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import write_report  # noqa: E402
from bench.perf import PROJECT, raw_read, raw_write  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
sys.path[:0] = [os.environ["ROOT"] + "/functions"]
from opsloop.cli import main
t0 = time.perf_counter()
code = main(["export", "--since", "0", "--out", os.environ["OUT"], "--quiet"])
wall = time.perf_counter() - t0
print(json.dumps({"code": code, "wall": wall, "peakRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_rewards(db: Any, seed: int) -> int:
    """A reward document for every observation (what scoring would leave), in batches of 500."""
    rng = random.Random(seed)
    col = db.collection("ops_rewards")
    n, batch = 0, db.batch()
    for snap in db.collection("ops_observations").select(["ts", "component"]).stream():
        d = snap.to_dict() or {}
        batch.set(col.document(snap.id), {"obsId": snap.id, "ts": d.get("ts"), "component": d.get("component"),
                                          "score": round(rng.random(), 6), "rewardVersion": "1.0.0",
                                          "details": {"successBoost": 0.6, "latencyPenalty": 0.01,
                                                      "costPenalty": 0.02, "errorPenalty": 0.0}})
        n += 1
        if n % 500 == 0:
            batch.commit()
            batch = db.batch()
    batch.commit()
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export.json")
    args = parser.parse_args(argv)

    from scripts import emulator as emu_mod

    emu = emu_mod.start(PROJECT, log_dir=ROOT / ".emulator-logs")
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.address, "GCLOUD_PROJECT": PROJECT, "ROOT": str(ROOT)}
    os.environ.update(env)
    report: dict[str, Any] = {"command": "bench/export_mem.py --sizes " + " ".join(map(str, args.sizes)),
                              "runs": []}
    try:
        from opsloop.store.client import get_db

        db = get_db()
        for size in args.sizes:
            emu.clear()
            raw_write(db, size, span_ms=24 * 3600_000, seed=size)
            write_rewards(db, seed=size)
            rn, rs = raw_read(db)
            out = ROOT / ".emulator-logs" / f"export-{size}.parquet"
            res = subprocess.run([sys.executable, "-c", CHILD], env={**env, "OUT": str(out)}, capture_output=True,
                                 text=True, timeout=3600, check=True)
            child = json.loads(res.stdout.strip().splitlines()[-1])
            manifest = json.loads(Path(str(out) + ".manifest.json").read_text())
            row = {"rows": manifest["rows"], "rowGroups": manifest["rowGroups"], "wallS": round(child["wall"], 2),
                   "rowsPerS": round(manifest["rows"] / child["wall"]), "rawReadsPerS": round(rn / rs),
                   "shareOfRawReads": round(manifest["rows"] / child["wall"] / (rn / rs), 3),
                   "peakRssMb": round(child["peakRssMb"], 1), "fileMb": round(out.stat().st_size / 2**20, 2)}
            assert child["code"] == 0 and manifest["rows"] == size, (child, manifest["rows"], size)
            report["runs"].append(row)
            print(f"export of {size}: {row['rowsPerS']} rows/s ({row['shareOfRawReads']:.0%} of raw reads, which "
                  f"do not join rewards), peak RSS {row['peakRssMb']} MB, {row['fileMb']} MB file", flush=True)
            out.unlink()
            Path(str(out) + ".manifest.json").unlink()
        first, last = report["runs"][0], report["runs"][-1]
        report["rssGrowthMbPer10kRows"] = round((last["peakRssMb"] - first["peakRssMb"])
                                                / max(1, (last["rows"] - first["rows"]) / 10_000), 2)
        print(f"peak RSS grows {report['rssGrowthMbPer10kRows']} MB per 10k more rows")
    finally:
        emu.stop()
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
