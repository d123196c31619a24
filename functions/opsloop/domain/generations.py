"""One reward version at a time: reward *generations*, and which one each reader reads.

A generation is one snapshot of the reward rules (``config/reward_config``: the default formula and its
component rules). Buckets are kept apart per generation (``key``), so stats, tuning and canaries never sum
rewards of two formulas. The state (``ops_runs/reward-generations``) says:

* ``read`` -- the generation every reader uses: its buckets hold the whole history;
* ``write`` -- the newest generation, equal to ``read`` unless a backfill is under way. While it is, the
  scorer adds every new observation to both (each under its own formula), and the backfill re-scores the
  observations ingested up to ``boundary`` (the scorer's cursor when ``write`` was adopted) into ``write``.
  When the backfill has reached the boundary (``caught_up``) and its bucket deltas are folded, ``read``
  becomes ``write`` in one commit: every reader switches at once, to complete buckets, and both arms of a
  canary are always compared under one generation;
* ``rules`` -- the formulas of ``read`` and ``write``, so the old one can still be scored after a change.

Generation 0 is the buckets written before generations existed (unversioned keys); a store that has scored
before is adopted with ``read = 0`` and a backfill of generation 1. A fresh store starts at 1 with nothing
to backfill. A change of the rules while a backfill runs abandons it (its buckets are never read) and starts
the next generation; a change back to the formula being read cancels it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ingest import Cursor, StoredObservation
from .reward import RewardConfig, RewardRules
from .stats import Summary

LEGACY = 0


def key(bucket_key: str, generation: int) -> str:
    """The bucket key (a component, or a rollout arm) of ``generation``'s buckets."""
    return bucket_key if generation == LEGACY else f"{bucket_key}#g{generation}"


def split_key(generation_key: str) -> tuple[str, int]:
    """The bucket key and generation of a key made by ``key`` (components and arms hold no ``#``)."""
    base, sep, number = generation_key.rpartition("#g")
    return (base, int(number)) if sep and number.isdigit() else (generation_key, LEGACY)


def score_field(generation: int) -> str:
    """Where a reward document keeps its score under ``generation`` (``scores.g<n>``)."""
    return f"g{generation}"


@dataclass(frozen=True)
class Generations:
    read: int = 1
    write: int = 1
    rules: dict[int, RewardRules] = field(default_factory=dict)
    boundary: Cursor | None = None  # the backfill re-scores up to here (inclusive), the scorer after it
    position: Cursor | None = None  # where the backfill got to (None: not started)
    scored: int = 0  # observations the backfill has re-scored
    caught_up: bool = False  # the backfill reached the boundary; readers switch once its deltas are folded
    started_at: int | None = None
    finished_at: int | None = None
    # the boundary is a time, not the scorer's cursor (scoring shards have a cursor each): the backfill
    # re-scores only what was scored before the change (a reward without this generation's score)
    check_rewards: bool = False
    # the highest generation ever started: a backfill abandoned when the config changed back left buckets
    # and reward scores under its number, so a later change must not start that number again
    highest: int = 0

    @property
    def newest(self) -> int:
        return max(self.read, self.write, self.highest)

    @property
    def backfilling(self) -> bool:
        return self.write != self.read

    @property
    def live(self) -> tuple[int, ...]:
        """The generations the scorer writes, read first."""
        return (self.read, self.write) if self.backfilling else (self.read,)

    def rules_of(self, generation: int) -> RewardRules:
        return self.rules.get(generation) or RewardRules()

    @property
    def read_rules(self) -> RewardRules:
        return self.rules_of(self.read)

    def read_key(self, bucket_key: str) -> str:
        return key(bucket_key, self.read)

    def config(self, component: str, generation: int | None = None) -> RewardConfig:
        return self.rules_of(self.read if generation is None else generation).for_component(component)

    def advanced(self, position: Cursor, scored: int, done: bool) -> Generations:
        """After a backfill chunk: moved to ``position``; ``done`` when it reached the boundary."""
        return dataclasses.replace(self, position=position, scored=self.scored + scored,
                                   caught_up=self.caught_up or done)

    def switched(self, now_ms: int) -> Generations:
        """Every reader on ``write`` (once the backfill caught up and its deltas are folded)."""
        return Generations(read=self.write, write=self.write, rules={self.write: self.rules_of(self.write)},
                           scored=self.scored, started_at=self.started_at, finished_at=now_ms,
                           highest=self.newest)

    def to_doc(self) -> dict[str, Any]:
        def cursor(c: Cursor | None) -> dict[str, Any] | None:
            return None if c is None else {"receivedAt": c.received_at, "docId": c.doc_id}

        return {"read": self.read, "write": self.write,
                "rules": {str(g): r.to_doc() for g, r in sorted(self.rules.items())},
                "versions": {str(g): r.versions() for g, r in sorted(self.rules.items())},
                "boundary": cursor(self.boundary), "position": cursor(self.position), "scored": self.scored,
                "caughtUp": self.caught_up, "startedAt": self.started_at, "finishedAt": self.finished_at,
                "checkRewards": self.check_rewards, "highest": self.newest}

    @classmethod
    def from_doc(cls, doc: dict[str, Any], parse_rules: Callable[[dict[str, Any]], RewardRules]) -> Generations:
        def cursor(d: Any) -> Cursor | None:
            return Cursor(d.get("receivedAt"), str(d.get("docId") or "")) if isinstance(d, dict) else None

        rules = {int(g): parse_rules(r) for g, r in (doc.get("rules") or {}).items()}
        return cls(read=int(doc.get("read", 1)), write=int(doc.get("write", doc.get("read", 1))), rules=rules,
                   boundary=cursor(doc.get("boundary")), position=cursor(doc.get("position")),
                   scored=int(doc.get("scored") or 0), caught_up=bool(doc.get("caughtUp")),
                   started_at=doc.get("startedAt"), finished_at=doc.get("finishedAt"),
                   check_rewards=bool(doc.get("checkRewards")),
                   highest=int(doc["highest"]) if isinstance(doc.get("highest"), int) else 0)


