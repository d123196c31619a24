"""What recording late feedback reads and writes, per transaction (``store/feedback.py``), so the decision
itself (``services/feedback.plan``) is a pure function of what was read.

A scored observation's reward keeps the inputs it was scored from (``reward_docs.INPUTS``), so a feedback for
it reads one document (the reward), rewrites it corrected, and merges its metrics into the observation: three
operations, plus a share of one delta pair per transaction. Only an observation not scored yet (or scored
before rewards kept their inputs) is read itself; its feedback waits in ``ops_feedback`` for the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stats import Deltas

MAX_IDS = 200  # feedback ids a reward remembers (a retried one changes nothing)


def needs_observation(reward: dict[str, Any] | None) -> bool:
    """Whether the observation itself must be read: not scored yet, or its reward lacks the inputs."""
    return reward is None or (not reward.get("invalid") and "durationMs" not in reward)


@dataclass
class FeedbackRead:
    """What one group's transaction read."""

    generations: dict[str, Any] | None  # ops_runs/reward-generations
    rewards: dict[str, dict[str, Any]]  # observation id -> its reward (scored ones)
    observations: dict[str, dict[str, Any]]  # the observations read (see needs_observation)
    existing: set[str]  # feedback ids already waiting in ops_feedback


@dataclass
class FeedbackWrites:
    """What one group's transaction writes."""

    rewards: dict[str, dict[str, Any]] = field(default_factory=dict)  # rewritten whole
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # merged into observations
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # new ops_feedback documents
    # the old contributions, taken out of the buckets, and the new ones: each in parts that fit a delta document
    minus: list[Deltas] = field(default_factory=list)
    plus: list[Deltas] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    corrected: int = 0
