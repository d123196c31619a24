"""How much reward does the tuning loop earn? The real loop on the emulator beside bandit baselines.

    .venv/bin/python bench/tuning_sim.py [--hours 48] [--requests 300] [--windows 24h,1h]
                                                                    # writes bench/results/tuning_sim.json

A simulated LLM router with four models whose latency, cost and success distributions are hidden; the
best one (``gpt-5``) drifts halfway through the run: its success rate drops from 0.97 to 0.60.
``--world improves`` is the opposite test: nothing degrades, and the model the loop has pushed down to
its exploration floor (``llama``, fast and cheap but unreliable) becomes reliable (0.80 -> 0.99) and the
best: does a loop that explores little still notice? ``--world recovers``: the best model fails for six
hours (0.97 -> 0.20) and comes back, from the floor the loop pushed it to; ``--world drift3``: three models
drift over 12 hours (gpt-5 wears down, a new gemini version rolls out) and the best changes half way. Per
change of the best model the report gives the share of traffic on it from 2 hours after the change and
the hours to recover (``recovery``); ``--steps-per-hour 4`` scores every 15 simulated minutes and runs
event-driven tuning after each (docs/RECOVERY.md).

**Our loop** runs for real, in simulated time, against a fresh Firestore emulator this script starts:
the seed is loaded (its router policy given the four models), ``learning.autoActivatePolicies`` is on
so drafts go live, ``config/scoring.safetyMarginMs`` is 0. For each hour h = 0..H-1 (the last one ends
at the current hour): ``Router(store.policies, ttl_s=0).route`` picks the model of each of R requests from the
active version's weights; the outcome is drawn from the hidden world and recorded with ``record_batch``
(event times inside that hour); then, at the end of the hour, what the schedules would run:
``score_observations``, ``check_drift`` (part of ``evaluateRollouts``; it raises a drifting model's
exploration floor) and ``auto_tune``. The loop's 1h stats are checked against the simulated rewards.
Run once per ``config/tuning.window`` (default 24h, and 1h as a user would set it for fast adaptation).

**Baselines**, in memory, on the same hidden world and the same request sequence (every request's
outcome is drawn in advance for every model, so a policy choosing model m at request i sees exactly
the draw the loop would have seen): an oracle (the model with the best expected reward at that time),
static weights (the initial ones), least-latency routing, ε-greedy (ε = 0.05) and Thompson sampling
(Gaussian posterior on the mean reward), the last two also over a 24 h sliding window. Baselines learn
after every request; the loop learns once an hour, as deployed.

Reward: ``opsloop.domain.reward.score`` with ``RewardConfig()`` on every simulated request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import write_report  # noqa: E402
from opsloop.domain import routing  # noqa: E402
from opsloop.domain.reward import RewardConfig, score  # noqa: E402
from scripts import emulator as emu_mod  # noqa: E402

PROJECT = "demo-opsloop"
POLICY = "router-core"
MODELS = ("claude", "gemini", "gpt-5", "llama")
INITIAL_WEIGHTS = {"gpt-5": 0.5, "gemini": 0.2, "claude": 0.2, "llama": 0.1}
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class ModelTruth:
    """What the simulation knows and the router does not."""

    success: float
    latency_median_ms: float
    latency_sigma: float
    cost_usd: float  # mean; cost is lognormal with sigma 0.3 around it
    success_after_drift: float | None = None
    # (hour relative to the drift hour, success rate) points, linear in between and flat outside: a step
    # is two points an hour apart; when given, it replaces success / success_after_drift from its first hour
    path: tuple[tuple[int, float], ...] = ()

    def success_at(self, hour: int, drift_hour: int) -> float:
        if self.path:
            x = hour - drift_hour
            if x <= self.path[0][0]:
                return self.path[0][1]
            for (x0, p0), (x1, p1) in zip(self.path, self.path[1:], strict=False):
                if x <= x1:
                    return p0 + (p1 - p0) * (x - x0) / (x1 - x0)
            return self.path[-1][1]
        if self.success_after_drift is not None and hour >= drift_hour:
            return self.success_after_drift
        return self.success


WORLDS: dict[str, dict[str, ModelTruth]] = {
    "degrades": {
        "gpt-5": ModelTruth(0.97, 800.0, 0.4, 0.020, success_after_drift=0.60),
        "gemini": ModelTruth(0.92, 1000.0, 0.4, 0.015),
        "claude": ModelTruth(0.95, 1800.0, 0.4, 0.040),
        "llama": ModelTruth(0.80, 500.0, 0.5, 0.003),  # fastest and cheapest, least reliable
    },
    "improves": {
        "gpt-5": ModelTruth(0.97, 800.0, 0.4, 0.020),
        "gemini": ModelTruth(0.92, 1000.0, 0.4, 0.015),
        "claude": ModelTruth(0.95, 1800.0, 0.4, 0.040),
        "llama": ModelTruth(0.80, 500.0, 0.5, 0.003, success_after_drift=0.99),  # then the best by far
    },
    # an outage: the best model fails for six hours, then comes back (from the floor it was pushed to)
    "recovers": {
        "gpt-5": ModelTruth(0.97, 800.0, 0.4, 0.020, path=((-1, 0.97), (0, 0.20), (5, 0.20), (6, 0.97))),
        "gemini": ModelTruth(0.92, 1000.0, 0.4, 0.015),
        "claude": ModelTruth(0.95, 1800.0, 0.4, 0.040),
        "llama": ModelTruth(0.80, 500.0, 0.5, 0.003),
    },
    # three models drifting slowly over 12 hours: gpt-5 wears down while a new gemini version rolls out;
    # the best model changes about half way
    "drift3": {
        "gpt-5": ModelTruth(0.97, 800.0, 0.4, 0.020, path=((-6, 0.97), (6, 0.80))),
        "gemini": ModelTruth(0.90, 1000.0, 0.4, 0.015, path=((-6, 0.90), (6, 0.99))),
        "claude": ModelTruth(0.95, 1800.0, 0.4, 0.040),
    },
}
WORLD = WORLDS["degrades"]  # set by --world
INITIAL_BY_WORLD = {"drift3": {"gpt-5": 0.6, "gemini": 0.2, "claude": 0.2}}
COST_SIGMA = 0.3


# ------------------------------------------------------------------------------------------ the world
@dataclass
class Draws:
    """Every request's outcome under every model, drawn in advance: arrays of shape (H, R, M)."""

    success: np.ndarray
    latency: np.ndarray
    cost: np.ndarray
    reward: np.ndarray
    expected: np.ndarray  # (H, M): expected reward of each model in each hour


