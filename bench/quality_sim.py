"""Does the loop route to the model the team values when quality arrives as late feedback? (issue 12)

    .venv/bin/python bench/quality_sim.py [--hours 48] [--requests 300] [--score-every 20]
                         [--arms quality,default,deferred] [--feedback-rate 1] [--no-drift-checks] [--seed 7]
                                                                    # writes bench/results/quality_sim.json

**The world.** A router with four models whose latency, cost, success and answer *quality* are hidden:

    model   success  latency median  cost    quality (mean)
    swift   0.98       400 ms        $0.002  0.55     fastest, cheapest: the best by latency/cost
    steady  0.97       900 ms        $0.015  0.70
    sage    0.96     1,800 ms        $0.040  0.88     slow and dear, but the best answers
    budget  0.92       600 ms        $0.001  0.45

A call's quality (in [0, 1], Beta around the model's mean, concentration 10; a failed call gets 0) is
what an LLM judge or a user's rating says; the loop never sees it in the observation. It arrives as late
feedback through the ``recordFeedback`` path (``services.feedback.record_feedback``, batches of <= 500,
``{"observationId", "metrics": {"quality": q}, "id"}``) a lognormal delay after the call (median
``--delay-median-min`` 30 min, sigma 1: 5 % within 6 min, 5 % after 2.6 h), for a ``--feedback-rate`` share
of calls (default every call). Feedback that arrives before the observation's scoring run is merged into
the observation and scored with it; feedback that arrives later corrects the reward and the buckets at the
next run (``scoring.apply_feedback``).

**The loop, for real, in simulated time**, as ``bench/tuning_sim.py`` runs it: a fresh emulator per arm,
the seed loaded (its router policy given the four models, initial weights swift 0.4 / steady 0.3 /
sage 0.2 / budget 0.1), ``learning.autoActivatePolicies`` on, ``config/scoring.safetyMarginMs`` 0,
``config/tuning`` the seeded one (24 h window, Thompson). Each hour ``Router(store.policies,
ttl_s=0).route`` picks the model of each of R requests from the active version; then, every
``--score-every`` minutes of that hour: the observations of that slice are recorded (``record_batch``),
the feedback arriving in that slice is recorded, and ``score_observations`` runs at the slice's end (so
feedback arriving after its call's run is a correction, as with the 5-minute schedule deployed). At the
hour's end ``check_drift`` (part of ``evaluateRollouts``) and ``auto_tune`` run.

**Arms, on the same requests and draws:**

* ``quality``: ``config/reward_config`` gets a rule for ``router:*`` (version ``router-quality-1``):
  quality (``metric:quality``, higher, w 0.5, range 0..1, ``missing: skip``), success (higher, w 0.3),
  latency (lower, w 0.1, bound 4000 ms), cost (lower, w 0.1, bound $0.10). Under it sage is the best.
* ``default``: the seeded reward (latency/cost/success only). No term would read quality, so no feedback
  is sent (the rewards would be the same with it). Under it swift is the best.
* ``deferred`` (a diagnosis, not the issue's arm): the quality arm's reward, but the component reports each
  call only once its quality is known, with ``metrics.quality`` in the observation (a call that gets no
  feedback is reported 2 h after it, without) instead of reporting at once and sending late feedback.
  The loop then never scores a call before its quality is in.

Reported per arm: the share of traffic to the quality-best model (sage) over the last quarter of the hours
(issue 12's goal: >= 90 % with feedback and the quality term), the whole run's, per hour, the mean quality
served, and the reward earned under the quality formula (fully rated) as a share of the oracle's. At the end
the stored rewards of hour 0 (all their feedback long arrived, much of it as corrections) are checked
against the simulation's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import emulator_store, write_report  # noqa: E402
from opsloop.domain import config as config_domain  # noqa: E402
from opsloop.domain.reward import RewardConfig, RewardRules, score  # noqa: E402
from scripts import emulator as emu_mod  # noqa: E402

PROJECT = "demo-opsloop"
POLICY = "router-core"
HOUR_MS = 3_600_000
MIN_MS = 60_000
COST_SIGMA = 0.3
QUALITY_CONCENTRATION = 10.0
DEFER_UNRATED_MS = 2 * HOUR_MS  # deferred arm: a call that gets no feedback is reported this long after it
ARMS = ("quality", "default", "deferred")


@dataclass(frozen=True)
class ModelTruth:
    success: float
    latency_median_ms: float
    latency_sigma: float
    cost_usd: float  # mean; lognormal with sigma 0.3 around it
    quality: float  # mean quality of a successful call, in (0, 1)


WORLD: dict[str, ModelTruth] = {
    "swift": ModelTruth(0.98, 400.0, 0.4, 0.002, 0.55),
    "steady": ModelTruth(0.97, 900.0, 0.4, 0.015, 0.70),
    "sage": ModelTruth(0.96, 1800.0, 0.4, 0.040, 0.88),
    "budget": ModelTruth(0.92, 600.0, 0.5, 0.001, 0.45),
}
MODELS = tuple(WORLD)
BEST = "sage"
INITIAL_WEIGHTS = {"swift": 0.4, "steady": 0.3, "sage": 0.2, "budget": 0.1}

QUALITY_RULE: dict[str, Any] = {
    "match": "router:*", "version": "router-quality-1",
    "terms": [
        {"name": "quality", "source": "metric:quality", "weight": 0.5, "direction": "higher",
         "range": {"min": 0, "max": 1}, "missing": "skip"},
        {"name": "successBoost", "source": "success", "weight": 0.3, "direction": "higher"},
        {"name": "latencyPenalty", "source": "durationMs", "weight": 0.1, "direction": "lower", "bound": 4000},
        {"name": "costPenalty", "source": "costUsd", "weight": 0.1, "direction": "lower", "bound": 0.1},
    ],
    "thresholds": {"minAcceptable": 0.55, "retrain": 0.4},
}


def reward_doc(arm: str) -> dict[str, Any]:
    """``config/reward_config`` of an arm: the seeded default, plus the quality rule for the quality arm."""
    doc = json.loads((ROOT / "seed" / "config" / "reward_config.json").read_text())
    doc["rules"] = [QUALITY_RULE] if arm in ("quality", "deferred") else []
    return doc


def quality_formula() -> RewardConfig:
    rules: RewardRules = config_domain.parse(config_domain.REWARD, reward_doc("quality"))
    return rules.for_component("router:sage")


# ------------------------------------------------------------------------------------------ the world
@dataclass
class Draws:
    """Every request's outcome under every model, drawn in advance: arrays of shape (H, R, M)."""

    success: np.ndarray
    latency: np.ndarray
    cost: np.ndarray
    quality: np.ndarray  # 0 for a failed call
    rated: np.ndarray  # (H, R): whether this call gets feedback at all
    delay_ms: np.ndarray  # (H, R): feedback delay after the call
    reward: dict[str, np.ndarray]  # formula -> (H, R, M): the reward once rated (quality) / as scored (default)
    unrated: np.ndarray  # (H, R, M): the quality formula's reward without the metric (missing: skip)


