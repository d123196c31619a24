"""Tuning by experiment: what a finished canary teaches, and the next candidate to try.

Every canary of a ``params`` policy is an experiment. When it ends (promoted, rolled back, rejected or
ended inconclusive) its record is kept in ``ops_experiments``: both arms' params and mean rewards over the
same hours. The optimiser is told one trial per point measured, valued from the experiments' paired
differences (``trials_of``), so a daily cycle that moves both arms of an experiment moves no value.
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

import numpy as np
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


@dataclass(frozen=True)
class _Arm:
    key: tuple[tuple[str, str], ...]
    params: dict[str, Any]
    mean: float
    n: int


def _arm(params: Any, mean: Any, n: Any, space: Mapping[str, Dimension]) -> _Arm | None:
    if not isinstance(params, dict) or not _finite(mean) or not isinstance(n, int) or n < MIN_TRIAL_SAMPLES:
        return None
    point = {k: params.get(k) for k in space}
    if any(dim.problem(point[k]) for k, dim in space.items()):
        return None
    point = _point(point, space)
    return _Arm(_key(point), point, float(mean), n)


def trials_of(experiments: Sequence[Mapping[str, Any]], space: Mapping[str, Dimension]) -> list[Trial]:
    """One trial per distinct point an experiment measured, valued from paired differences.

    An experiment measures its two arms side by side, so their difference is free of the hour it ran in;
    their absolute means are not (a daily load cycle moves every arm of an evening experiment together).
    Each point's value is the least-squares fit of every experiment's difference (challenger minus
    champion, weighted by its precision, ``1 / (1/n_champion + 1/n_challenger)``); the arms' absolute means,
    weighted by n, only set the common level of points that experiments connect (and the level of a point
    no experiment connects to the others). A champion measured in many experiments is one point.

    A challenger rolled back whose reward looked better (a guardrail or safety check ended it) counts as
    worse than its champion by as much: the optimiser should not return to what the canary refused.

    Left out: params outside today's search space (the optimiser only knows today's distributions), arms
    measured on fewer than ``MIN_TRIAL_SAMPLES`` requests, and experiments whose split was broken (SRM).
    Trials come in the order their points were first measured.
    """
    arms: dict[tuple[tuple[str, str], ...], _Arm] = {}
    last_seen: dict[tuple[tuple[str, str], ...], str] = {}
    totals: dict[tuple[tuple[str, str], ...], int] = {}
    anchors: list[tuple[tuple[tuple[str, str], ...], float, float]] = []  # (point, mean, weight)
    edges: list[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], float, float]] = []
    for e in sorted(experiments, key=lambda e: (e.get("endedAt") or 0, str(e.get("experimentId")))):
        if e.get("srm"):
            continue
        champion = _arm(e.get("championParams"), e.get("meanChampion"), e.get("nChampion"), space)
        challenger = _arm(e.get("params"), e.get("meanChallenger"), e.get("nChallenger"), space)
        for arm in (champion, challenger):
            if arm is None:
                continue
            arms.setdefault(arm.key, arm)
            last_seen[arm.key] = str(e.get("experimentId"))
            totals[arm.key] = totals.get(arm.key, 0) + arm.n
            anchors.append((arm.key, arm.mean, float(arm.n)))
        if champion is not None and challenger is not None and champion.key != challenger.key:
            diff = challenger.mean - champion.mean
            if e.get("outcome") == "rolled_back":
                diff = -abs(diff)
            edges.append((champion.key, challenger.key, diff, 1.0 / (1.0 / champion.n + 1.0 / challenger.n)))
    if not arms:
        return []
    values = _fit(list(arms), anchors, edges)
    return [Trial(arms[k].params, values[k], totals[k], last_seen[k]) for k in arms]


def _fit(points: list[tuple[tuple[str, str], ...]], anchors: Sequence[tuple[Any, float, float]],
         edges: Sequence[tuple[Any, Any, float, float]]) -> dict[Any, float]:
    """Weighted least squares of ``v[b] - v[a] = diff`` over the edges, which fixes the values of each
    connected group of points up to a constant; each group is then shifted so that its anchors' weighted
    mean is kept (the absolute means set the level and nothing else)."""
    index = {p: i for i, p in enumerate(points)}
    values: Any = np.zeros(len(points))
    if edges:
        design = np.zeros((len(edges), len(points)))
        target = np.zeros(len(edges))
        root = np.sqrt([w for *_, w in edges])
        for r, (a, b, diff, _) in enumerate(edges):
            design[r, index[a]], design[r, index[b]], target[r] = -1.0, 1.0, diff
        values = np.asarray(np.linalg.lstsq(design * root[:, None], target * root, rcond=None)[0], dtype=float)
    group = list(range(len(points)))  # union-find over the edges: the connected groups

    def find(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for a, b, *_ in edges:
        group[find(index[a])] = find(index[b])
    sums: dict[int, list[float]] = {}
    for p, mean, w in anchors:
        i = index[p]
        acc = sums.setdefault(find(i), [0.0, 0.0])
        acc[0] += w * (mean - values[i])
        acc[1] += w
    return {p: float(values[i] + sums[find(i)][0] / sums[find(i)][1]) for p, i in index.items()}


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