def _cost(rng: np.random.Generator, mean: float, size: Any) -> np.ndarray:
    return mean * rng.lognormal(-COST_SIGMA**2 / 2, COST_SIGMA, size)  # mean-preserving


def expected_rewards(hours: int, drift_hour: int, cfg: RewardConfig, seed: int) -> np.ndarray:
    """Expected reward per (hour, model): success rate x mean score of a success (Monte Carlo, 400k)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((hours, len(MODELS)))
    for j, m in enumerate(MODELS):
        t = WORLD[m]
        lat = rng.lognormal(math.log(t.latency_median_ms), t.latency_sigma, 400_000)
        cost = _cost(rng, t.cost_usd, 400_000)
        success_score = np.clip(1.0 - cfg.w_latency * np.minimum(lat / cfg.max_latency_ms, 1.0)
                                - cfg.w_cost * np.minimum(cost / cfg.max_cost_usd, 1.0), 0.0, 1.0).mean()
        failure_score = max(0.0, 1.0 - cfg.w_success - cfg.w_error)  # latency/cost only lower it further
        for h in range(hours):
            p = t.success_at(h, drift_hour)
            out[h, j] = p * success_score + (1 - p) * failure_score
    return out


def draw_world(hours: int, requests: int, drift_hour: int, cfg: RewardConfig, seed: int) -> Draws:
    rng = np.random.default_rng(seed)
    shape = (hours, requests, len(MODELS))
    u = rng.random(shape)
    p = np.array([[WORLD[m].success_at(h, drift_hour) for m in MODELS] for h in range(hours)])[:, None, :]
    success = u < p
    latency = np.empty(shape)
    cost = np.empty(shape)
    for j, m in enumerate(MODELS):
        t = WORLD[m]
        latency[:, :, j] = np.round(rng.lognormal(math.log(t.latency_median_ms), t.latency_sigma, shape[:2]), 1)
        cost[:, :, j] = np.round(_cost(rng, t.cost_usd, shape[:2]), 6)
    reward = np.empty(shape)
    for idx in np.ndindex(shape):
        reward[idx] = score("success" if success[idx] else "failure", float(latency[idx]), float(cost[idx]),
                            cfg).score
    return Draws(success, latency, cost, reward, expected_rewards(hours, drift_hour, cfg, seed + 1))


def request_id(h: int, i: int) -> str:
    return f"req-{h:03d}-{i:04d}"


# ------------------------------------------------------------------------------------------ baselines
Chooser = Callable[[int, int], int]  # (hour, request) -> model index
Learner = Callable[[int, int, int], None]  # (hour, model index, request) -> None: observe the outcome


@dataclass
class Run:
    name: str
    per_hour: list[float]  # reward earned in each hour
    picks: list[list[int]]  # per hour, requests sent to each model

    def total(self) -> float:
        return float(sum(self.per_hour))


def play(name: str, draws: Draws, choose: Chooser, learn: Learner | None = None) -> Run:
    hours, requests, m = draws.reward.shape
    per_hour, picks = [], []
    for h in range(hours):
        earned, counts = 0.0, [0] * m
        for i in range(requests):
            j = choose(h, i)
            earned += float(draws.reward[h, i, j])
            counts[j] += 1
            if learn is not None:
                learn(h, j, i)
        per_hour.append(earned)
        picks.append(counts)
    return Run(name, per_hour, picks)


class Observed:
    """Per-model running sums of what a baseline has seen (all time, or per hour for a sliding window)."""

    def __init__(self, draws: Draws, window_hours: int | None = None) -> None:
        self.d = draws
        self.window = window_hours
        hours, _, m = draws.reward.shape
        self.n = np.zeros((hours, m))
        self.s = np.zeros((hours, m))
        self.s2 = np.zeros((hours, m))
        self.lat = np.zeros((hours, m))

    def learn(self, h: int, j: int, i: int) -> None:
        r = float(self.d.reward[h, i, j])
        self.n[h, j] += 1
        self.s[h, j] += r
        self.s2[h, j] += r * r
        self.lat[h, j] += float(self.d.latency[h, i, j])

    def sums(self, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        lo = 0 if self.window is None else max(0, h - self.window)
        return (self.n[lo : h + 1].sum(0), self.s[lo : h + 1].sum(0), self.s2[lo : h + 1].sum(0),
                self.lat[lo : h + 1].sum(0))


WARMUP = 20  # requests per model, round-robin, before a baseline trusts its means


def least_latency(draws: Draws) -> Run:
    obs = Observed(draws)
    seen = [0]

    def choose(h: int, i: int) -> int:
        k = seen[0]
        seen[0] += 1
        if k < WARMUP * len(MODELS):
            return k % len(MODELS)
        n, _, _, lat = obs.sums(h)
        return int(np.argmin(lat / np.maximum(n, 1)))

    return play("least latency (20/model warm-up)", draws, choose, obs.learn)


def epsilon_greedy(draws: Draws, eps: float, seed: int, window: int | None) -> Run:
    obs = Observed(draws, window)
    rng = np.random.default_rng(seed)
    seen = [0]

    def choose(h: int, i: int) -> int:
        k = seen[0]
        seen[0] += 1
        if k < WARMUP * len(MODELS):
            return k % len(MODELS)
        if rng.random() < eps:
            return int(rng.integers(len(MODELS)))
        n, s, _, _ = obs.sums(h)
        return int(np.argmax(np.where(n > 0, s / np.maximum(n, 1), 1.0)))

    label = f"ε-greedy ε={eps}" + ("" if window is None else f", {window}h window")
    return play(label, draws, choose, obs.learn)


def thompson(draws: Draws, seed: int, window: int | None) -> Run:
    """Gaussian posterior on each model's mean reward: N(mean, sd/sqrt(n)), flat prior, sd floored at 0.05."""
    obs = Observed(draws, window)
    rng = np.random.default_rng(seed)

    def choose(h: int, i: int) -> int:
        n, s, s2, _ = obs.sums(h)
        mean = np.where(n > 0, s / np.maximum(n, 1), 0.5)
        var = np.where(n > 1, (s2 - s * s / np.maximum(n, 1)) / np.maximum(n - 1, 1), 0.25)
        sd = np.sqrt(np.maximum(var, 0.05**2)) / np.sqrt(np.maximum(n, 1))
        return int(np.argmax(rng.normal(mean, sd)))

    label = "Thompson (Gaussian)" + ("" if window is None else f", {window}h window")
    return play(label, draws, choose, obs.learn)