def formula(name: str) -> RewardConfig:
    return quality_formula() if name == "quality" else RewardConfig()


def draw_world(hours: int, requests: int, seed: int, feedback_rate: float, delay_median_min: float) -> Draws:
    rng = np.random.default_rng(seed)
    shape = (hours, requests, len(MODELS))
    success = rng.random(shape) < np.array([WORLD[m].success for m in MODELS])
    latency, cost, quality = np.empty(shape), np.empty(shape), np.empty(shape)
    for j, m in enumerate(MODELS):
        t = WORLD[m]
        latency[:, :, j] = np.round(rng.lognormal(math.log(t.latency_median_ms), t.latency_sigma, shape[:2]), 1)
        cost[:, :, j] = np.round(t.cost_usd * rng.lognormal(-COST_SIGMA**2 / 2, COST_SIGMA, shape[:2]), 6)
        a, b = t.quality * QUALITY_CONCENTRATION, (1 - t.quality) * QUALITY_CONCENTRATION
        quality[:, :, j] = np.round(rng.beta(a, b, shape[:2]), 3)
    quality = np.where(success, quality, 0.0)
    rated = rng.random(shape[:2]) < feedback_rate
    delay_ms = np.minimum(np.round(delay_median_min * MIN_MS * rng.lognormal(0.0, 1.0, shape[:2])), 20 * HOUR_MS)
    q_cfg, d_cfg = formula("quality"), formula("default")
    reward = {"quality": np.empty(shape), "default": np.empty(shape)}
    unrated = np.empty(shape)
    for idx in np.ndindex(shape):
        outcome = "success" if success[idx] else "failure"
        lat, c = float(latency[idx]), float(cost[idx])
        reward["quality"][idx] = score(outcome, lat, c, q_cfg, metrics={"quality": float(quality[idx])}).score
        reward["default"][idx] = score(outcome, lat, c, d_cfg).score
        unrated[idx] = score(outcome, lat, c, q_cfg).score
    return Draws(success, latency, cost, quality, rated, delay_ms, reward, unrated)


