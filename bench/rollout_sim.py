"""How the canary decision behaves over a simulated week of hourly looks, across many seeds.

    .venv/bin/python bench/rollout_sim.py [--seeds 400]     # writes bench/results/rollout_sim.json

A/A runs give the false-promotion rate of our decision (always-valid mSPRT + Welch + guardrails) beside
that of a plain Welch t-test repeated every hour; B runs show how fast a better challenger is promoted
and a worse or slower one rolled back; an SRM run shows a broken 45/55 assignment being flagged.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import write_report  # noqa: E402
from bench.simulator import ArmTruth, RunResult, run_canary  # noqa: E402
from opsloop.domain.experiment import ArmData, RolloutConfig, evaluate  # noqa: E402


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def scenario(name: str, seeds: range, challenger: ArmTruth, cfg: RolloutConfig) -> dict[str, object]:
    t0 = time.monotonic()
    runs: list[RunResult] = [run_canary(s, ArmTruth(), challenger, cfg) for s in seeds]
    n = len(runs)
    promoted = [r for r in runs if r.outcome == "promote"]
    rolled = [r for r in runs if r.outcome == "rollback"]
    out = {
        "scenario": name,
        "runs": n,
        "promoted": len(promoted) / n,
        "rolledBack": len(rolled) / n,
        "undecided": (n - len(promoted) - len(rolled)) / n,
        "rolledBackBefore1000ChallengerObs": sum(r.challenger_n < 1000 for r in rolled) / n,
        "medianChallengerNAtPromotion": _median([r.challenger_n for r in promoted]),
        "medianChallengerNAtRollback": _median([r.challenger_n for r in rolled]),
        "medianHourOfDecision": _median([r.hour for r in runs if r.hour is not None]),
        "repeatedTTestPromoted": sum(r.ttest_promoted for r in runs) / n,
        "seconds": round(time.monotonic() - t0, 1),
    }
    print(f"  {name:<22} promoted {out['promoted']:6.1%}  rolled back {out['rolledBack']:6.1%}  "
          f"plain repeated t-test would promote {out['repeatedTTestPromoted']:6.1%}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rollout_sim.json")
    args = parser.parse_args(argv)
    cfg = RolloutConfig()
    print(f"canary simulation: 168 hourly looks, 600 requests/hour, 10% split, {args.seeds} seeds per scenario")
    k = args.seeds
    results = [
        scenario("A/A", range(0, k), ArmTruth(), cfg),
        scenario("better +0.05 reward", range(10_000, 10_000 + k // 4), ArmTruth(reward_mean=0.75 + 0.05 / 0.9), cfg),
        scenario("worse -0.05 reward", range(20_000, 20_000 + k // 4), ArmTruth(reward_mean=0.75 - 0.05 / 0.9), cfg),
        scenario("p95 latency +37%", range(30_000, 30_000 + k // 4), ArmTruth(latency_median_ms=1100), cfg),
    ]
    srm = evaluate(ArmData(1100, 0.7, 0.09, 0.9, 900.0, 0.02), ArmData(900, 0.7, 0.09, 0.9, 900.0, 0.02), 0.5, cfg)
    print(f"  SRM 45/55 vs 50/50: p={srm.srm_p:.2e}, flagged={srm.srm}, outcome={srm.outcome}")
    report = {
        "command": f"bench/rollout_sim.py --seeds {args.seeds}",
        "config": cfg.to_doc(),
        "scenarios": results,
        "srm": {"nChampion": 1100, "nChallenger": 900, "split": 0.5, "p": srm.srm_p, "flagged": srm.srm},
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
