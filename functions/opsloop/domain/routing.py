"""Deterministic traffic splitting: the same request id lands on the same arm, in every process.

A request's bucket is the first 8 bytes of SHA-256(``salt:request_id``) read as an integer and scaled to
[0, 1). It does not depend on the process, the Python hash seed or the machine, so any component (in any
language) that hashes the same way agrees. The salt is the rollout id, so a new rollout reshuffles who
sees the challenger.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

ArmName = Literal["champion", "challenger"]
_SCALE = float(2**64)

# Named traffic modes for a canary (challenger share of live traffic).
SPLIT_PRESETS: dict[str, float] = {"shadow": 0.0, "canary5": 0.05, "canary10": 0.10, "canary20": 0.20, "ab": 0.50}
MAX_SPLIT = 0.5


@dataclass(frozen=True)
class ArmChoice:
    """``arm`` is None when no canary runs: such traffic belongs to no experiment and is not compared."""

    arm: ArmName | None
    version: str
    propensity: float  # probability that this request gets this arm


def unit_hash(salt: str, request_id: str) -> float:
    """A uniform number in [0, 1) determined by ``salt`` and ``request_id`` alone."""
    digest = hashlib.sha256(f"{salt}:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def validate_split(split: float) -> float:
    if isinstance(split, bool) or not isinstance(split, int | float) or not math.isfinite(split):
        raise ValueError(f"split must be a number in (0, {MAX_SPLIT}], got {split!r}")
    if not 0.0 < float(split) <= MAX_SPLIT:
        raise ValueError(f"split must be in (0, {MAX_SPLIT}], got {split!r}")
    return float(split)


def assign(
    request_id: str, salt: str, champion: str, challenger: str | None, split: float
) -> ArmChoice:
    """The arm for ``request_id``: the challenger for a ``split`` share of ids, else the champion."""
    if not request_id:
        raise ValueError("request_id must be a non-empty string")
    if challenger is None or split <= 0.0:
        return ArmChoice(None, champion, 1.0)
    if unit_hash(salt, request_id) < split:
        return ArmChoice("challenger", challenger, split)
    return ArmChoice("champion", champion, 1.0 - split)


def pick_weighted(request_id: str, salt: str, weights: dict[str, float]) -> tuple[str, float]:
    """Deterministically pick a key of ``weights`` in proportion to its weight; returns (key, propensity)."""
    total = math.fsum(weights[k] for k in sorted(weights) if weights[k] > 0)
    if total <= 0:
        raise ValueError(f"weights must have a positive total, got {weights!r}")
    u = unit_hash(salt, request_id) * total
    acc = 0.0
    chosen = None
    for key in sorted(weights):
        w = weights[key]
        if w <= 0:
            continue
        chosen = key
        acc += w
        if u < acc:
            break
    assert chosen is not None
    return chosen, weights[chosen] / total


def choose_model(
    request_id: str,
    salt: str,
    weights: Mapping[str, float],
    *,
    attempt: int = 0,
    tried: Collection[str] = (),
    cooling: Mapping[str, float] | None = None,
    costs: Mapping[str, float] | None = None,
    max_cost: float | None = None,
) -> tuple[str, float] | None:
    """The model for try ``attempt`` of ``request_id`` and the probability it had, or None when no model
    is left to try.

    The candidates are the models of ``weights`` with a positive weight not ``tried`` yet. Cooling models
    are skipped while another candidate is ready; when all are cooling, the one whose cooldown ends first
    is used (a request never fails for cooldown alone). Of the ready ones, models whose expected cost
    (``costs``) exceeds ``max_cost`` are left out unless nothing else is left. The pick among the rest is
    ``pick_weighted`` keyed by the request id (and the try), so the chain of a request is the same in every
    process that sees the same cooldowns and costs, and the probability returned is the one it really had.
    """
    candidates = {m: float(w) for m, w in weights.items() if w > 0 and m not in tried}
    if not candidates:
        return None
    cooling = cooling or {}
    ready = {m: w for m, w in candidates.items() if m not in cooling}
    if not ready:
        return min(candidates, key=lambda m: (cooling[m], m)), 1.0
    costs = costs or {}
    affordable = {m: w for m, w in ready.items()
                  if max_cost is None or costs.get(m) is None or costs[m] <= max_cost}
    key = request_id if attempt == 0 else f"{request_id}#{attempt}"
    return pick_weighted(key, salt, affordable or ready)