def static_weights(draws: Draws) -> Run:
    index = {m: j for j, m in enumerate(MODELS)}

    def choose(h: int, i: int) -> int:
        model, _ = routing.pick_weighted(request_id(h, i), f"{POLICY}@1.0.0", INITIAL_WEIGHTS)
        return index[model]

    return play("static initial weights", draws, choose)


def oracle(draws: Draws) -> Run:
    return play("oracle (best expected reward now)", draws, lambda h, i: int(np.argmax(draws.expected[h])))


# ------------------------------------------------------------------------------------------ the real loop
def prepare_seed(tmp: Path) -> Path:
    """A copy of seed/ whose router policy names the four simulated models."""
    seed = tmp / "seed"
    shutil.copytree(ROOT / "seed", seed)
    path = seed / "ops_policies" / f"{POLICY}@1.0.0.json"
    doc = json.loads(path.read_text())
    doc["params"]["modelWeights"] = INITIAL_WEIGHTS
    doc["notes"] = "tuning_sim: four models"
    path.write_text(json.dumps(doc, indent=2))
    return seed


def check_hour(stats: dict[str, dict[str, Any]], batch: list[dict[str, Any]], draws: Draws, h: int,
               index: dict[str, int]) -> None:
    """The loop's own 1h stats of each model must match the simulation's rewards for that hour."""
    for model, j in index.items():
        rewards = [float(draws.reward[h, int(o["id"].rsplit("-", 1)[1]), j])
                   for o in batch if o["component"] == f"router:{model}"]
        doc = stats.get(f"router:{model}~1h")
        if not rewards:
            continue
        assert doc is not None and doc["n"] == len(rewards), (model, h, doc)
        assert abs(doc["avgReward"] - sum(rewards) / len(rewards)) < 1e-5, (model, h, doc, sum(rewards) / len(rewards))


