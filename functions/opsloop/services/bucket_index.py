"""Which buckets hold data, for the stats refresh (``domain/presence``): building the record of the
components whose buckets were written before chunks recorded it, and dropping its old entries.

A deployment that had no bucket when this version first ran has a complete record from the start. One
upgraded from a version before builds it once: a run at least INDEX_AFTER_MS after this version's first
run (instances of the version before are gone by then: their function timeout is 9 minutes), after its
fold of every pending delta, lists with one query each the 5-minute buckets of the last 8 days
(``presence.backfill_floor``) of every component seen since then (within the run's budget; the next runs
go on), then marks the generation built. Until a component's record is complete, its stats are read by
queries, as before. The record of a generation a backfill writes is kept by the backfill's commits.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..domain import presence, windows
from ..domain.generations import Generations
from .ports import Store

INDEX_AFTER_MS = 15 * windows.MINUTE_MS
PRUNE_AT = 288  # a record's entries no window needs are dropped once there are a day's worth
BUILDERS = 8  # queries in flight while a record is built


def build(store: Store, index: dict[str, Any], gens: Generations, end: int, clock_ms: int,
          budget_left: Callable[[], bool]) -> int:
    """Build the record of the readers' generation where it is missing (see the module docstring);
    returns how many components were indexed by this call."""
    name = presence.field_name(gens.read)
    built: dict[str, Any] = index["built"] if isinstance(index.get("built"), dict) else {}
    since = index.get("since")
    if index.get("complete") is True or name in built or not isinstance(since, int):
        return 0
    if clock_ms < since + INDEX_AFTER_MS or not budget_left():
        return 0
    valid_from = presence.backfill_floor(end)  # what refreshes need, and a day for replays
    components = sorted(store.observations.active_components(valid_from))
    have = store.buckets.presence([gens.read_key(c) for c in components])
    todo = [c for c in components if gens.read_key(c) not in have]
    done = 0

    def index_one(comp: str) -> bool:
        if not budget_left():
            return False
        store.buckets.index_key(comp, gens.read, valid_from)
        return True

    with ThreadPoolExecutor(max_workers=BUILDERS, thread_name_prefix="opsloop-index") as pool:
        done = sum(pool.map(index_one, todo))
    if done == len(todo):
        store.buckets.mark_built(gens.read, valid_from)
    return done


def pruning(p: presence.Presence, end: int, read: int) -> presence.Pruning | None:
    """What to drop from the record of the readers' generation ``read``: its entries no window needs once
    there are enough of them, and the records of generations before ``read`` (their buckets are no longer
    read; left, every reward config change would grow the document)."""
    boundary = presence.backfill_floor(end)
    old = p.stale(boundary)
    old = old if len(old) >= PRUNE_AT else []
    dead = tuple(g for g in p.generations if g < read)
    if not old and not dead:
        return None
    return presence.Pruning(old, max(boundary, p.valid_from) if old else p.valid_from, dead)
