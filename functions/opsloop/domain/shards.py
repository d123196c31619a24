"""Scoring shards: which scanner scores an observation, and how a change of their number is drained.

``recordObservation`` stamps every observation with ``shard`` = ``"K-i"``, i = crc32(id) mod K, where K is
``config/scoring.shards`` (``"1-0"`` with one shard). Each key has its own cursor and lease, so K workers
score concurrently, each exactly once within its key (the cursor is advanced in the chunk's transaction).
Every query over the ingestion time (``receivedAt``) or the event time (``ts``) of observations names a
key, so Firestore writes each observation into K index ranges rather than one monotonic range: the
single-field indexes on those fields are exempted (``firestore.indexes.json``) and ingestion scales with K.

Changing K (drain-and-switch): the scorer adopts the new layout and keeps the old one *draining* until
``drainUntil`` = adoption time + the config cache's lifetime + the safety margin. Ingestion reads the config
through that cache, so no observation is stamped with the old layout after ``drainUntil``; the old keys are
scored up to it, then the layout is retired. Every observation carries exactly one key, scored by exactly
one cursor, whatever K was when it arrived; a layout that is adopted again picks its cursors up where
they stopped.

Versions before this one stamped nothing with one shard: their observations form the *legacy* layout (0),
scored by the global scanner (the cursor those versions used), which drains like any other layout. Once it
is retired, the unstamped observations left (all scored) are stamped ``"0-0"``, a key no scanner reads, so
that the readers of past observations (exports, replays, the reward backfill) find them by key too.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field

MAX_SHARDS = 64
LEGACY = 0  # the layout of observations stamped with nothing (versions before every observation had a key)
GLOBAL: str | None = None  # the key of its scanner
SINGLE = "1-0"  # the key of every observation with one shard
MIGRATED = "0-0"  # what unstamped observations are stamped with once the legacy layout is retired (no scanner)


def shard_of(doc_id: str, shards: int) -> str:
    """The key an observation with this id is stamped with under ``shards`` (at least 1)."""
    shards = max(1, shards)
    return f"{shards}-{zlib.crc32(doc_id.encode()) % shards}"


def keys(shards: int) -> list[str | None]:
    """Every key of a layout of ``shards``, in order (the legacy layout's is the global scanner's)."""
    return [GLOBAL] if shards == LEGACY else [f"{shards}-{i}" for i in range(shards)]


def layout_of(key: object) -> int | None:
    """The number of shards of the layout a stored key belongs to (None: not a key)."""
    if not isinstance(key, str) or "-" not in key:
        return None
    head = key.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def label(key: str | None) -> str:
    """The key as it appears in lease, cursor and task names."""
    return "global" if key is None else key


@dataclass(frozen=True)
class Layout:
    """The layout in use (``current`` shards, since ``since_ms``), those still draining (shards -> the
    receivedAt in ms up to which their keys may still get observations), every layout ever adopted
    (``used``), and the migration of the legacy layout's observations to ``MIGRATED`` (``legacy``:
    "none" when there were none, "draining", "stamping" from document id ``stamped_after``, or "done")."""

    current: int = LEGACY
    since_ms: int = 0
    draining: dict[int, int] = field(default_factory=dict)
    used: frozenset[int] = frozenset()
    legacy: str = "draining"
    stamped_after: str | None = None

    def adopt(self, wanted: int, now_ms: int, grace_ms: int) -> Layout:
        """The layout after the config asks for ``wanted`` shards at ``now_ms`` (itself when unchanged)."""
        if wanted == self.current:
            return self
        draining = {k: until for k, until in self.draining.items() if k != wanted}
        draining[self.current] = now_ms + grace_ms
        return Layout(wanted, now_ms, draining, self.used | {wanted}, self.legacy, self.stamped_after)

    def layouts(self) -> list[tuple[int, int | None]]:
        """Each layout with scanners: (shards, drain end in ms, None for the current one)."""
        return [(self.current, None), *sorted(self.draining.items())]

    def retire(self, shards: int) -> Layout:
        legacy = "stamping" if shards == LEGACY and self.legacy == "draining" else self.legacy
        return Layout(self.current, self.since_ms, {k: v for k, v in self.draining.items() if k != shards},
                      self.used, legacy, self.stamped_after)

    def stamping(self, after: str | None, done: bool, seen: set[int]) -> Layout:
        """The legacy migration moved past document id ``after`` (``done``: it reached the end), seeing
        observations of the layouts ``seen``."""
        return Layout(self.current, self.since_ms, self.draining, self.used | (seen - {LEGACY}),
                      "done" if done else "stamping", after)

    @property
    def multi(self) -> bool:
        """More than one scanner: a single cursor no longer orders everything scored (see generations)."""
        return self.current > 1 or bool(self.draining)

    def stored_keys(self) -> list[str] | None:
        """Every key an observation can carry: the readers of past observations query each. None while
        unstamped observations remain (the legacy layout not yet migrated): they read unkeyed."""
        if self.legacy not in ("none", "done"):
            return None
        out = [MIGRATED] if self.legacy == "done" else []
        for shards in sorted(self.used | {self.current} - {LEGACY}):
            out += [str(k) for k in keys(shards)]
        return out

    def to_doc(self) -> dict[str, object]:
        return {"v": 2, "current": self.current, "sinceMs": self.since_ms,
                "draining": {str(k): v for k, v in sorted(self.draining.items())},
                "used": sorted(self.used), "legacy": self.legacy, "stampedAfter": self.stamped_after}

    @classmethod
    def from_doc(cls, doc: dict[str, object] | None) -> Layout:
        if not doc:
            return cls()
        raw = doc.get("draining")
        draining = {int(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        current, since = doc.get("current", LEGACY), doc.get("sinceMs", 0)
        current = int(current) if isinstance(current, int) else LEGACY
        if doc.get("v") != 2:  # written before every observation had a key: its one shard was the legacy layout
            current = LEGACY if current == 1 else current
            draining = {(LEGACY if k == 1 else k): v for k, v in draining.items()}
            # the keys of layouts it retired are not known: the legacy migration collects them as it stamps
            return cls(current, int(since) if isinstance(since, int) else 0, draining,
                       frozenset(k for k in (current, *draining) if k != LEGACY),
                       "draining" if LEGACY in (current, *draining) else "stamping")
        used = doc.get("used")
        legacy = doc.get("legacy")
        after = doc.get("stampedAfter")
        return cls(current, int(since) if isinstance(since, int) else 0, draining,
                   frozenset(int(k) for k in used if isinstance(k, int)) if isinstance(used, list) else frozenset(),
                   legacy if legacy in ("none", "draining", "stamping", "done") else "draining",
                   after if isinstance(after, str) else None)


@dataclass(frozen=True)
class StampPage:
    """One page of the legacy stamping pass (document id order)."""

    last: str | None  # the last id read: the next page starts after it
    stamped: int  # unkeyed observations stamped
    seen: frozenset[int]  # the layouts of the keyed ones read
    done: bool  # the end of the collection
    late: int = 0  # unkeyed ones after the legacy cursor: ingested after its drain, never scored


@dataclass(frozen=True)
class Job:
    """One key to score in a run, up to ``upper`` (the run's, or the drain's end when sooner)."""

    shard: str | None
    upper: dt.datetime
    cap_ms: int | None  # the drain's end, when the key's layout is draining
