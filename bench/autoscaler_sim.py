"""Tuning by experiment: does the loop find a good autoscaler within 15 experiments? Beside random and grid search.

    .venv/bin/python bench/autoscaler_sim.py [--seeds 5] [--experiments 15] [--requests 3000] [--looks 1]
                                             # writes bench/results/autoscaler_sim.json

**The hidden world.** A service behind an autoscaler with a ``params`` policy: ``targetCpu`` in [0.3, 0.9],
``minInstances`` in 1..10, ``cooldownS`` in {30, 60, 120}. Its demand follows a daily cycle the tuner does
not know (load 0.6 at 02:00 .. 1.4 at 14:00, local time of the service); each seed's service starts its
first experiment at another local hour (06:00, 13:00, 20:00, 03:00, 10:00, ...). Per hour of the day:

* demand D = 5 x load instance-equivalents; instances n = max(minInstances, D / targetCpu);
* a burst of 0.8 instance-equivalents (x0.7 with a 30 s cooldown, x1.6 with 120 s: the scaler reacts
  later) arrives before the scaler reacts: peak utilisation u = min(0.97, (D + burst) / n);
* latency is lognormal (sigma 0.45) around 70 ms / (1 - u); a request slower than 3 s times out
  (``timeout``, durationMs 3000); errors (``failure``): 0.5 % + 3 % with a 30 s cooldown (the fleet flaps)
  + cold starts 0.4 exp(-n / 0.9) (a small fleet);
* cost per request 0.034 x n / D (x1.04 with a 30 s cooldown, x0.97 with 120 s), lognormal (sigma 0.1).

Reward: ``opsloop.domain.reward.score`` with ``RewardConfig()``; a params' true reward is its expected
reward (closed form) averaged over the 24 hours of the day, and the optimum comes from a dense search in
memory (targetCpu every 0.001, every minInstances and cooldownS). The seed params (targetCpu 0.8,
minInstances 2, cooldownS 60) are fine at the daily peak and time out at night (86.2 % of the optimum).

**The real loop, in simulated time**, against a fresh Firestore emulator this script starts (cleared
between strategies): the seed is loaded, ``config/flags`` learning on with ``autoActivatePolicies``,
``config/scoring.safetyMarginMs`` 0, ``config/rollout`` {minSamples 300, experimentSplit 0.2,
maxDurationHours 0.9, maxCostIncreaseRatio 1.0, p95SloMs 500}: cost is part of this component's reward, and a
better autoscaler runs more instances (+15..33 % cost per request at the optimum), which the default +20 %
guardrail (and the promotion gate at half of it) would refuse; and a p95 within 500 ms is no breach of the
p95 checks relative to the champion (an over-provisioned, very fast champion would otherwise veto every
cheaper setting the reward prefers). Each (strategy, seed) run has the emulator to itself
(cleared before it) and one policy, ``autoscaler-s<seed>`` (so the loop's Optuna seed differs per seed). Each
experiment occupies one simulated hour (the last ``--experiments`` hours before now): at its start the
strategy starts a canary at split 0.2 —

* **loop**: ``auto_tune`` (Optuna's next candidate, drafted and started by the loop itself);
* **random**: a uniformly random point of the space (a draft, then ``start_experiment``);
* **grid**: the next point of a 3 x 3 x 3 grid (targetCpu 0.4/0.6/0.8, minInstances 3/6/9, every cooldown)
  in one fixed shuffled order, the same for every seed;

then ``--requests`` requests are assigned by ``PolicyClient.assign`` and their outcomes drawn from the
hidden world with the params they were assigned (event times spread over the hour, the same random numbers
for a request whatever the strategy), recorded with ``record_batch``, scored with ``score_observations`` and
``evaluate_rollouts`` looks at the hour's end (``--looks`` > 1: also at evenly spaced times inside the hour,
each preceded by scoring). An experiment still undecided at the hour's end is ended inconclusive
(maxDurationHours 0.9). A ``PolicyClient`` is made for each stretch between two looks (heads cannot change
inside one), so it reads each head once instead of once per request.

Reported per strategy: the true reward of the active params after each experiment (mean over seeds, % of
the optimum), experiments (= simulated hours) to reach 95 % of the optimum, how the experiments ended, the
reward lost during canaries (over the challenger's requests: the champion's minus the challenger's expected
reward at that hour, where positive; and the realized deficit against the same requests run with the
champion's params) and a safety check: an evaluation with a safety threshold breached must end its canary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import write_report  # noqa: E402
from opsloop.domain.reward import RewardConfig, score  # noqa: E402
from scripts import emulator as emu_mod  # noqa: E402

PROJECT = "demo-opsloop"
HOUR_MS = 3_600_000
STRATEGIES = ("loop", "random", "grid")
Params = dict[str, Any]

# ------------------------------------------------------------------------------------------ the hidden world
SEARCH: dict[str, Any] = {"targetCpu": {"min": 0.3, "max": 0.9}, "minInstances": {"min": 1, "max": 10, "int": True},
                          "cooldownS": {"choices": [30, 60, 120]}}
COOLDOWNS = (30, 60, 120)
SEED_PARAMS: Params = {"targetCpu": 0.8, "minInstances": 2, "cooldownS": 60}
BASE_DEMAND = 5.0  # instance-equivalents at load 1
BURST = 0.8  # instance-equivalents arriving before the scaler reacts (cooldownS 60)
BURST_BY_COOLDOWN = {30: 0.7, 60: 1.0, 120: 1.6}
MAX_UTILISATION = 0.97
LATENCY_BASE_MS = 70.0
LATENCY_SIGMA = 0.45
TIMEOUT_MS = 3000.0
BASE_ERRORS = 0.005
FLAP_ERRORS = {30: 0.03, 60: 0.0, 120: 0.0}
COLD_START_ERRORS = 0.4  # x exp(-instances / COLD_START_SCALE)
COLD_START_SCALE = 0.9
INSTANCE_COST = 0.034  # USD per request per instance-per-unit-of-demand
CHURN_COST = {30: 1.04, 60: 1.0, 120: 0.97}
COST_SIGMA = 0.1
FIRST_LOCAL_HOUR = 6  # seed s starts its first experiment at local hour (6 + 7 s) mod 24


def load(hour_of_day: Any) -> Any:
    """The daily cycle of demand: 0.6 at 02:00, 1.4 at 14:00 (hour of day may be an array)."""
    return 1.0 + 0.4 * np.sin(2.0 * np.pi * (np.asarray(hour_of_day, dtype=float) - 8.0) / 24.0)


@dataclass(frozen=True)
class Behaviour:
    """What the service does with some params in some hour (arrays when the params are arrays)."""

    instances: Any
    utilisation: Any  # at the burst peak
    latency_median_ms: Any
    errors: Any  # probability of a failure (besides timeouts)
    cost_usd: Any  # mean cost per request


def behaviour(target_cpu: Any, min_instances: Any, cooldown_s: int, hour_of_day: float) -> Behaviour:
    demand = BASE_DEMAND * load(hour_of_day)
    n = np.maximum(np.asarray(min_instances, dtype=float), demand / np.asarray(target_cpu, dtype=float))
    u = np.minimum(MAX_UTILISATION, (demand + BURST * BURST_BY_COOLDOWN[cooldown_s]) / n)
    errors = BASE_ERRORS + FLAP_ERRORS[cooldown_s] + COLD_START_ERRORS * np.exp(-n / COLD_START_SCALE)
    return Behaviour(n, u, LATENCY_BASE_MS / (1.0 - u), errors, INSTANCE_COST * n / demand * CHURN_COST[cooldown_s])


def _partial_mean(mu: Any, sigma: float, a: float) -> Any:
    """E[X; X < a] of a lognormal X = exp(N(mu, sigma^2))."""
    return np.exp(mu + sigma**2 / 2) * special.ndtr((math.log(a) - mu - sigma**2) / sigma)


def _mean_min(median: Any, sigma: float, a: float) -> Any:
    """E[min(X, a)] of a lognormal X with that median."""
    mu = np.log(median)
    return _partial_mean(mu, sigma, a) + a * (1.0 - special.ndtr((math.log(a) - mu) / sigma))


def expected_reward_arrays(target_cpu: Any, min_instances: Any, cooldown_s: int, hour_of_day: float,
                           cfg: RewardConfig) -> Any:
    """Expected reward per request, in closed form (a success scores 1 - latency and cost penalties, every
    other outcome 0; latency and cost are independent; the timeout is below the reward's latency bound)."""
    assert cfg.max_latency_ms >= TIMEOUT_MS and 1.0 - cfg.w_latency - cfg.w_cost >= 0.0
    b = behaviour(target_cpu, min_instances, cooldown_s, hour_of_day)
    mu = np.log(b.latency_median_ms)
    served = 1.0 - b.errors
    in_time = special.ndtr((math.log(TIMEOUT_MS) - mu) / LATENCY_SIGMA)
    cost_penalty = cfg.w_cost * _mean_min(b.cost_usd * math.exp(-COST_SIGMA**2 / 2), COST_SIGMA,
                                          cfg.max_cost_usd) / cfg.max_cost_usd
    latency_part = cfg.w_latency / cfg.max_latency_ms * _partial_mean(mu, LATENCY_SIGMA, TIMEOUT_MS)
    return served * (in_time * (1.0 - cost_penalty) - latency_part)


def expected_reward(params: Mapping[str, Any], hour_of_day: float, cfg: RewardConfig | None = None) -> float:
    """The expected reward of one request run with ``params`` in the hour starting at ``hour_of_day``."""
    return float(expected_reward_arrays(params["targetCpu"], params["minInstances"], int(params["cooldownS"]),
                                        hour_of_day + 0.5, cfg or RewardConfig()))


def true_reward(params: Mapping[str, Any], cfg: RewardConfig | None = None) -> float:
    """The expected reward of ``params`` over a whole day (every hour weighs the same)."""
    return sum(expected_reward(params, h, cfg) for h in range(24)) / 24


def reward_surface(step: float = 0.001, cfg: RewardConfig | None = None) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """True rewards on a dense grid: targetCpu values, and per cooldown an array [targetCpu, minInstances]."""
    cfg = cfg or RewardConfig()
    lo, hi = SEARCH["targetCpu"]["min"], SEARCH["targetCpu"]["max"]
    cpus = np.round(np.arange(lo, hi + step / 2, step), 6)
    t, m = np.meshgrid(cpus, np.arange(1, 11), indexing="ij")
    out = {c: sum(expected_reward_arrays(t, m, c, h + 0.5, cfg) for h in range(24)) / 24 for c in COOLDOWNS}
    return cpus, out


def optimum(step: float = 0.001, cfg: RewardConfig | None = None) -> tuple[Params, float]:
    """The best params of the space and their true reward (dense search)."""
    cpus, surface = reward_surface(step, cfg)
    c = max(COOLDOWNS, key=lambda k: float(surface[k].max()))
    i, j = np.unravel_index(int(np.argmax(surface[c])), surface[c].shape)
    return {"targetCpu": float(cpus[i]), "minInstances": int(j) + 1, "cooldownS": c}, float(surface[c].max())


def share_within(fraction: float, step: float = 0.01) -> float:
    """The share of the search space (uniformly, as random search draws) whose true reward is at least
    ``fraction`` of the optimum's."""
    _, surface = reward_surface(step)
    best = max(float(s.max()) for s in surface.values())
    return float(np.mean([(s >= fraction * best).mean() for s in surface.values()]))


def outcome_of(params: Mapping[str, Any], hour_of_day: float, u: float, z_latency: float,
               z_cost: float) -> tuple[str, float, float]:
    """One request's (outcome, durationMs, costUsd) from its random numbers (uniform, two standard normals)."""
    b = behaviour(params["targetCpu"], params["minInstances"], int(params["cooldownS"]), hour_of_day + 0.5)
    latency = float(b.latency_median_ms) * math.exp(LATENCY_SIGMA * z_latency)
    cost = round(float(b.cost_usd) * math.exp(COST_SIGMA * z_cost - COST_SIGMA**2 / 2), 6)
    if latency >= TIMEOUT_MS:
        return "timeout", TIMEOUT_MS, cost
    return ("failure" if u < float(b.errors) else "success"), round(latency, 1), cost


# ------------------------------------------------------------------------------------------ candidates
def grid_points(levels: int = 3) -> list[Params]:
    """A full-factorial grid (cell centres of targetCpu and minInstances, every cooldown) in one fixed
    shuffled order, the same for every seed."""
    lo, hi = SEARCH["targetCpu"]["min"], SEARCH["targetCpu"]["max"]
    m_lo, m_hi = SEARCH["minInstances"]["min"], SEARCH["minInstances"]["max"]
    cpus = [round(lo + (hi - lo) * (i + 0.5) / levels, 4) for i in range(levels)]
    mins = [math.floor(m_lo + (m_hi - m_lo) * (i + 0.5) / levels + 0.5) for i in range(levels)]
    points = [{"targetCpu": t, "minInstances": m, "cooldownS": c} for t in cpus for m in mins for c in COOLDOWNS]
    points = [p for p in points if p != SEED_PARAMS]
    order = np.random.default_rng(0).permutation(len(points))
    return [points[int(i)] for i in order]


def grid_candidates(budget: int) -> list[Params]:
    """The grid's first ``budget`` points (a finer grid when the budget exceeds a 3-level one)."""
    levels = 3
    while len(grid_points(levels)) < budget:
        levels += 1
    return grid_points(levels)[:budget]


def random_candidates(seed: int, budget: int) -> list[Params]:
    """``budget`` points drawn uniformly from the search space."""
    rng = np.random.default_rng([1000, seed])
    lo, hi = SEARCH["targetCpu"]["min"], SEARCH["targetCpu"]["max"]
    return [{"targetCpu": round(float(rng.uniform(lo, hi)), 4),
             "minInstances": int(rng.integers(SEARCH["minInstances"]["min"], SEARCH["minInstances"]["max"] + 1)),
             "cooldownS": int(rng.choice(COOLDOWNS))} for _ in range(budget)]


def in_space(params: Mapping[str, Any]) -> bool:
    t, m, c = params["targetCpu"], params["minInstances"], params["cooldownS"]
    return (SEARCH["targetCpu"]["min"] <= t <= SEARCH["targetCpu"]["max"] and isinstance(m, int)
            and SEARCH["minInstances"]["min"] <= m <= SEARCH["minInstances"]["max"] and c in COOLDOWNS)


# ------------------------------------------------------------------------------------------ the real loop
def local_hour(seed: int, k: int) -> int:
    """The service's local hour of day during experiment hour ``k`` (0-based) of seed ``seed``."""
    return (FIRST_LOCAL_HOUR + 7 * seed + k) % 24


def policy_id(seed: int) -> str:
    return f"autoscaler-s{seed}"


def policy_doc(seed: int) -> dict[str, Any]:
    return {"id": policy_id(seed), "version": "1.0.0", "kind": "params", "status": "active", "createdBy": "bench",
            "notes": "autoscaler_sim: initial settings", "params": dict(SEED_PARAMS), "search": SEARCH}


ROLLOUT = {"minSamples": 300, "experimentSplit": 0.2, "maxDurationHours": 0.9, "maxCostIncreaseRatio": 1.0,
           "p95SloMs": 500.0}


@dataclass
class Experiment:
    """One experiment of one seed, as it ran and how it ended."""

    index: int  # 1-based
    local_hour: int
    load: float
    started: bool
    note: str
    rollout_id: str | None = None
    champion: str | None = None
    challenger: str | None = None
    champion_params: Params | None = None
    challenger_params: Params | None = None
    outcome: str | None = None  # promoted | rolled_back | inconclusive | running | ...
    reason: str | None = None
    looks: int = 0
    n_champion: int = 0  # as the last evaluation counted them
    n_challenger: int = 0
    diff: float | None = None
    true_champion_hour: float | None = None  # expected reward at this hour
    true_challenger_hour: float | None = None
    true_champion: float | None = None  # over the day
    true_challenger: float | None = None
    challenger_requests: int = 0  # requests assigned the challenger
    harm: float = 0.0  # sum over them of max(0, champion's - challenger's expected reward at that hour)
    realized_deficit: float = 0.0  # sum over them of (reward with the champion's params - reward they got)
    safety_breaches: int = 0  # evaluations with a safety threshold breached (from safetyMinSamples)
    safety_violations: int = 0  # such evaluations not followed by the canary's end at that same evaluation
    true_safety_crossing: bool = False  # the challenger truly is 0.10 worse in reward or +10 pp in errors
    active_after: str | None = None
    active_params_after: Params | None = None
    true_active_after: float | None = None


@dataclass
class SeedRun:
    strategy: str
    seed: int
    policy_id: str
    experiments: list[Experiment] = field(default_factory=list)


def _ended_status(store: Any, rollout_id: str) -> str:
    return str((store.rollouts.get(rollout_id) or {}).get("status"))


def _draft(store: Any, pid: str, params: Params, actor: str, note: str) -> str:
    from opsloop.domain import semver
    from opsloop.domain.windows import ms

    head = store.policies.head(pid)
    versions = store.policies.versions(pid)
    version = str(max(semver.Version.parse(str(v["version"])) for v in versions).bump_patch())
    doc = {"id": pid, "version": version, "kind": "params", "status": "draft", "createdBy": actor,
           "createdAt": ms(dt.datetime.now(dt.UTC)), "basedOn": head.active, "notes": note,
           "params": dict(params), "search": SEARCH}
    audit = {"actor": actor, "action": "draft", "id": pid, "from": head.active, "to": version}
    store.policies.create_version(doc, audit)
    return version


def _check_safety(store: Any, rollout_id: str, safety_min: int) -> tuple[int, int]:
    """(evaluations that found a safety threshold breached, those not followed by the canary's end there)."""
    evaluations = store.rollouts.evaluations(rollout_id)
    status = _ended_status(store, rollout_id)
    breaches = violations = 0
    for i, ev in enumerate(evaluations):
        if int(ev.get("nChallenger") or 0) >= safety_min and any((ev.get("safety") or {}).values()):
            breaches += 1
            if i != len(evaluations) - 1 or status != "rolled_back":
                violations += 1
    return breaches, violations


def run_seed(emu: emu_mod.Emulator, strategy: str, s: int, experiments: int, requests: int, looks: int,
             start_ms: int, cfg: RewardConfig) -> tuple[SeedRun, dict[str, float]]:
    """One strategy on one seed's policy, in a freshly cleared emulator, for ``experiments`` simulated hours.

    Each run gets its own emulator contents: the emulator's queries slow down with the number of stored
    observations (every scoring page scans them), so 15 runs of 45,000 observations each take a fraction of
    the time of 3 runs of 225,000.
    """
    from opsloop.client import PolicyClient
    from opsloop.domain.experiment import RolloutConfig
    from opsloop.services import rollouts, scoring, seed, tuning
    from opsloop.services.experiments import start_experiment
    from opsloop.services.record import record_batch
    from opsloop.store.client import get_db
    from opsloop.store.firestore_store import FirestoreStore

    t = time.monotonic()
    emu.clear()
    store = FirestoreStore(get_db())
    seed.load_seed(store, ROOT / "seed")
    store.configs.set_flags({"enabled": True, "autoActivatePolicies": True}, actor="bench")
    store.configs.set("scoring", {"safetyMarginMs": 0})
    store.configs.set("rollout", ROLLOUT)
    split = float(ROLLOUT["experimentSplit"])
    safety_min = RolloutConfig().safety_min_samples
    pid = policy_id(s)
    store.policies.create_version(policy_doc(s), {"actor": "bench", "action": "seed", "id": pid, "from": None,
                                                "to": "1.0.0"})
    run = SeedRun(strategy, s, pid)
    plan = random_candidates(s, experiments) if strategy == "random" else grid_candidates(experiments)
    timing = {"setup": time.monotonic() - t, "start": 0.0, "assign": 0.0, "record": 0.0, "score": 0.0,
              "evaluate": 0.0, "collect": 0.0}
    for k in range(experiments):
        hour_start = start_ms + k * HOUR_MS
        begin = dt.datetime.fromtimestamp(hour_start / 1000, dt.UTC)
        hour = local_hour(s, k)
        # 1. the hour's experiment starts
        t = time.monotonic()
        if strategy == "loop":
            outcome = next((o for o in tuning.auto_tune(store, begin).outcomes if o.policy_id == pid), None)
            note = "no tuning outcome" if outcome is None else f"{outcome.action}: {outcome.reason}"
        else:
            version = _draft(store, pid, plan[k], f"bench-{strategy}", f"{strategy} search, experiment {k + 1}")
            try:
                start_experiment(store, pid, version, split, f"bench-{strategy}", at=begin)
                note = f"{strategy} candidate {version}"
            except Exception as exc:  # reported in the results, never hidden
                note = f"not started: {type(exc).__name__}: {exc}"[:300]
        ro = store.policies.head(pid).rollout
        e = Experiment(k + 1, hour, round(float(load(hour + 0.5)), 3), ro is not None, note)
        if ro is not None:
            e.rollout_id, e.champion, e.challenger = ro.rollout_id, ro.champion, ro.version
            e.champion_params = dict((store.policies.policy(pid, ro.champion) or {})["params"])
            e.challenger_params = dict((store.policies.policy(pid, ro.version) or {})["params"])
            e.true_champion_hour = expected_reward(e.champion_params, hour, cfg)
            e.true_challenger_hour = expected_reward(e.challenger_params, hour, cfg)
            e.true_champion, e.true_challenger = true_reward(e.champion_params, cfg), true_reward(
                e.challenger_params, cfg)
            bc = behaviour(**_args(e.champion_params), hour_of_day=hour + 0.5)
            bx = behaviour(**_args(e.challenger_params), hour_of_day=hour + 0.5)
            e.true_safety_crossing = (e.true_champion_hour - e.true_challenger_hour > 0.10) or (
                _failure_rate(bx) - _failure_rate(bc) > 0.10)
        timing["start"] += time.monotonic() - t
        # 2. the hour's requests, in ``looks`` stretches each followed by scoring and evaluateRollouts
        for j in range(looks):
            lo, hi = requests * j // looks, requests * (j + 1) // looks
            look_at = dt.datetime.fromtimestamp((hour_start + HOUR_MS * (j + 1) // looks) / 1000, dt.UTC)
            t = time.monotonic()
            client = PolicyClient(store.policies, ttl_s=HOUR_MS / 1000)
            batch = _requests(client, s, k, lo, hi, requests, hour_start, hour, e, cfg)
            timing["assign"] += time.monotonic() - t
            t = time.monotonic()
            for i in range(0, len(batch), 500):
                record_batch(store, {"observations": batch[i : i + 500]})
            timing["record"] += time.monotonic() - t
            t = time.monotonic()
            scored = scoring.score_observations(store, schedule_time=look_at)
            assert scored.scored == len(batch), (scored.scored, len(batch))
            timing["score"] += time.monotonic() - t
            t = time.monotonic()
            rollouts.evaluate_rollouts(store, look_at)
            timing["evaluate"] += time.monotonic() - t
        # 3. how the experiment ended, and what is active now
        t = time.monotonic()
        head = store.policies.head(pid)
        if head.rollout is not None:
            e.note += f"; still running after the hour: {head.rollout.rollout_id}"
        if e.rollout_id is not None:
            doc = store.rollouts.get(e.rollout_id) or {}
            ev = doc.get("lastEvaluation") or {}
            e.outcome, e.reason, e.looks = str(doc.get("status")), ev.get("reason"), int(doc.get("evaluationCount")
                                                                                        or 0)
            e.n_champion, e.n_challenger, e.diff = int(ev.get("nChampion") or 0), int(ev.get("nChallenger") or 0), \
                ev.get("diff")
            e.safety_breaches, e.safety_violations = _check_safety(store, e.rollout_id, safety_min)
        e.active_after = head.active
        e.active_params_after = dict((store.policies.policy(pid, str(head.active)) or {})["params"])
        e.true_active_after = true_reward(e.active_params_after, cfg)
        run.experiments.append(e)
        timing["collect"] += time.monotonic() - t
    return run, {k: round(v, 1) for k, v in timing.items()}


def _args(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"target_cpu": params["targetCpu"], "min_instances": params["minInstances"],
            "cooldown_s": int(params["cooldownS"])}


def _failure_rate(b: Behaviour) -> float:
    """Share of requests that do not succeed: timeouts and errors."""
    timeouts = 1.0 - float(special.ndtr((math.log(TIMEOUT_MS) - math.log(float(b.latency_median_ms))) / LATENCY_SIGMA))
    return timeouts + (1.0 - timeouts) * float(b.errors)


def _letter(e: Experiment) -> str:
    return {"promoted": "P", "rolled_back": "R", "inconclusive": "I"}.get(str(e.outcome), "-" if not e.started
                                                                          else "?")


NOISE: dict[tuple[int, int], np.ndarray] = {}


def noise(seed: int, k: int, requests: int) -> np.ndarray:
    """The random numbers of seed ``seed``'s requests in experiment hour ``k`` (the same for every strategy):
    rows u, z_latency, z_cost."""
    key = (seed, k)
    if key not in NOISE or NOISE[key].shape[1] != requests:
        rng = np.random.default_rng([7, seed, k])
        NOISE[key] = np.vstack([rng.random(requests), rng.standard_normal(requests), rng.standard_normal(requests)])
    return NOISE[key]


def _requests(client: Any, s: int, k: int, lo: int, hi: int, requests: int, hour_start: int, local_hour: int,
              e: Experiment, cfg: RewardConfig) -> list[dict[str, Any]]:
    """Requests ``lo``..``hi`` of the hour for seed ``s``: assigned, run in the hidden world, as observations."""
    draws = noise(s, k, requests)
    pid = policy_id(s)
    out = []
    for i in range(lo, hi):
        rid = f"s{s}-e{k + 1:02d}-{i:05d}"
        a = client.assign(rid, pid)
        u, zl, zc = float(draws[0, i]), float(draws[1, i]), float(draws[2, i])
        outcome, latency, cost = outcome_of(a.params, local_hour, u, zl, zc)
        if a.arm == "challenger" and e.champion_params is not None and a.version == e.challenger:
            e.challenger_requests += 1
            assert e.true_champion_hour is not None and e.true_challenger_hour is not None
            e.harm += max(0.0, e.true_champion_hour - e.true_challenger_hour)
            cf = outcome_of(e.champion_params, local_hour, u, zl, zc)
            e.realized_deficit += score(*cf, cfg).score - score(outcome, latency, cost, cfg).score
        item: dict[str, Any] = {"id": rid, "ts": hour_start + (i * HOUR_MS) // requests,
                                "component": f"autoscaler:s{s}", "outcome": outcome, "durationMs": latency,
                                "costUsd": cost, "policyVersion": a.policy_version}
        if a.arm is not None:
            item["arm"] = a.arm
        out.append(item)
    return out


# ------------------------------------------------------------------------------------------ report
def reach(curve: Sequence[float], target: float) -> int | None:
    """The first experiment (1-based) after which the active params reach ``target``; None if never."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target), None)


def _median_reach(values: Sequence[int | None]) -> float | None:
    """Median over seeds, 'not reached' (None) counting as later than any reached value."""
    big = 10**9
    m = statistics.median([big if v is None else v for v in values])
    return None if m >= big else float(m)


def summarise(strategy: str, runs: Sequence[SeedRun], best: float, seed_reward: float) -> dict[str, Any]:
    curves = [[e.true_active_after or 0.0 for e in r.experiments] for r in runs]
    mean_curve = [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]
    exps = [e for r in runs for e in r.experiments]
    outcomes: dict[str, int] = {}
    for e in exps:
        key = str(e.outcome) if e.started else "not started"
        outcomes[key] = outcomes.get(key, 0) + 1
    rollback_reasons = {"safety": 0, "guardrail": 0, "worse": 0}
    for e in exps:
        if e.outcome == "rolled_back":
            reason = str(e.reason)
            kind = "safety" if "safety" in reason else "guardrail" if "guardrail" in reason else "worse"
            rollback_reasons[kind] += 1
    reach95 = [reach(c, 0.95 * best) for c in curves]
    reach98 = [reach(c, 0.98 * best) for c in curves]
    n = len(runs)
    return {
        "strategy": strategy,
        "meanTrueRewardAfter": [round(v, 5) for v in mean_curve],
        "meanShareOfOptimumAfter": [round(v / best, 5) for v in mean_curve],
        "perSeedShareOfOptimumAfter": {r.policy_id: [round(v / best, 4) for v in c] for r, c in zip(runs, curves,
                                                                                                    strict=True)},
        "seedShareOfOptimum": round(seed_reward / best, 5),
        "experimentsTo95": reach95, "medianExperimentsTo95": _median_reach(reach95),
        "experimentsTo98": reach98, "medianExperimentsTo98": _median_reach(reach98),
        "outcomes": outcomes, "rollbacksBy": rollback_reasons,
        "harmPerSeed": round(sum(e.harm for e in exps) / n, 2),
        "realizedDeficitPerSeed": round(sum(e.realized_deficit for e in exps) / n, 2),
        "challengerRequestsPerSeed": round(sum(e.challenger_requests for e in exps) / n, 1),
        "harmfulCanaries": sum(1 for e in exps if e.harm > 0),
        "trueSafetyCrossings": sum(1 for e in exps if e.true_safety_crossing),
        "trueSafetyCrossingsEnded": {o: sum(1 for e in exps if e.true_safety_crossing and e.outcome == o)
                                     for o in ("promoted", "rolled_back", "inconclusive")},
        "safetyBreaches": sum(e.safety_breaches for e in exps),
        "safetyViolations": sum(e.safety_violations for e in exps),
        "promotedWorseOverTheDay": sum(1 for e in exps if e.outcome == "promoted" and e.true_challenger is not None
                                       and e.true_champion is not None and e.true_challenger < e.true_champion),
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def table(summaries: Sequence[dict[str, Any]], checkpoints: Sequence[int]) -> list[str]:
    head = (["strategy"] + [f"after {c}" for c in checkpoints]
            + ["exp. to 95 %", "exp. to 98 %", "P / R / I", "R: safety/guard/worse", "harm/seed", "safety ok"])
    rows = [head]
    for s in summaries:
        share = s["meanShareOfOptimumAfter"]
        o = s["outcomes"]
        r95, r98 = s["medianExperimentsTo95"], s["medianExperimentsTo98"]
        rb = s["rollbacksBy"]
        rows.append([s["strategy"]] + [_pct(share[c - 1]) for c in checkpoints]
                    + ["not reached" if r95 is None else f"{r95:g}", "not reached" if r98 is None else f"{r98:g}",
                       f"{o.get('promoted', 0)} / {o.get('rolled_back', 0)} / {o.get('inconclusive', 0)}",
                       f"{rb['safety']}/{rb['guardrail']}/{rb['worse']}", f"{s['harmPerSeed']:.1f}",
                       f"{s['safetyBreaches'] - s['safetyViolations']}/{s['safetyBreaches']}"])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per strategy (hidden noise, phase, policy id)")
    parser.add_argument("--experiments", type=int, default=15, help="experiments (simulated hours) per run")
    parser.add_argument("--requests", type=int, default=3000, help="requests per seed per experiment hour")
    parser.add_argument("--looks", type=int, default=1, help="evaluateRollouts looks per experiment hour")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "autoscaler_sim.json")
    args = parser.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    assert all(s in STRATEGIES for s in strategies), strategies
    t0 = time.monotonic()
    cfg = RewardConfig()
    best_params, best = optimum()
    seed_reward = true_reward(SEED_PARAMS, cfg)
    seeds = list(range(args.seeds))
    print(f"autoscaler simulation: {len(strategies)} strategies x {args.seeds} seeds x {args.experiments} experiments "
          f"x {args.requests} requests, {args.looks} look(s) per hour")
    print(f"  optimum {best_params}: true reward {best:.4f}; seed {SEED_PARAMS}: {seed_reward:.4f} "
          f"({seed_reward / best:.1%}); share of the space >= 95 %: {share_within(0.95):.1%}, "
          f">= 98 %: {share_within(0.98):.1%}")
    now = dt.datetime.now(dt.UTC)
    end_ms = int(now.timestamp() * 1000) // HOUR_MS * HOUR_MS
    start_ms = end_ms - args.experiments * HOUR_MS
    results: dict[str, list[SeedRun]] = {}
    timings: dict[str, dict[str, float]] = {}
    emu = emu_mod.start(PROJECT, rules=ROOT / "firestore.rules", log_dir=ROOT / ".emulator-logs")
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emu.address
        os.environ["GCLOUD_PROJECT"] = PROJECT
        from opsloop.store import client

        client.reset_for_tests()
        for strategy in strategies:
            results[strategy], timings[strategy] = [], {}
            for s in seeds:
                t = time.monotonic()
                run, timing = run_seed(emu, strategy, s, args.experiments, args.requests, args.looks, start_ms, cfg)
                results[strategy].append(run)
                for key, value in {**timing, "total": round(time.monotonic() - t, 1)}.items():
                    timings[strategy][key] = round(timings[strategy].get(key, 0.0) + value, 1)
                print(f"  {strategy:<6} s{s} (from {local_hour(s, 0):02d}:00)  "
                      + "".join(_letter(e) for e in run.experiments)
                      + f"  active: {' '.join(f'{(e.true_active_after or 0) / best:.0%}' for e in run.experiments)}"
                      + f"  ({time.monotonic() - t:.0f} s)", flush=True)
    finally:
        emu.stop()

    summaries = [summarise(s, results[s], best, seed_reward) for s in strategies]
    checkpoints = [c for c in (5, 10, 15) if c <= args.experiments] or [args.experiments]
    if args.experiments not in checkpoints:
        checkpoints.append(args.experiments)
    print()
    for line in table(summaries, checkpoints):
        print(line)
    seconds = round(time.monotonic() - t0, 1)
    by_name = {s["strategy"]: s for s in summaries}
    goal = None
    if "loop" in by_name:
        last = {k: v["meanShareOfOptimumAfter"][-1] for k, v in by_name.items()}
        loop = by_name["loop"]
        goal = {"target": "≥ 95 % of the optimum within the budget, ahead of random and grid search",
                "loopShareAfterBudget": last["loop"],
                "seedsReaching95": sum(1 for v in loop["experimentsTo95"] if v is not None),
                "aheadOf": {k: last["loop"] > v for k, v in last.items() if k != "loop"}}
        goal["met"] = bool(last["loop"] >= 0.95 and all(goal["aheadOf"].values()))
        print(f"\ngoal (issue 17): {goal}")
    print(f"{seconds} s; timings (s): {timings}")
    report = {
        "command": f"bench/autoscaler_sim.py --seeds {args.seeds} --experiments {args.experiments} "
                   f"--requests {args.requests} --looks {args.looks}"
                   + ("" if strategies == list(STRATEGIES) else f" --strategies {args.strategies}"),
        "world": {"search": SEARCH, "seedParams": SEED_PARAMS, "baseDemand": BASE_DEMAND, "burst": BURST,
                  "burstByCooldown": BURST_BY_COOLDOWN, "maxUtilisation": MAX_UTILISATION,
                  "latencyBaseMs": LATENCY_BASE_MS, "latencySigma": LATENCY_SIGMA, "timeoutMs": TIMEOUT_MS,
                  "baseErrors": BASE_ERRORS, "flapErrors": FLAP_ERRORS, "coldStartErrors": COLD_START_ERRORS,
                  "coldStartScale": COLD_START_SCALE, "instanceCost": INSTANCE_COST, "churnCost": CHURN_COST,
                  "costSigma": COST_SIGMA, "load": "1 + 0.4 sin(2π (hour - 8) / 24)",
                  "firstLocalHourBySeed": {policy_id(s): local_hour(s, 0) for s in seeds}},
        "optimum": {"params": best_params, "trueReward": best},
        "seedTrueReward": seed_reward, "seedShareOfOptimum": seed_reward / best,
        "shareOfSpaceWithin95": share_within(0.95), "shareOfSpaceWithin98": share_within(0.98),
        "rolloutConfig": ROLLOUT, "rewardConfig": cfg.to_doc(),
        "seeds": args.seeds, "experiments": args.experiments, "requestsPerHour": args.requests, "looks": args.looks,
        "hoursPerExperiment": 1,
        "gridOrder": grid_candidates(args.experiments),
        "summaries": summaries,
        "goal": goal,
        "runs": {s: [{"policyId": r.policy_id, "seed": r.seed, "experiments": [asdict(e) for e in r.experiments]}
                     for r in results[s]] for s in strategies},
        "timings": timings,
        "seconds": seconds,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