def expected(n: int, seed: int) -> dict[str, dict[str, float]]:
    """Per model: mean quality served and the expected reward under each formula (Monte Carlo)."""
    d = draw_world(1, n, seed, 1.0, 30.0)
    return {m: {"quality": float(d.quality[0, :, j].mean()),
                "rewardQualityFormula": float(d.reward["quality"][0, :, j].mean()),
                "rewardQualityFormulaUnrated": float(d.unrated[0, :, j].mean()),
                "rewardDefaultFormula": float(d.reward["default"][0, :, j].mean())}
            for j, m in enumerate(MODELS)}


def request_id(h: int, i: int) -> str:
    return f"req-{h:03d}-{i:04d}"


# ------------------------------------------------------------------------------------------ the loop
def prepare_seed(tmp: Path) -> Path:
    seed = tmp / "seed"
    shutil.copytree(ROOT / "seed", seed)
    path = seed / "ops_policies" / f"{POLICY}@1.0.0.json"
    doc = json.loads(path.read_text())
    doc["params"]["modelWeights"] = INITIAL_WEIGHTS
    doc["notes"] = "quality_sim: four models"
    path.write_text(json.dumps(doc, indent=2))
    return seed


@dataclass
class Feedback:
    arrive_ms: int
    obs_id: str
    quality: float


