"""Late feedback (``recordFeedback``): quality that is known only after the observation was recorded.

Its metrics are merged into the observation at once, so a scorer that has not reached the observation
yet scores them like any other. One already scored is corrected in the same transaction: the reward
re-scored from the inputs it keeps, the old contribution taken out of the buckets and the new one added,
exactly once (``plan``). A retried feedback ``id`` changes nothing. Feedback for an observation the scorer
had read but not committed when it arrived is corrected by the next ``scoreObservations``
(``scoring.apply_feedback``).
"""

from __future__ import annotations

import datetime as dt
import functools
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..domain.errors import Conflict, InvalidArgument, NotFound
from ..domain.feedback import MAX_IDS, FeedbackRead, FeedbackWrites, needs_observation
from ..domain.ingest import SCORED_FIELDS
from ..domain.observation import InvalidBatch, parse_feedback
from ..domain.stats import Deltas, Summary, total
from . import generations, reward_docs
from .folding import split_deltas
from .ports import Store

E_EXPIRED = "E_LEARN_FEEDBACK_EXPIRED"


@dataclass(frozen=True)
class FeedbackResult:
    ids: list[str]
    created: list[str]
    duplicates: list[str]
    corrected: int = 0  # rewards (and their buckets) corrected at once: their observations were scored

    def to_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "created": len(self.created), "duplicates": self.duplicates}


def record_feedback(store: Store, payload: Any, now_ms: int | None = None) -> FeedbackResult:
    """Validate ``payload`` (one item or ``{"feedback": [...]}``) and store it all or nothing.

    Unknown observation: NotFound (``E_LEARN_NOT_FOUND``); an observation past its retention window (its
    reward and buckets may be gone): Conflict with ``E_LEARN_FEEDBACK_EXPIRED``. Nothing is written then.
    """
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    try:
        items = parse_feedback(payload)
    except InvalidBatch as exc:
        raise InvalidArgument(str(exc), {"errors": [e.model_dump() for e in exc.errors]}) from None
    docs = [(f.id or uuid.uuid4().hex, {"observationId": f.observationId, "metrics": dict(f.metrics)})
            for f in items]
    writes = store.feedback.record(docs, functools.partial(plan, now_ms=now_ms))
    duplicates = set(writes.duplicates)
    ids = [fid for fid, _ in docs]
    return FeedbackResult(ids, [i for i in ids if i not in duplicates], sorted(duplicates), writes.corrected)


def _check(obs_id: str, found: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
    if found is None:
        raise NotFound(f"unknown observation {obs_id!r}", {"field": "observationId", "observationId": obs_id})
    expire = found.get("expireAt")
    if isinstance(expire, dt.datetime) and expire <= now:
        raise Conflict(f"observation {obs_id!r} is past its retention window; feedback can no longer change its "
                       "reward", {"code": E_EXPIRED, "observationId": obs_id})
    return found


def _sum(parts: list[Deltas]) -> Deltas:
    grouped: dict[str, tuple[dict[str, Any], list[Summary]]] = {}
    for deltas in parts:
        for bid, (ident, summary) in deltas.items():
            grouped.setdefault(bid, (ident, []))[1].append(summary)
    return {bid: (ident, total(summaries)) for bid, (ident, summaries) in grouped.items()}


def plan(read: FeedbackRead, items: list[tuple[str, dict[str, Any]]], now_ms: int) -> FeedbackWrites:
    """What recording ``items`` writes, from what its transaction read (pure; raises for bad input).

    A scored observation's reward is re-scored from the inputs it keeps (or from the observation, for a
    reward written before it kept them) with the metrics merged, under each live reward generation it was
    counted in; its buckets get the difference (one pair of delta documents for the request). A retried
    feedback id (remembered on the reward, or waiting in ``ops_feedback``) changes nothing.
    """
    gens = generations.parse(read.generations)
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    out = FeedbackWrites()
    rewards = dict(read.rewards)  # as corrected so far: two items for one observation apply in order
    minus: list[Deltas] = []
    plus: list[Deltas] = []
    for fid, doc in items:
        obs_id, metrics = str(doc["observationId"]), dict(doc["metrics"])
        reward = rewards.get(obs_id)
        if reward is None:  # not scored yet: scored with the metrics, or corrected by the scorer (apply)
            obs = _check(obs_id, read.observations.get(obs_id), now)
            if fid in read.existing:
                out.duplicates.append(fid)
                continue
            out.pending.append((fid, {**doc, "component": obs.get("component")}))
            out.metrics.setdefault(obs_id, {}).update(metrics)
            continue
        _check(obs_id, reward, now)
        if fid in (reward.get("feedbackIds") or []):
            out.duplicates.append(fid)
            continue
        source = reward if not needs_observation(reward) else read.observations.get(obs_id, reward)
        inputs = {k: v for k, v in source.items() if k in SCORED_FIELDS}
        inputs["metrics"] = {**(source.get("metrics") or {}), **metrics}
        fix = reward_docs.correction(obs_id, inputs, reward, gens)
        if fix is None:
            new = {**reward, "metrics": inputs["metrics"]}
        else:
            new, taken, added = fix
            minus.append(taken)
            plus.append(added)
            out.corrected += 1
        new["feedbackIds"] = [*(reward.get("feedbackIds") or []), fid][-MAX_IDS:]
        rewards[obs_id] = out.rewards[obs_id] = new
        out.metrics.setdefault(obs_id, {}).update(metrics)
    out.minus, out.plus = split_deltas(_sum(minus)), split_deltas(_sum(plus))
    return out
