"""Tuning by experiment: what a finished canary teaches, and the next candidate to try.

Every canary of a ``params`` policy is an experiment. When it ends (promoted, rolled back, rejected or
ended inconclusive) its record is kept in ``ops_experiments``: both arms' params and mean rewards over the
same hours. Each record gives the optimiser two trials — the challenger's params with the challenger's
mean reward, the champion's with the champion's — measured side by side, so a daily cycle moves both.
The next candidate comes from Optuna's ask/tell interface (TPE, multivariate), re-created from every
trial on each run with a seed stored in the draft's evidence, so the proposal can be reproduced.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import optuna

from .kinds.params import Choices, Dimension, ParamsPolicy, Range

STARTUP_TRIALS = 4  # random proposals before the model takes over (of the first two experiments' four trials)
MIN_TRIAL_SAMPLES = 100  # an arm measured on fewer requests teaches nothing (its mean is mostly noise)
SAMPLER = "TPESampler(multivariate=True)"
OUTCOMES = {"promoted": "promoted", "rolled_back": "rolled_back", "rejected": "rejected",
            "inconclusive": "inconclusive"}

optuna.logging.set_verbosity(logging.WARNING)


@dataclass(frozen=True)
class Trial:
    params: dict[str, Any]
    value: float  # mean reward of these params over the experiment
    n: int
    experiment_id: str


def record(rollout: Mapping[str, Any], challenger: Mapping[str, Any], champion: Mapping[str, Any] | None,
           kind: str) -> dict[str, Any]:
    """The ``ops_experiments`` document of an ended canary (its rollout, and both versions' documents)."""
    ev = rollout.get("lastEvaluation") or {}
    return {
        "experimentId": rollout["rolloutId"], "id": rollout["id"], "kind": kind,
        "version": rollout["version"], "champion": rollout["champion"],
        "params": challenger.get("params") or {},
        "championParams": (champion or {}).get("params") or {},
        "split": rollout.get("split"), "startedAt": rollout.get("canaryStartedAt") or rollout.get("startedAt"),
        "endedAt": rollout.get("endedAt"), "outcome": OUTCOMES.get(str(rollout.get("status")), "rejected"),
        "decidedBy": rollout.get("endedBy"),
        "nChampion": ev.get("nChampion", 0), "nChallenger": ev.get("nChallenger", 0),
        "meanChampion": ev.get("meanChampion"), "meanChallenger": ev.get("meanChallenger"),
        "diff": ev.get("diff"), "ciLow": ev.get("ciLow"), "ciHigh": ev.get("ciHigh"),
        "reason": ev.get("reason"), "evaluatedAt": ev.get("ts"), "srm": bool(ev.get("srm")),
    }


def _finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def trials_of(experiments: Sequence[Mapping[str, Any]], space: Mapping[str, Dimension]) -> list[Trial]:
    """Both arms of every experiment that measured them, in the order they ended (params outside today's
    search space are left out: the optimiser only knows today's distributions; so is an experiment whose
    split was broken, its data untrusted)."""
    out: list[Trial] = []
    for e in sorted(experiments, key=lambda e: (e.get("endedAt") or 0, str(e.get("experimentId")))):
        if e.get("srm"):
            continue
        for params, mean, n in ((e.get("championParams"), e.get("meanChampion"), e.get("nChampion")),
                                (e.get("params"), e.get("meanChallenger"), e.get("nChallenger"))):
            if not isinstance(params, dict) or not _finite(mean) or not isinstance(n, int) or n < MIN_TRIAL_SAMPLES:
                continue
            point = {k: params.get(k) for k in space}
            if all(not dim.problem(point[k]) for k, dim in space.items()):
                out.append(Trial(_point(point, space), float(mean), n, str(e.get("experimentId"))))
    return out


def distribution(dim: Dimension) -> optuna.distributions.BaseDistribution:
    if isinstance(dim, Choices):
        return optuna.distributions.CategoricalDistribution(list(dim.choices))
    assert isinstance(dim, Range)
    if dim.int:
        return optuna.distributions.IntDistribution(int(dim.min), int(dim.max), log=dim.log)
    return optuna.distributions.FloatDistribution(float(dim.min), float(dim.max), log=dim.log)


def seed_for(policy_id: str, n_experiments: int) -> int:
    """The sampler's seed: fixed by the policy and how many experiments it has run (so an experiment that
    measured nothing still moves the next proposal on)."""
    return int.from_bytes(hashlib.sha256(f"{policy_id}:{n_experiments}".encode()).digest()[:4], "big")


@dataclass(frozen=True)
class Proposal:
    params: dict[str, Any]  # the whole params of the candidate (fixed ones unchanged)
    seed: int
    trials: list[Trial]


def propose(policy_id: str, policy: ParamsPolicy, trials: Sequence[Trial],
            tried: Sequence[Mapping[str, Any]] = (), attempt: int = 0, max_asks: int = 20) -> Proposal | None:
    """The next candidate: Optuna's TPE told every trial, asked again while it repeats the params in force
    or a point already ``tried`` (every earlier candidate, measured or not, turned down or not); then an
    untried point drawn at random. ``attempt`` (how many candidates the policy has had) seeds the sampler,
    so the same history gives the same proposal and every new one moves the sampler on. None when the
    search space is empty or every point of a discrete one was tried."""
    if not policy.search:
        return None
    # in name order: the sampler draws the dimensions in this order, and a stored map's key order is not kept
    names = sorted(policy.search)
    dists = {name: distribution(policy.search[name]) for name in names}
    seed = seed_for(policy_id, attempt)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for t in trials:
        study.add_trial(optuna.trial.create_trial(params=t.params, distributions=dists, value=t.value))
    seen = {_key(t.params) for t in trials} | {_key(_point(policy.params, policy.search))} \
        | {_key(_point(p, policy.search)) for p in tried}
    for _ in range(max_asks):
        asked = study.ask(dists)
        point = {k: _native(asked.params[k], policy.search[k]) for k in names}
        if _key(point) not in seen:
            return Proposal({**policy.params, **point}, seed, list(trials))
        study.tell(asked, state=optuna.trial.TrialState.FAIL)  # a repeat teaches nothing: ask again
    # TPE keeps returning to the best region of a small discrete space: take an untried point at random
    rng = random.Random(seed)
    for _ in range(10_000):
        point = {k: _draw(policy.search[k], rng) for k in names}
        if _key(point) not in seen:
            return Proposal({**policy.params, **point}, seed, list(trials))
    return None  # (nearly) every point of a discrete space has been tried


def _draw(dim: Dimension, rng: random.Random) -> Any:
    if isinstance(dim, Choices):
        return rng.choice(dim.choices)
    if dim.int:
        return rng.randint(int(dim.min), int(dim.max))
    if dim.log:
        return math.exp(rng.uniform(math.log(dim.min), math.log(dim.max)))
    return rng.uniform(float(dim.min), float(dim.max))


def _point(params: Mapping[str, Any], space: Mapping[str, Dimension]) -> dict[str, Any]:
    """``params`` restricted to the search space, each value as the optimiser holds it (2.0 of an int is 2)."""
    out = {}
    for k, dim in space.items():
        v = params.get(k)
        out[k] = _native(v, dim) if isinstance(dim, Range) and isinstance(v, int | float) \
            and not isinstance(v, bool) else v
    return out


def _native(value: Any, dim: Dimension) -> Any:
    if isinstance(dim, Range):
        return int(value) if dim.int else float(value)
    return value


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))
