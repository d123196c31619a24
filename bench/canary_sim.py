"""Canary decisions under continuous peeking: today's rule beside the new one, on the same simulated data.

    .venv/bin/python bench/canary_sim.py [--seeds 300] [--days 14] [--workers 2]
                                                            # writes bench/results/canary_sim.json

A look every 10 minutes for 14 days. Traffic follows a daily cycle (60 requests per 10 minutes on average,
x0.5 at night to x1.5 at the peak), and so does latency (+-25 %). Latency worlds: lognormal with p95/p50 of
2 ("realistic") and 6 ("skewed"), and a lognormal whose slowest 3 % come from a Pareto tail ("heavy tail").
Splits of 20 % and 50 %. Cases: A/A; a challenger better by +0.02 and +0.05 reward; worse by -0.03 reward,
-3 points of success rate, +30 % latency (p95 +30 %), +30 % cost; and a broken 47/53 assignment against a
configured 50/50; trade-offs (+0.05 reward with +30 % latency or cost: must not be promoted) and changes
within tolerance (+15 % latency or cost, a third of the seeds). Each seed draws one stream of requests;
both rules look at the same stream (``old``: ``bench/legacy_rule.py``, today's rule with its config;
``new``: ``opsloop.domain.experiment``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import legacy_rule, write_report  # noqa: E402
from bench.simulator import _Acc  # noqa: E402
from opsloop.domain.experiment import RolloutConfig, Running, evaluate  # noqa: E402

LOOKS_PER_DAY = 144
PER_LOOK = 60.0
SUCCESS = 0.9
REWARD_OF_SUCCESS = 0.75
MEDIAN_MS = 800.0
NEW_CFG = RolloutConfig()
OLD_CFG = RolloutConfig(alpha=0.05, tau=0.05, guardrail_alpha=0.05, srm_alpha=0.001)  # today's seeded config/rollout


@dataclass(frozen=True)
class World:
    name: str
    sigma: float  # log-sd of latency
    tail_share: float = 0.0  # share of requests from a Pareto tail
    tail_alpha: float = 1.5


WORLDS = (
    World("realistic p95/p50=2", math.log(2) / 1.6449),
    World("skewed p95/p50=6", math.log(6) / 1.6449),
    World("heavy tail (3% Pareto)", math.log(2) / 1.6449, tail_share=0.03),
)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # aa | better | worse | srm
    reward: float = 0.0  # mean reward difference
    success: float = 0.0  # success-rate difference
    latency: float = 1.0  # latency multiplier
    cost: float = 1.0
    actual_split: float | None = None
    seeds: float = 1.0  # share of --seeds (the costly cases that run for all 14 days get fewer)


CASES = (
    Case("A/A", "aa"),
    Case("better +0.02", "better", reward=0.02),
    Case("better +0.05", "better", reward=0.05),
    Case("worse -0.03 reward", "worse", reward=-0.03),
    Case("worse -3 pp success", "worse", success=-0.03),
    Case("worse +30% latency", "worse", latency=1.3),
    Case("worse +30% cost", "worse", cost=1.3),
    Case("SRM 47/53 vs 50/50", "srm", actual_split=0.47),
    # trade-offs: better reward, worse on a guardrail (must not be promoted); and within tolerance
    Case("+0.05 reward, +30% latency", "worse", reward=0.05, latency=1.3),
    Case("+0.05 reward, +30% cost", "worse", reward=0.05, cost=1.3),
    Case("within: +15% latency", "within", latency=1.15, seeds=1 / 3),
    Case("within: +15% cost", "within", cost=1.15, seeds=1 / 3),
)


def _draw(rng: np.random.Generator, n: int, world: World, case: Case | None, look: int) -> tuple[np.ndarray, ...]:
    success_rate = SUCCESS + (case.success if case else 0.0)
    reward_mean = REWARD_OF_SUCCESS + ((case.reward / success_rate) if case else 0.0)
    success = rng.random(n) < success_rate
    rewards = np.where(success, np.clip(rng.normal(reward_mean, 0.12, n), 0, 1), 0.0)
    daily = 1.0 + 0.25 * math.sin(2 * math.pi * look / LOOKS_PER_DAY)
    latency = MEDIAN_MS * daily * np.exp(world.sigma * rng.standard_normal(n))
    if world.tail_share:
        tail = rng.random(n) < world.tail_share
        latency = np.where(tail, MEDIAN_MS * daily * 2.0 * (1.0 + rng.pareto(world.tail_alpha, n)), latency)
    latency *= case.latency if case else 1.0
    cost = 0.02 * (case.cost if case else 1.0) * rng.gamma(4.0, 0.25, n)
    return rewards, success, latency, cost


def run(job: tuple[int, int, int, float, int]) -> dict[str, Any]:
    """One seed of one (world, case, split): both rules until each decides or the days run out."""
    w, c, seed, split, looks = job
    world, case = WORLDS[w], CASES[c]
    rng = np.random.default_rng([w, c, int(split * 100), seed])
    acc = {"cp": _Acc(), "ch": _Acc()}
    share = case.actual_split if case.actual_split is not None else split
    running, old_p = Running(), None
    out: dict[str, Any] = {"new": None, "old": None, "newSrmLook": None, "oldSrmLook": None}
    for look in range(1, looks + 1):
        n = int(rng.poisson(PER_LOOK * (1.0 + 0.5 * math.sin(2 * math.pi * look / LOOKS_PER_DAY - 1.0))))
        n_ch = int(rng.binomial(n, share))
        acc["cp"].add(*_draw(rng, n - n_ch, world, None, look))
        acc["ch"].add(*_draw(rng, n_ch, world, case, look))
        cp, ch = acc["cp"].data(), acc["ch"].data()
        if out["new"] is None or out["newSrmLook"] is None:
            ev = evaluate(cp, ch, split, NEW_CFG, running)
            running = ev.running
            if ev.srm and out["newSrmLook"] is None:
                out["newSrmLook"] = look
            if out["new"] is None and ev.outcome in ("promote", "rollback"):
                out["new"] = (ev.outcome, look, ch.n, ev.reason.split(" (")[0])
        if out["old"] is None or out["oldSrmLook"] is None:
            old = legacy_rule.evaluate(cp, ch, split, OLD_CFG, old_p)
            old_p = old.msprt_p
            if old.srm and out["oldSrmLook"] is None:
                out["oldSrmLook"] = look
            if out["old"] is None and old.outcome in ("promote", "rollback"):
                out["old"] = (old.outcome, look, ch.n, old.reason.split(" (")[0])
        decided = out["new"] is not None and out["old"] is not None
        if decided and (case.kind != "srm" or (out["newSrmLook"] and out["oldSrmLook"])) and case.kind != "aa":
            break
    return out


def summarize(runs: list[dict[str, Any]], rule: str, case: Case) -> dict[str, Any]:
    n = len(runs)
    decided = [r[rule] for r in runs if r[rule] is not None]
    promoted = [d for d in decided if d[0] == "promote"]
    rolled = [d for d in decided if d[0] == "rollback"]
    srm_looks = [r[f"{rule}SrmLook"] for r in runs if r[f"{rule}SrmLook"] is not None]
    reasons: dict[str, int] = {}
    for d in rolled:
        reasons[d[3]] = reasons.get(d[3], 0) + 1
    return {
        "promoted": len(promoted) / n,
        "rolledBack": len(rolled) / n,
        "falseDecisions": (len(promoted) + len(rolled)) / n if case.kind == "aa" else None,
        "medianChallengerNAtPromotion": statistics.median([d[2] for d in promoted]) if promoted else None,
        "medianChallengerNAtRollback": statistics.median([d[2] for d in rolled]) if rolled else None,
        "rollbackReasons": reasons,
        "srmFlagged": len(srm_looks) / n,
        "srmFlaggedWithin24h": sum(1 for s in srm_looks if s <= LOOKS_PER_DAY) / n,
    }


def jobs(args: argparse.Namespace) -> Iterator[tuple[tuple[int, int, float], list[tuple[int, int, int, float, int]]]]:
    for w in range(len(WORLDS)):
        for split in args.splits:
            for c, case in enumerate(CASES):
                if case.kind == "srm" and split != 0.5:
                    continue
                if not (any(k in WORLDS[w].name for k in args.worlds) and any(k in case.name for k in args.cases)):
                    continue
                seeds = max(1, round(args.seeds * case.seeds))
                yield (w, c, split), [(w, c, s, split, args.days * LOOKS_PER_DAY) for s in range(seeds)]


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _n(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The docs/BENCHMARKS.md table of a results file: every row, old -> new."""
    lines = ["| world | split | case (seeds) | promoted old → new | rolled back old → new | "
             "median challenger n at decision old → new | new rule's rollbacks by reason |",
             "|---|---|---|---|---|---|---|"]
    for row in report["cases"]:
        o, nw, kind = row["old"], row["new"], row["kind"]
        case = f"{row['case']} ({row['seeds']})"
        if kind == "aa":
            case += f"; SRM flagged at some look {_pct(o['srmFlagged'])} → {_pct(nw['srmFlagged'])}"
        if kind == "srm":
            case += f": flagged within 24 h {_pct(o['srmFlaggedWithin24h'])} → **{_pct(nw['srmFlaggedWithin24h'])}**"
        key = "medianChallengerNAtPromotion" if kind == "better" else "medianChallengerNAtRollback"
        median = "–" if kind in ("aa", "srm") else f"{_n(o[key])} → {_n(nw[key])}"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(nw["rollbackReasons"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {row['world']} | {int(row['split'] * 100)} % | {case} | {_pct(o['promoted'])} → "
                     f"**{_pct(nw['promoted'])}** | {_pct(o['rolledBack'])} → **{_pct(nw['rolledBack'])}** | "
                     f"{median} | {reasons or '–'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--splits", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worlds", nargs="+", default=[""], help="only worlds whose name contains one of these")
    parser.add_argument("--cases", nargs="+", default=[""], help="only cases whose name contains one of these")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "canary_sim.json")
    parser.add_argument("--markdown", type=Path, help="print the table of an earlier results file and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    print(f"canary simulation: a look every 10 minutes for {args.days} days, {args.seeds} seeds per case; "
          "old = today's rule, new = sequential guardrails and SRM", flush=True)
    results = []
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for (w, c, split), batch in jobs(args):
            t = time.monotonic()
            runs = list(pool.map(run, batch, chunksize=max(1, len(batch) // (4 * args.workers))))
            case = CASES[c]
            row = {"world": WORLDS[w].name, "split": split, "case": case.name, "kind": case.kind,
                   "seeds": len(runs), "old": summarize(runs, "old", case), "new": summarize(runs, "new", case),
                   "seconds": round(time.monotonic() - t, 1)}
            results.append(row)
            o, nw = row["old"], row["new"]
            if case.kind == "srm":
                line = f"flagged in 24 h: old {o['srmFlaggedWithin24h']:.1%}  new {nw['srmFlaggedWithin24h']:.1%}"
            else:
                line = (f"promoted old {o['promoted']:6.1%} new {nw['promoted']:6.1%} | rolled back "
                        f"old {o['rolledBack']:6.1%} new {nw['rolledBack']:6.1%}")
                if case.kind == "aa":
                    line += f" | SRM ever flagged old {o['srmFlagged']:.1%} new {nw['srmFlagged']:.1%}"
            print(f"  {WORLDS[w].name:<24} {int(split * 100):>2}%  {case.name:<22} {line}", flush=True)
    report = {"command": f"bench/canary_sim.py --seeds {args.seeds} --days {args.days}",
              "newConfig": NEW_CFG.to_doc(), "oldConfig": OLD_CFG.to_doc(), "perLook": PER_LOOK,
              "cases": results, "seconds": round(time.monotonic() - t0, 1)}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
