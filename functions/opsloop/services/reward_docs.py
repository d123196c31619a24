"""What scoring one observation writes: its ``ops_rewards`` document and what it adds to its buckets,
under each live reward generation (``domain/generations``). Shared by the scorer, the backfill and the
correction a late feedback makes."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..domain import generations as gen_domain
from ..domain import reward as reward_domain
from ..domain import windows
from ..domain.generations import Generations
from ..domain.ingest import StoredObservation
from ..domain.observation import stored_problem
from ..domain.stats import Deltas, Summary, total
from ..domain.windows import ms
from ..store import paths

Scored = dict[int, Summary]  # generation -> what the observation adds to its buckets
INPUTS = ("policyVersion", "arm", "propensity", "weight", "durationMs", "costUsd", "tokensIn", "tokensOut",
          "errorCode", "metrics")


def summary_of(d: dict[str, Any], score: float) -> Summary:
    """What one scored observation adds to its buckets."""
    outcome = str(d.get("outcome"))
    version = d.get("policyVersion")
    return Summary.of(reward=score, success=outcome == reward_domain.SUCCESS, cost_usd=float(d.get("costUsd", 0.0)),
                      duration_ms=float(d.get("durationMs", 0.0)),
                      propensity=None if d.get("propensity") is None else float(d["propensity"]),
                      weight=float(d.get("weight") or 1.0), failure=str(d.get("errorCode") or outcome),
                      version=version if isinstance(version, str) and version else None)


def _count(value: Any) -> float:
    """A stored token count as a number (absent, or not a count: 0)."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0.0


def reward_doc(obs: StoredObservation, gens: Generations, expire_at: dt.datetime,
               only: Sequence[int] | None = None) -> tuple[dict[str, Any], Scored | None]:
    """The ``ops_rewards`` document of one observation and its summary per generation (None when it cannot
    be scored), under the reward config its component takes in each of ``only`` (default: the live ones).

    The document's ``score``, ``details`` and ``rewardVersion`` are the newest generation's; ``scores``
    keeps the score under each, which is what a later correction takes out of that generation's buckets.
    """
    d = obs.data
    component = str(d.get("component"))
    generations = list(only if only is not None else gens.live)
    newest = generations[-1]
    cfg = gens.config(component, newest)
    base: dict[str, Any] = {
        "expireAt": d.get("expireAt") or expire_at,  # a reward lives as long as its observation
        "obsId": obs.doc_id,
        "ts": d.get("ts"),
        "component": d.get("component"),
        "rewardVersion": cfg.version,
        "generation": newest,
        "scoredAt": ms(dt.datetime.now(dt.UTC)),
    }
    try:
        problem = stored_problem(d, base["scoredAt"])
        if problem is not None:
            raise ValueError(problem)
        metrics = d.get("metrics")
        scored: Scored = {}
        rewards: dict[int, reward_domain.Reward] = {}
        for g in generations:
            r = reward_domain.score(str(d.get("outcome")), float(d.get("durationMs", 0.0)),
                                    float(d.get("costUsd", 0.0)), gens.config(component, g),
                                    tokens_in=_count(d.get("tokensIn")), tokens_out=_count(d.get("tokensOut")),
                                    metrics=metrics if isinstance(metrics, dict) else None)
            summary = summary_of(d, r.score)
            if not summary.finite():
                raise ValueError("its statistics overflow (a number too large for a float sum)")
            scored[g], rewards[g] = summary, r
    except (ArithmeticError, TypeError, ValueError) as exc:
        # Observations written straight to Firestore bypass validation; record and skip them. Whatever an
        # observation holds, it is recorded as invalid rather than stopping the run (and every later one).
        return {**base, "invalid": True, "error": f"{type(exc).__name__}: {exc}"[:500], "score": None}, None
    r = rewards[newest]
    doc = {**base, "score": r.score, "details": r.details(), "outcome": str(d.get("outcome")),
           "scores": {gen_domain.score_field(g): rewards[g].score for g in generations}}
    if r.missing:
        doc["missingTerms"] = list(r.missing)
    for key in INPUTS:  # what it was scored from: a late feedback re-scores it from its reward alone
        if key in d:
            doc[key] = d[key]
    return doc, scored


def bucket_deltas(scored: list[tuple[StoredObservation, Scored]]) -> Deltas:
    """Per bucket (component, policy and rollout arm, each level, each generation) the sum of what it gains."""
    grouped: dict[tuple[str, str, int], list[Summary]] = defaultdict(list)
    for obs, per_generation in scored:
        ts = int(obs.data["ts"])
        keys = [str(obs.data["component"])]
        policy_version = str(obs.data.get("policyVersion") or "")
        if "@" in policy_version:  # the policy's own reward, across its versions: what a change did (learning)
            keys.append(paths.policy_key(policy_version.rsplit("@", 1)[0]))
        if policy_version and obs.data.get("arm"):
            # rollout arms are bucketed too, so a canary's arms compare over its lifetime cheaply
            keys.append(paths.arm_key(policy_version, str(obs.data["arm"])))
        for g, summary in per_generation.items():
            for key in keys:
                for level in windows.LEVELS:
                    grouped[(gen_domain.key(key, g), level, windows.bucket_start(ts, level))].append(summary)
    return {
        paths.bucket_id(comp, level, start): ({"component": comp, "level": level, "start": start}, total(parts))
        for (comp, level, start), parts in grouped.items()
    }


def correction(obs_id: str, obs: dict[str, Any], reward: dict[str, Any], gens: Generations,
               ) -> tuple[dict[str, Any], Deltas, Deltas] | None:
    """The reward of an already scored observation recomputed (its metrics changed), and the bucket deltas
    that take its old contribution out of each live generation's buckets it was added to and add the new
    one; None when there is nothing to correct (an invalid observation, or the same scores)."""
    old = reward.get("score")
    if reward.get("invalid") or isinstance(old, bool) or not isinstance(old, int | float):
        return None
    stored_scores = reward.get("scores")
    # a reward from before generations has one score, added to the unversioned (generation 0) buckets
    before = stored_scores if isinstance(stored_scores, dict) else {gen_domain.score_field(gen_domain.LEGACY): old}
    counted = [g for g in gens.live if isinstance(before.get(gen_domain.score_field(g)), int | float)]
    if not counted:
        return None
    stored = StoredObservation(obs_id, obs, dt.datetime.now(dt.UTC))
    expire = reward.get("expireAt") or obs.get("expireAt") or dt.datetime.now(dt.UTC)
    new_doc, new_scored = reward_doc(stored, gens, expire, only=counted)
    if new_scored is None or all(new_doc["scores"][gen_domain.score_field(g)] == before[gen_domain.score_field(g)]
                                 for g in counted):
        return None
    new_doc["corrections"] = int(reward.get("corrections") or 0) + 1
    minus = {g: summary_of(obs, float(before[gen_domain.score_field(g)])).negated() for g in counted}
    return new_doc, bucket_deltas([(stored, minus)]), bucket_deltas([(stored, new_scored)])