def run_arm(emu: emu_mod.Emulator, arm: str, draws: Draws, seed_dir: Path, start_ms: int, score_every_min: int,
            drift_checks: bool, tuning_extra: dict[str, Any]) -> dict[str, Any]:
    from opsloop.services import drift, scoring, seed, tuning
    from opsloop.services.feedback import record_feedback
    from opsloop.services.record import record_batch
    from opsloop.services.routing import Router
    from opsloop.store import paths
    from opsloop.store.client import get_db
    from opsloop.store.firestore_store import FirestoreStore

    emu.clear()
    db = get_db()
    store = FirestoreStore(db)
    seed.load_seed(store, seed_dir)
    store.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": True}})
    store.configs.set("scoring", {"safetyMarginMs": 0})
    store.configs.set("reward_config", reward_doc(arm))
    if tuning_extra:
        store.configs.set("tuning", {**json.loads((ROOT / "seed" / "config" / "tuning.json").read_text()),
                                     **tuning_extra})
    router = Router(store.policies, ttl_s=0)
    index = {m: j for j, m in enumerate(MODELS)}
    hours, requests, _ = draws.success.shape
    step_ms = score_every_min * MIN_MS
    steps = HOUR_MS // step_ms
    deferred = arm == "deferred"
    pending: list[Feedback] = []  # feedback not arrived yet, in arrival order after each sort
    held: list[tuple[int, dict[str, Any]]] = []  # deferred arm: observations not reported yet, by report time
    picks: list[list[int]] = []
    chosen: list[list[int]] = []  # per hour, the model index of each request
    timeline: list[dict[str, Any]] = []
    timing = {"route": 0.0, "record": 0.0, "feedback": 0.0, "score": 0.0, "drift": 0.0, "tune": 0.0}
    fb_totals = {"recorded": 0, "beforeScoring": 0, "corrections": 0, "neverArrived": 0}
    applied: dict[str, int] = {}
    scored_at: dict[str, int] = {}  # observation id -> the schedule time of the run that scored it
    for h in range(hours):
        hour_start = start_ms + h * HOUR_MS
        t = time.monotonic()
        counts, batch, version = [0] * len(MODELS), [], None
        hour_feedback: list[Feedback | None] = []
        for i in range(requests):
            rid = request_id(h, i)
            call = router.route(rid, POLICY)
            assert call.model is not None
            version = call.policy_version
            j = index[call.model]
            counts[j] += 1
            ts = hour_start + (i * HOUR_MS) // requests
            batch.append((j, {
                "id": rid, "ts": ts, "component": f"router:{call.model}",
                "outcome": "success" if draws.success[h, i, j] else "failure",
                "durationMs": float(draws.latency[h, i, j]), "costUsd": float(draws.cost[h, i, j]),
                "policyVersion": call.policy_version, "propensity": call.model_propensity,
            }))
            fb = Feedback(ts + int(draws.delay_ms[h, i]), rid, float(draws.quality[h, i, j])) \
                if draws.rated[h, i] else None
            hour_feedback.append(fb)
            if fb is not None and arm == "quality":  # default: no term reads it, its rewards are the same without
                pending.append(fb)
        pending.sort(key=lambda f: f.arrive_ms)
        timing["route"] += time.monotonic() - t
        if deferred:  # each call is reported once its quality is known (unrated calls after DEFER_UNRATED_MS)
            for (_, o), f in zip(batch, hour_feedback, strict=True):
                report_ms = o["ts"] + DEFER_UNRATED_MS if f is None else f.arrive_ms
                held.append((report_ms, o if f is None else {**o, "metrics": {"quality": f.quality}}))
            held.sort(key=lambda x: x[0])
        for k in range(steps):
            lo, hi = hour_start + k * step_ms, hour_start + (k + 1) * step_ms
            t = time.monotonic()
            if deferred:
                cut = 0
                while cut < len(held) and held[cut][0] < hi:
                    cut += 1
                obs, held = [o for _, o in held[:cut]], held[cut:]
            else:
                obs = [o for _, o in batch if lo <= o["ts"] < hi]
            for s in range(0, len(obs), 500):
                record_batch(store, {"observations": obs[s : s + 500]})
            timing["record"] += time.monotonic() - t
            t = time.monotonic()
            cut = 0
            while cut < len(pending) and pending[cut].arrive_ms < hi:
                cut += 1
            arrived, pending = pending[:cut], pending[cut:]
            for s in range(0, len(arrived), 500):
                record_feedback(store, {"feedback": [
                    {"id": f"fb-{f.obs_id}", "observationId": f.obs_id, "metrics": {"quality": f.quality}}
                    for f in arrived[s : s + 500]]})
            for f in arrived:
                fb_totals["corrections" if f.obs_id in scored_at else "beforeScoring"] += 1
            fb_totals["recorded"] += len(arrived)
            timing["feedback"] += time.monotonic() - t
            t = time.monotonic()
            run = scoring.score_observations(store, dt.datetime.fromtimestamp(hi / 1000, dt.UTC))
            timing["score"] += time.monotonic() - t
            assert run.scored == len(obs), (run.scored, len(obs))
            for o in obs:
                scored_at[o["id"]] = hi
            for key, v in run.feedback.items():
                applied[key] = applied.get(key, 0) + v
        end = dt.datetime.fromtimestamp((hour_start + HOUR_MS) / 1000, dt.UTC)
        t = time.monotonic()
        drifting = []
        if drift_checks:
            drifting = [f"{r.component}:{','.join(r.drifting)}" for r in drift.check_drift(store, end) if r.drifting]
        timing["drift"] += time.monotonic() - t
        t = time.monotonic()
        tuned = tuning.auto_tune(store, end)
        timing["tune"] += time.monotonic() - t
        outcome = tuned.outcomes[0] if tuned.outcomes else None
        active = store.policies.head(POLICY).active
        weights = (store.policies.policy(POLICY, str(active)) or {}).get("params", {}).get("modelWeights", {})
        stats = store.stats.for_window([f"router:{m}" for m in MODELS], "24h")
        evidence = None  # what the tuner judged a draft on: per model n and mean, change points, raised floors
        if outcome is not None and outcome.action == "drafted":
            ev = (store.policies.policy(POLICY, str(outcome.version)) or {}).get("evidence") or {}
            evidence = {"models": {m: {"n": e.get("n"), "avgReward": None if e.get("avgReward") is None
                                       else round(float(e["avgReward"]), 4)}
                                   for m, e in (ev.get("models") or {}).items()},
                        "judgedSinceChange": ev.get("judgedSinceChange"), "raisedFloors": ev.get("raisedFloors")}
        picks.append(counts)
        chosen.append([j for j, _ in batch])
        timeline.append({
            "hour": h, "routedWith": version, "picks": dict(zip(MODELS, counts, strict=True)),
            "bestShare": round(counts[index[BEST]] / requests, 4),
            "qualityServed": round(float(np.mean([draws.quality[h, i, j] for i, (j, _) in enumerate(batch)])), 4),
            "stats24h": {m: {"n": s.get("n"), "avgReward": None if s.get("avgReward") is None
                             else round(float(s["avgReward"]), 4)}
                         for m in MODELS if (s := stats.get(f"router:{m}")) is not None},
            "drifting": drifting, "tune": None if outcome is None else f"{outcome.action}: {outcome.reason}",
            "tuneEvidence": evidence,
            "activeAfter": active, "weightsAfter": weights,
        })
        print(f"    h{h:02d} {BEST} {counts[index[BEST]] / requests:6.1%} routed with {version} -> {active} "
              f"{json.dumps(weights)}" + (f"  drifting {drifting}" if drifting else ""), flush=True)
    fb_totals["neverArrived"] = len(pending)
    fb_totals["observationsNeverReported"] = len(held)
    checked = check_rewards(db, paths.REWARDS, draws, arm, index, start_ms, 0)
    return {"picks": picks, "chosen": chosen, "timeline": timeline,
            "timing": {k: round(v, 1) for k, v in timing.items()},
            "feedback": {**fb_totals, "scorerOutcomes": applied}, "rewardsChecked": checked}


