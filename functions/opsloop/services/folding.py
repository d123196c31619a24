"""Folding bucket deltas: every pending one (``fold_all``), or those a run committed itself, from memory
(``OwnDeltas``), exactly once either way (see ``store/buckets.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..domain.stats import Deltas, Summary
from .ports import Store

Checkpoint = Callable[[str], None]
FOLD_EVERY = 25  # chunks between folds, so pending deltas stay few
FOLD_MAX_WRITES = 480  # ... and sooner when their buckets plus deletes would make too big a transaction
MAX_DELTA_BYTES = 600_000  # a delta document must stay well under Firestore's 1 MiB
MAX_COMMIT_WRITES = 500  # writes per chunk commit: Firestore once limited commits to 500 (now only by size)




def _entry_bytes(s: Summary) -> int:
    """An upper bound of one bucket entry's JSON in a delta payload before compression: base64 sketches
    (4/3 of their bytes), labels, and ~1,100 bytes for its id, identity and 19 numbers written in full."""

    def sketch_bytes(bins: list[float]) -> int:
        return 4 * min(8 * len(bins), 12 * sum(1 for c in bins if c)) // 3 + 4

    def labels_bytes(labels: tuple[tuple[str, float], ...]) -> int:
        return sum(6 * len(k.encode()) + 40 for k, _ in labels)  # JSON may escape a byte as \u00XX

    return (sketch_bytes(s.latency._store.bins) + sketch_bytes(s.reward._store.bins) + 1100
            + labels_bytes(s.failures) + labels_bytes(s.versions))


def delta_fits(deltas: Deltas) -> bool:
    """Whether one delta document holds these bucket deltas (payload under MAX_DELTA_BYTES) and one fold
    of it alone stays within FOLD_MAX_WRITES (a bucket each, and its delete)."""
    if len(deltas) + 1 > FOLD_MAX_WRITES:
        return False
    return sum(_entry_bytes(s) for _, s in deltas.values()) <= MAX_DELTA_BYTES


def split_deltas(deltas: Deltas) -> list[Deltas]:
    """``deltas`` in as few parts as needed for each to fit one delta document and one fold."""
    parts: list[Deltas] = []
    part: Deltas = {}
    size = 0
    for bid, (ident, summary) in deltas.items():
        entry = _entry_bytes(summary)
        if part and (len(part) + 2 > FOLD_MAX_WRITES or size + entry > MAX_DELTA_BYTES):
            parts.append(part)
            part, size = {}, 0
        part[bid] = (ident, summary)
        size += entry
    return [*parts, part] if part else parts


@dataclass
class OwnDeltas:
    """The deltas this run committed and has not folded yet, kept per bucket in commit order.

    Folding them from memory saves reading back and decoding every delta (most of a fold's cost). The
    parts are kept, not pre-summed: a bucket is always ((bucket + d1) + d2) + ..., so its floating-point
    sums do not depend on how deltas were grouped into folds (a crashed-and-rerun run equals a clean one).
    """

    ids: list[str] = field(default_factory=list)
    parts: dict[str, tuple[dict[str, Any], list[Summary]]] = field(default_factory=dict)

    def add(self, delta_id: str, deltas: dict[str, tuple[dict[str, Any], Summary]]) -> None:
        self.ids.append(delta_id)
        for bid, (ident, summary) in deltas.items():
            self.parts.setdefault(bid, (ident, []))[1].append(summary)

    def writes(self, more: dict[str, Any] | None = None) -> int:
        """Writes of folding them (a bucket each, a delete each), with ``more`` deltas added."""
        extra = 0 if more is None else 1 + sum(1 for bid in more if bid not in self.parts)
        return len(self.parts) + len(self.ids) + extra

    def keep(self, store: Store, delta_id: str, deltas: dict[str, tuple[dict[str, Any], Summary]],
             checkpoint: Checkpoint, fold_now: bool = True) -> None:
        """Hold a just-committed delta (folding what is held first when both would make too big a
        transaction), then fold when due (unless ``fold_now`` is False)."""
        if deltas:
            if self.writes(deltas) > FOLD_MAX_WRITES:
                self.fold(store, checkpoint)  # fold what is held first, so a fold stays one transaction
            self.add(delta_id, deltas)
        if fold_now:
            self.fold_if_due(store, checkpoint)

    def fold_if_due(self, store: Store, checkpoint: Checkpoint) -> None:
        if len(self.ids) >= FOLD_EVERY or self.writes() >= FOLD_MAX_WRITES:
            self.fold(store, checkpoint)

    def fold(self, store: Store, checkpoint: Checkpoint) -> None:
        """Fold them (from memory when none was folded elsewhere, else by reading what is left)."""
        if not self.ids:
            return
        if self.writes() <= FOLD_MAX_WRITES and store.buckets.fold_own(self.ids, self.parts):
            checkpoint("after-fold")
        else:
            fold_all(store, checkpoint)
        self.ids, self.parts = [], {}


def fold_all(store: Store, checkpoint: Checkpoint | None = None) -> int:
    """Fold every pending delta into the buckets; returns how many were folded."""
    folded = 0
    while True:
        n, _ = store.buckets.fold_pending()
        if n == 0:
            return folded
        folded += n
        if checkpoint is not None:
            checkpoint("after-fold")