def run_loop(emu: emu_mod.Emulator, draws: Draws, seed_dir: Path, window: str, start_ms: int,
             drift_checks: bool, tuning_extra: dict[str, Any], steps: int = 1,
             event_tuning: bool = True) -> tuple[Run, list[dict[str, Any]], dict[str, float]]:
    from opsloop.services import drift, scoring, seed, tuning
    from opsloop.services.record import record_batch
    from opsloop.services.routing import Router
    from opsloop.store.client import get_db
    from opsloop.store.firestore_store import FirestoreStore

    emu.clear()
    store = FirestoreStore(get_db())
    seed.load_seed(store, seed_dir)
    store.configs.set("flags", {"learning": {"enabled": True, "autoActivatePolicies": True}})
    store.configs.set("scoring", {"safetyMarginMs": 0})
    store.configs.set("tuning", {**tuning_extra, "window": window})
    router = Router(store.policies, ttl_s=0)
    index = {m: j for j, m in enumerate(MODELS)}
    hours, requests, _ = draws.reward.shape
    per_hour, picks, timeline = [], [], []
    timing = {"route": 0.0, "record": 0.0, "drift": 0.0, "score": 0.0, "tune": 0.0, "event": 0.0}
    step_ms = HOUR_MS // steps
    on_change = getattr(tuning, "tune_on_change", None) if event_tuning else None
    for h in range(hours):
        hour_start = start_ms + h * HOUR_MS
        earned, counts, batch = 0.0, [0] * len(MODELS), []
        versions: list[str] = []
        drifting: list[str] = []
        events: list[str] = []
        for k in range(steps):
            lo, hi = k * requests // steps, (k + 1) * requests // steps
            step_end = hour_start + (k + 1) * step_ms
            at = dt.datetime.fromtimestamp(step_end / 1000, dt.UTC)
            t = time.monotonic()
            step_batch = []
            for i in range(lo, hi):
                rid = request_id(h, i)
                call = router.route(rid, POLICY)
                assert call.model is not None
                if not versions or versions[-1] != call.policy_version:
                    versions.append(str(call.policy_version))
                j = index[call.model]
                earned += float(draws.reward[h, i, j])
                counts[j] += 1
                step_batch.append({
                    "id": rid, "ts": hour_start + (i * HOUR_MS) // requests, "component": f"router:{call.model}",
                    "outcome": "success" if draws.success[h, i, j] else "failure",
                    "durationMs": float(draws.latency[h, i, j]), "costUsd": float(draws.cost[h, i, j]),
                    "policyVersion": call.policy_version, "propensity": call.model_propensity,
                })
            timing["route"] += time.monotonic() - t
            t = time.monotonic()
            for b in range(0, len(step_batch), 500):
                record_batch(store, {"observations": step_batch[b : b + 500]})
            timing["record"] += time.monotonic() - t
            batch += step_batch
            t = time.monotonic()
            scored = scoring.score_observations(store, schedule_time=at)
            timing["score"] += time.monotonic() - t
            assert scored.scored == hi - lo, scored
            t = time.monotonic()
            if drift_checks:
                drifting += [f"{r.component}:{','.join(r.drifting)}" for r in drift.check_drift(store, at)
                             if r.drifting]
            timing["drift"] += time.monotonic() - t
            if k < steps - 1 and on_change is not None:  # the hourly run follows the last step anyway
                t = time.monotonic()
                fired = on_change(store, at)
                timing["event"] += time.monotonic() - t
                events += [f"+{(k + 1) * 60 // steps}m {o.action}: {o.version or ''} {o.reason}"[:160]
                           for o in getattr(fired, "outcomes", [])]
        check_hour(scored.stats, batch, draws, h, index)
        t = time.monotonic()
        tuned = tuning.auto_tune(store, at)
        timing["tune"] += time.monotonic() - t
        outcome = tuned.outcomes[0] if tuned.outcomes else None
        active = store.policies.head(POLICY).active
        weights = (store.policies.policy(POLICY, str(active)) or {}).get("params", {}).get("modelWeights", {})
        per_hour.append(earned)
        picks.append(counts)
        timeline.append({"hour": h, "routedWith": versions[0] if len(versions) == 1 else versions,
                         "reward": round(earned / requests, 4),
                         "picks": dict(zip(MODELS, counts, strict=True)), "drifting": sorted(set(drifting)),
                         "events": events,
                         "tune": None if outcome is None else f"{outcome.action}: {outcome.reason}",
                         "activeAfter": active, "weightsAfter": weights})
        print(f"    h{h:02d} reward {earned / requests:.3f} routed with {','.join(versions)}  "
              f"-> {active} {json.dumps(weights)}" + (f"  drifting {sorted(set(drifting))}" if drifting else "")
              + (f"  events {events}" if events else ""), flush=True)
    label = (f"opsloop tuner, window {window}" + ("" if drift_checks else ", no drift checks")
             + (f", scored {steps}x/hour" if steps > 1 else "")
             + (", no event tuning" if steps > 1 and on_change is None else "")
             + "".join(f", {k} {v}" for k, v in tuning_extra.items()))
    return Run(label, per_hour, picks), timeline, {k: round(v, 1) for k, v in timing.items()}