def check_rewards(db: Any, collection: str, draws: Draws, arm: str, index: dict[str, int], start_ms: int,
                  batch_hour: int) -> dict[str, Any]:
    """The stored reward of every call of ``batch_hour`` equals the simulation's (rated when its feedback
    arrived before the run ended); returns how many were checked and how many late feedback had corrected."""
    hours, requests, _ = draws.success.shape
    end_ms = start_ms + hours * HOUR_MS
    refs = [db.collection(collection).document(request_id(batch_hour, i)) for i in range(requests)]
    checked = corrected = 0
    for snap in db.get_all(refs):
        if not snap.exists:  # deferred arm: a call whose feedback had not arrived by the end was never reported
            continue
        doc = snap.to_dict() or {}
        i = int(snap.id[-4:])
        j = index[str(doc["component"]).split(":", 1)[1]]
        ts = start_ms + batch_hour * HOUR_MS + (i * HOUR_MS) // requests
        arrived = bool(draws.rated[batch_hour, i]) and ts + int(draws.delay_ms[batch_hour, i]) < end_ms
        if arm != "default":
            want = draws.reward["quality"][batch_hour, i, j] if arrived else draws.unrated[batch_hour, i, j]
        else:
            want = draws.reward["default"][batch_hour, i, j]
        assert abs(float(doc["score"]) - float(want)) < 1e-6, (snap.id, doc, want)
        checked += 1
        corrected += int(doc.get("corrections") or 0) > 0
    return {"hour": batch_hour, "checked": checked, "corrected": corrected}