def before_or_at(obs: StoredObservation, boundary: Cursor | None) -> bool:
    """Whether ``obs`` lies at or before ``boundary`` in ingestion order (a backfill's boundary, or a
    scanner's final cursor)."""
    if boundary is None or obs.received_at is None or boundary.received_at is None:
        return False
    return bool(obs.received_at < boundary.received_at
                or (obs.received_at == boundary.received_at and obs.doc_id <= boundary.doc_id))


def same_formula(a: RewardRules, b: RewardRules) -> bool:
    return a.to_doc() == b.to_doc()


def adopt(current: Generations | None, rules: RewardRules, cursor: Cursor, now_ms: int,
          at_time: Cursor | None = None) -> Generations | None:
    """The state once ``rules`` (today's config) is adopted at the scorer's ``cursor``; None: unchanged.

    ``cursor`` must be read in the transaction that stores the result, so that every observation is
    either behind the boundary (the backfill's) or scored after it under the new generation (the scorer's).
    With scoring shards there is no one cursor: ``at_time`` (the adoption time, after any document id) is
    the boundary instead, and the backfill checks each reward for what it was scored under.
    """
    boundary = at_time or cursor
    check = at_time is not None
    if current is None:
        if cursor.received_at is None:  # nothing scored yet (shards start after the first adoption)
            return Generations(read=1, write=1, rules={1: rules}, started_at=now_ms, finished_at=now_ms)
        # buckets from before generations: readers stay on them until generation 1 is backfilled
        return Generations(read=LEGACY, write=1, rules={LEGACY: rules, 1: rules}, boundary=boundary,
                           started_at=now_ms, check_rewards=check)
    if same_formula(current.rules_of(current.write), rules):
        return None
    if current.backfilling and same_formula(current.read_rules, rules):
        return Generations(read=current.read, write=current.read, rules={current.read: current.read_rules},
                           started_at=now_ms, finished_at=now_ms,  # changed back: nothing to backfill
                           highest=current.newest)  # (the abandoned number is not started again)
    new = current.newest + 1
    return Generations(read=current.read, write=new, rules={current.read: current.read_rules, new: rules},
                       boundary=boundary, started_at=now_ms, check_rewards=check, highest=new)


@dataclass
class BackfillChunk:
    """One backfill commit: rewards re-scored under ``write``, their bucket deltas, and the state after it."""

    state: dict[str, Any]
    rewards: list[tuple[str, dict[str, Any]]]  # merged into ``ops_rewards`` (the new generation's score)
    deltas: dict[str, tuple[dict[str, Any], Summary]]
    scored: int
    done: bool
    delta_id: str  # names its bucket-delta document, so the backfill can fold it from memory


AFTER_ANY_ID = "\U0010ffff"  # with a time boundary: after every document id committed at that time

# A backfill chunk from (the state, the page, whether the page ended the backfill, the page's stored
# rewards when the state has check_rewards, else None); None declines it (a newer change superseded it).
Build = Callable[[dict[str, Any], list[StoredObservation], bool, dict[str, dict[str, Any]] | None],
                 "BackfillChunk | None"]