# ------------------------------------------------------------------------------------------ report
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _hrs(x: int | None) -> str:
    return "never" if x is None else str(x)


def shares(run: Run, best: Run, drift_hour: int) -> dict[str, float]:
    pre = sum(run.per_hour[:drift_hour]) / sum(best.per_hour[:drift_hour])
    post = sum(run.per_hour[drift_hour:]) / sum(best.per_hour[drift_hour:])
    return {"share": run.total() / best.total(), "sharePreDrift": pre, "sharePostDrift": post}


RECOVERED_SHARE = 0.8  # "recovered": at least this share of an hour's traffic on the best model
SETTLE_HOURS = 2  # the goal is judged from this many hours after each change


def change_hours(draws: Draws) -> list[int]:
    """Hours at which the best model (highest expected reward) differs from the hour before."""
    best = np.argmax(draws.expected, axis=1)
    return [h for h in range(1, len(best)) if best[h] != best[h - 1]]


def recovery(run: Run, draws: Draws) -> list[dict[str, Any]]:
    """Per change of the best model: the share of traffic on the new best model from SETTLE_HOURS after
    the change to the next change (or the end), and the hours to recover: the first hour k after the
    change that has >= RECOVERED_SHARE of its traffic on the best model and from which on, up to the next
    change, so has the traffic taken together (None: never). Also the first hour k from which *every*
    hour has such a share (a single noisy hour later resets it), and the first hour with it at all."""
    best = np.argmax(draws.expected, axis=1)
    hours = len(best)
    changes = change_hours(draws)
    out = []
    for c, nxt in zip(changes, [*changes[1:], hours], strict=True):
        on = [run.picks[h][best[h]] / max(sum(run.picks[h]), 1) for h in range(c, nxt)]
        settled = range(c + SETTLE_HOURS, nxt)
        share = (sum(run.picks[h][best[h]] for h in settled) / max(sum(sum(run.picks[h]) for h in settled), 1)
                 if settled else None)
        sustained = next((k for k in range(len(on)) if all(x >= RECOVERED_SHARE for x in on[k:])), None)
        held = next((k for k in range(len(on)) if on[k] >= RECOVERED_SHARE and sum(
            run.picks[h][best[h]] for h in range(c + k, nxt)) >= RECOVERED_SHARE * sum(
            sum(run.picks[h]) for h in range(c + k, nxt))), None)
        first = next((k for k, x in enumerate(on) if x >= RECOVERED_SHARE), None)
        out.append({"changeHour": c, "until": nxt, "best": MODELS[int(best[c])],
                    "onBestFrom2h": None if share is None else round(share, 4),
                    "hoursToRecover": held, "hoursToRecoverEveryHour": sustained, "firstHourAt80": first,
                    "onBestPerHour": [round(x, 3) for x in on]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--requests", type=int, default=300, help="requests per hour")
    parser.add_argument("--windows", default="24h,1h", help="config/tuning.window values to run the loop with")
    parser.add_argument("--no-drift-checks", action="store_true", help="do not run check_drift each hour")
    parser.add_argument("--tuning", type=json.loads, default={},
                        help='extra config/tuning fields for the loop, e.g. \'{"learningRate": 20}\'')
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", choices=sorted(WORLDS), default="degrades",
                        help="degrades: the best model gets worse at half time; improves: a floor model gets "
                             "best; recovers: the best model fails for 6 hours, then comes back; drift3: three "
                             "models drift over 12 hours and the best changes half way")
    parser.add_argument("--steps-per-hour", type=int, default=1,
                        help="scoring runs per simulated hour (the deployed schedule runs 12): routing, "
                             "recording, scoring, the drift check and event-driven tuning step this often; "
                             "the hourly tuning run stays at the end of each hour")
    parser.add_argument("--no-event-tuning", action="store_true",
                        help="do not run the event-driven tuning check after each scoring run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tuning_sim.json")
    args = parser.parse_args(argv)
    global WORLD, MODELS, INITIAL_WEIGHTS
    WORLD = WORLDS[args.world]
    MODELS = tuple(sorted(WORLD))
    INITIAL_WEIGHTS = INITIAL_BY_WORLD.get(args.world, INITIAL_WEIGHTS)
    t0 = time.monotonic()
    cfg = RewardConfig()
    hours, requests, drift_hour = args.hours, args.requests, args.hours // 2
    windows = [w for w in args.windows.split(",") if w]
    change = ", ".join([f"{m} success {t.success:.2f} -> {t.success_after_drift:.2f}"
                        for m, t in WORLD.items() if t.success_after_drift is not None and not t.path]
                       + [f"{m} success " + " ".join(f"{p:.2f}@{drift_hour + x:+d}h" for x, p in t.path)
                          for m, t in WORLD.items() if t.path])
    print(f"tuning simulation: {hours} hours x {requests} requests, {change} around hour "
          f"{drift_hour}; loop windows {windows}; seed {args.seed}")
    draws = draw_world(hours, requests, drift_hour, cfg, args.seed)
    for j, m in enumerate(MODELS):
        pre, post = draws.expected[0, j], draws.expected[-1, j]
        print(f"  {m:<7} expected reward {pre:.3f}" + (f" -> {post:.3f}" if abs(post - pre) > 1e-9 else ""))

    baselines = [
        oracle(draws),
        static_weights(draws),
        least_latency(draws),
        epsilon_greedy(draws, 0.05, args.seed + 10, None),
        epsilon_greedy(draws, 0.05, args.seed + 11, 24),
        thompson(draws, args.seed + 20, None),
        thompson(draws, args.seed + 21, 24),
    ]
    loops: list[Run] = []
    timelines: dict[str, list[dict[str, Any]]] = {}
    timings: dict[str, dict[str, float]] = {}
    now = dt.datetime.now(dt.UTC)
    end_ms = int(now.timestamp() * 1000) // HOUR_MS * HOUR_MS
    start_ms = end_ms - hours * HOUR_MS
    if windows:
        emu = emu_mod.start(PROJECT, rules=ROOT / "firestore.rules", log_dir=ROOT / ".emulator-logs")
        try:
            os.environ["FIRESTORE_EMULATOR_HOST"] = emu.address
            os.environ["GCLOUD_PROJECT"] = PROJECT
            from opsloop.store import client

            client.reset_for_tests()
            with tempfile.TemporaryDirectory() as tmp:
                seed_dir = prepare_seed(Path(tmp))
                for window in windows:
                    print(f"  loop, config/tuning.window = {window}:", flush=True)
                    t = time.monotonic()
                    run, timeline, timing = run_loop(emu, draws, seed_dir, window, start_ms,
                                                     not args.no_drift_checks, args.tuning, args.steps_per_hour,
                                                     not args.no_event_tuning)
                    timing["total"] = round(time.monotonic() - t, 1)
                    loops.append(run)
                    timelines[run.name] = timeline
                    timings[run.name] = timing
        finally:
            emu.stop()

    best = baselines[0]
    rows = []
    print()
    changes = change_hours(draws)
    header = (f"{'policy':<44} {'reward/req':>10} {'% oracle':>9} {'pre-drift':>10} {'post-drift':>11}"
              + "".join(f"  h{c}: on best ≥2h, h to 80%" for c in changes))
    print(header)
    print("-" * len(header))
    for run in loops + baselines:
        sh = shares(run, best, drift_hour)
        rec = recovery(run, draws)
        rows.append({"policy": run.name, "meanReward": run.total() / (hours * requests), **sh, "recovery": rec,
                     "picks": dict(zip(MODELS, np.sum(run.picks, axis=0).tolist(), strict=True)),
                     "perHour": [round(x / requests, 4) for x in run.per_hour]})
        print(f"{run.name:<44} {run.total() / (hours * requests):>10.4f} {sh['share']:>9.1%} "
              f"{sh['sharePreDrift']:>10.1%} {sh['sharePostDrift']:>11.1%}"
              + "".join(f"  {_pct(r['onBestFrom2h']):>15} {_hrs(r['hoursToRecover']):>8}" for r in rec))
    seconds = round(time.monotonic() - t0, 1)
    print(f"\n{seconds} s; loop timings (s): {json.dumps(timings)}")
    report = {
        "command": f"bench/tuning_sim.py --hours {hours} --requests {requests} --windows {args.windows}"
                   + (" --no-drift-checks" if args.no_drift_checks else "")
                   + (f" --tuning '{json.dumps(args.tuning)}'" if args.tuning else "") + f" --seed {args.seed}"
                   + (f" --world {args.world}" if args.world != "degrades" else "")
                   + (f" --steps-per-hour {args.steps_per_hour}" if args.steps_per_hour != 1 else "")
                   + (" --no-event-tuning" if args.no_event_tuning else ""),
        "worldName": args.world,
        "hours": hours, "requestsPerHour": requests, "driftHour": drift_hour, "changeHours": changes,
        "stepsPerHour": args.steps_per_hour,
        "world": {m: asdict(t) for m, t in WORLD.items()},
        "expectedReward": {m: {"beforeDrift": float(draws.expected[0, j]), "afterDrift": float(draws.expected[-1, j])}
                           for j, m in enumerate(MODELS)},
        "expectedRewardPerHour": {m: [round(float(x), 4) for x in draws.expected[:, j]] for j, m in enumerate(MODELS)},
        "initialWeights": INITIAL_WEIGHTS,
        "rewardConfig": cfg.to_doc(),
        "results": rows,
        "timelines": timelines,
        "timings": timings,
        "seconds": seconds,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