# ------------------------------------------------------------------------------------------ report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--requests", type=int, default=300, help="requests per hour")
    parser.add_argument("--score-every", type=int, default=20, choices=(5, 10, 15, 20, 30, 60),
                        help="minutes between scoring runs (deployed: 5)")
    parser.add_argument("--arms", default="quality,default,deferred", help="comma-separated, of: " + ", ".join(ARMS))
    parser.add_argument("--feedback-rate", type=float, default=1.0, help="share of calls that get feedback")
    parser.add_argument("--delay-median-min", type=float, default=30.0, help="median feedback delay, minutes")
    parser.add_argument("--no-drift-checks", action="store_true")
    parser.add_argument("--tuning", type=json.loads, default={}, help="extra config/tuning fields, as JSON")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality_sim.json")
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    assert set(arms) <= set(ARMS), arms
    t0 = time.monotonic()
    hours, requests = args.hours, args.requests
    last = max(1, hours // 4)
    print(f"quality simulation: {hours} hours x {requests} requests, scoring every {args.score_every} min, "
          f"feedback on {args.feedback_rate:.0%} of calls, median delay {args.delay_median_min} min; arms {arms}")
    truth = expected(50_000, args.seed + 1)
    for m, e in truth.items():
        print(f"  {m:<7} quality {e['quality']:.3f}  reward: quality formula {e['rewardQualityFormula']:.4f} "
              f"(unrated {e['rewardQualityFormulaUnrated']:.4f}), default {e['rewardDefaultFormula']:.4f}")
    draws = draw_world(hours, requests, args.seed, args.feedback_rate, args.delay_median_min)
    end_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000) // HOUR_MS * HOUR_MS
    start_ms = end_ms - hours * HOUR_MS
    results: dict[str, dict[str, Any]] = {}
    with emulator_store(PROJECT) as (emu, _, _), tempfile.TemporaryDirectory() as tmp:
        seed_dir = prepare_seed(Path(tmp))
        for arm in arms:
            print(f"  arm {arm}:", flush=True)
            t = time.monotonic()
            res = run_arm(emu, arm, draws, seed_dir, start_ms, args.score_every, not args.no_drift_checks,
                          args.tuning)
            res["timing"]["total"] = round(time.monotonic() - t, 1)
            results[arm] = res

    oracle_q = float(draws.reward["quality"][:, :, MODELS.index(BEST)].sum())  # always the best model
    oracle_tail = float(draws.reward["quality"][-last:, :, MODELS.index(BEST)].sum())
    rows = []
    print()
    for arm, res in results.items():
        picks = np.array(res["picks"])
        tail = picks[-last:]
        jb = MODELS.index(BEST)
        row = {
            "arm": arm,
            "bestShareLastQuarter": round(float(tail[:, jb].sum() / tail.sum()), 4),
            "bestShareAll": round(float(picks[:, jb].sum() / picks.sum()), 4),
            "bestShareByQuarter": [round(float(q[:, jb].sum() / q.sum()), 4) for q in np.array_split(picks, 4)],
            "hoursWithDrift": sum(1 for t in res["timeline"] if t["drifting"]),
            "sharesLastQuarter": {m: round(float(tail[:, j].sum() / tail.sum()), 4) for j, m in enumerate(MODELS)},
            "picks": dict(zip(MODELS, picks.sum(0).tolist(), strict=True)),
            "meanQualityServed": round(float(np.mean([t["qualityServed"] for t in res["timeline"]])), 4),
            "meanQualityServedLastQuarter": round(float(np.mean([t["qualityServed"]
                                                                 for t in res["timeline"][-last:]])), 4),
            "feedback": res["feedback"], "rewardsChecked": res["rewardsChecked"], "timing": res["timing"],
        }
        chosen = np.array(res["chosen"])
        earned = np.take_along_axis(draws.reward["quality"], chosen[:, :, None], axis=2)[:, :, 0]
        row["qualityRewardShareOfOracle"] = round(float(earned.sum()) / oracle_q, 4)
        row["qualityRewardShareOfOracleLastQuarter"] = round(float(earned[-last:].sum()) / oracle_tail, 4)
        rows.append(row)
        print(f"arm {arm:<8} {BEST} share: last {last} h {row['bestShareLastQuarter']:.1%}, all hours "
              f"{row['bestShareAll']:.1%}; mean quality served {row['meanQualityServed']:.3f} (last {last} h "
              f"{row['meanQualityServedLastQuarter']:.3f}); shares last {last} h {row['sharesLastQuarter']}")
    seconds = round(time.monotonic() - t0, 1)
    print(f"\n{seconds} s; timings (s): {json.dumps({a: r['timing'] for a, r in results.items()})}")
    report = {
        "command": f"bench/quality_sim.py --hours {hours} --requests {requests} --score-every {args.score_every} "
                   f"--arms {args.arms} --feedback-rate {args.feedback_rate} --delay-median-min "
                   f"{args.delay_median_min}" + (" --no-drift-checks" if args.no_drift_checks else "")
                   + (f" --tuning '{json.dumps(args.tuning)}'" if args.tuning else "") + f" --seed {args.seed}",
        "goal": "with feedback and the quality term, >= 90 % of traffic to the quality-best model after adaptation "
                "(the last quarter of the hours)",
        "hours": hours, "requestsPerHour": requests, "lastQuarterHours": last, "bestModel": BEST,
        "world": {m: asdict(t) for m, t in WORLD.items()}, "expected": truth,
        "initialWeights": INITIAL_WEIGHTS, "qualityRule": QUALITY_RULE, "oracleQualityReward": oracle_q,
        "results": rows, "timelines": {a: r["timeline"] for a, r in results.items()}, "seconds": seconds,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
