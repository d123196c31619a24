"""Scoring shards: which scanner scores an observation, and how a change of their number is drained.

With ``config/scoring.shards`` K > 1, ``recordObservation`` stamps each observation with ``shard`` =
``"K-i"``, i = crc32(id) mod K. Each key has its own cursor and lease, so K workers score concurrently,
each exactly once within its key (the cursor is advanced in the chunk's transaction). With K = 1 nothing is
stamped: the one global scanner (the cursor every earlier version used) takes every observation that has
no ``shard`` and steps over those that do (another scanner's).

Changing K (drain-and-switch): the scorer adopts the new layout and keeps the old one *draining* until
``drainUntil`` = adoption time + the config cache's lifetime + the safety margin. Ingestion reads the config
through that cache, so no observation is stamped with the old layout after ``drainUntil``; the old keys are
scored up to it, then the layout is retired. Every observation carries exactly one key, scored by exactly
one cursor, whatever K was when it arrived; a layout that is adopted again picks its cursors up where
they stopped.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field

MAX_SHARDS = 64
GLOBAL: str | None = None  # the key of the unsharded scanner


def shard_of(doc_id: str, shards: int) -> str | None:
    """The key an observation with this id is stamped with under ``shards`` (None: unsharded)."""
    if shards <= 1:
        return None
    return f"{shards}-{zlib.crc32(doc_id.encode()) % shards}"


def keys(shards: int) -> list[str | None]:
    """Every key of a layout of ``shards``, in order."""
    return [GLOBAL] if shards <= 1 else [f"{shards}-{i}" for i in range(shards)]


def label(key: str | None) -> str:
    """The key as it appears in lease, cursor and task names."""
    return "global" if key is None else key


@dataclass(frozen=True)
class Layout:
    """The layout in use (``current`` shards, since ``since_ms``) and those still draining: shards ->
    the receivedAt (ms) up to which their keys may still get observations."""

    current: int = 1
    since_ms: int = 0
    draining: dict[int, int] = field(default_factory=dict)

    def adopt(self, wanted: int, now_ms: int, grace_ms: int) -> Layout:
        """The layout after the config asks for ``wanted`` shards at ``now_ms`` (itself when unchanged)."""
        if wanted == self.current:
            return self
        draining = {k: until for k, until in self.draining.items() if k != wanted}
        draining[self.current] = now_ms + grace_ms
        return Layout(wanted, now_ms, draining)

    def layouts(self) -> list[tuple[int, int | None]]:
        """Each layout with scanners: (shards, drain end in ms, None for the current one)."""
        return [(self.current, None), *sorted(self.draining.items())]

    def retire(self, shards: int) -> Layout:
        return Layout(self.current, self.since_ms, {k: v for k, v in self.draining.items() if k != shards})

    def to_doc(self) -> dict[str, object]:
        return {"current": self.current, "sinceMs": self.since_ms,
                "draining": {str(k): v for k, v in sorted(self.draining.items())}}

    @classmethod
    def from_doc(cls, doc: dict[str, object] | None) -> Layout:
        if not doc:
            return cls()
        raw = doc.get("draining")
        draining = {int(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        current, since = doc.get("current", 1), doc.get("sinceMs", 0)
        return cls(int(current) if isinstance(current, int) else 1, int(since) if isinstance(since, int) else 0,
                   draining)


@dataclass(frozen=True)
class Job:
    """One key to score in a run, up to ``upper`` (the run's, or the drain's end when sooner)."""

    shard: str | None
    upper: dt.datetime
    cap_ms: int | None  # the drain's end, when the key's layout is draining
