"""Which buckets of a component hold data, known without a query.

Every chunk commit adds the 5-minute starts its deltas touch to its component's record
(``ops_components/<c>.p.g<n>``, an array union: no read); the hour and day buckets holding data follow
from them, since each observation is added to one bucket of every level. With the record, a stats refresh
gets exactly the buckets a window needs by id, in one batch per run, instead of a query per segment
(``services/scoring.window_summaries``). A record is complete from ``valid_from`` on: buckets starting
earlier may hold data it does not list (older versions wrote them, or its old entries were dropped).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .generations import score_field, split_key
from .windows import LEVELS, WINDOWS, Segment, bucket_start

FIVE = LEVELS["5m"]

Bucket = tuple[str, int]  # (level, start)


@dataclass(frozen=True)
class Presence:
    fives: tuple[int, ...]  # the 5-minute starts holding data, sorted
    valid_from: int  # complete for buckets starting at or after this
    generations: tuple[int, ...] = ()  # the generations the component's document holds a record of
    levels: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", {name: sorted({t - t % size for t in self.fives})
                                            for name, size in LEVELS.items()})

    @classmethod
    def of(cls, starts: object, valid_from: int, generations: tuple[int, ...] = ()) -> Presence:
        """From a stored array (entries that are not integers are ignored)."""
        items = starts if isinstance(starts, list) else []
        return cls(tuple(sorted({int(t) for t in items if isinstance(t, int) and not isinstance(t, bool)})),
                   valid_from, generations)

    def within(self, level: str, start: int, end: int) -> list[int]:
        """Starts of the ``level`` buckets holding data that start in ``[start, end)``."""
        xs = self.levels[level]
        return xs[bisect_left(xs, start):bisect_left(xs, end)]

    def first(self, start: int, end: int) -> int | None:
        found = self.within("5m", start, end)
        return found[0] if found else None

    def holds(self, ts: int) -> bool:
        """Whether the record lists the 5-minute bucket of ``ts``, or need not (it starts before the record
        is complete)."""
        start = ts - ts % FIVE
        i = bisect_left(self.fives, start)
        return start < self.valid_from or (i < len(self.fives) and self.fives[i] == start)

    def stale(self, before: int) -> list[int]:
        """The recorded 5-minute starts before ``before`` (no window from then on needs them)."""
        return list(self.fives[:bisect_left(self.fives, before)])


def held(p: Presence, segments: list[Segment]) -> list[Bucket]:
    """The buckets holding data in ``segments``, in segment order, oldest first within each."""
    return [(seg.level, t) for seg in segments for t in p.within(seg.level, seg.start, seg.end)]


def next_change(first: Callable[[int, int], int | None], end: int, first_hour_point: int | None) -> int | None:
    """When the window stats next change without new data: a window's oldest 5-minute bucket holding data
    leaves it (at its start + 5 min + the window's length), or the first one starting at or after ``end``
    enters (at its start + 5 min). ``first(start, end)``: the oldest 5-minute start holding data in
    ``[start, end)``, from a record (``Presence.first``) or a query."""
    times: list[int] = []
    if first_hour_point is not None:  # the 1h window's chart points are its 5-minute buckets
        times.append(first_hour_point + FIVE + WINDOWS["1h"])
    week = first(end - WINDOWS["7d"], end)
    if week is not None:
        times.append(week + FIVE + WINDOWS["7d"])
        day = week if week >= end - WINDOWS["24h"] else first(end - WINDOWS["24h"], end)
        if day is not None:
            times.append(day + FIVE + WINDOWS["24h"])
    ahead = first(end, end + 10 * 365 * LEVELS["1d"])
    if ahead is not None:
        times.append(ahead + FIVE)
    return min(times) if times else None


def touched(deltas: Mapping[str, tuple[Mapping[str, Any], Any]], components: Collection[str],
            floor: int | None = None) -> dict[str, dict[str, list[int]]]:
    """Per component of ``components``, per generation (``g<n>``), the 5-minute starts that bucket deltas
    add to (at or after ``floor``, when given): what a commit of them records. Other keys (a policy's, a
    rollout arm's) are left out; a component whose starts all lie before ``floor`` maps to empty lists."""
    out: dict[str, dict[str, set[int]]] = {}
    for ident, _ in deltas.values():
        if ident.get("level") != "5m":
            continue
        comp, generation = split_key(str(ident.get("component")))
        if comp in components:
            starts = out.setdefault(comp, {}).setdefault(field_name(generation), set())
            if floor is None or int(ident["start"]) >= floor:
                starts.add(int(ident["start"]))
    return {comp: {g: sorted(starts) for g, starts in per.items()} for comp, per in out.items()}


def needed_from(end: int) -> int:
    """The oldest bucket start a refresh for windows ending at ``end`` reads: the 7-day chart's first day."""
    return bucket_start(end - max(WINDOWS.values()), "1d")


def backfill_floor(now: int) -> int:
    """The oldest start a backfill records: what a refresh from now on reads, and a day for replays."""
    return needed_from(now) - LEVELS["1d"]


field_name = score_field  # a record's field per generation: "g<n>", as a reward's scores are named


def generation_of(name: str) -> int | None:
    """The generation a record's field names (``g<n>``), None for anything else."""
    return int(name[1:]) if name[:1] == "g" and name[1:].isdigit() else None


def trusted(index: Mapping[str, Any], doc: Mapping[str, Any], generation: int) -> Presence | None:
    """A component's record of ``generation`` from its document, when it can be trusted (else None, and
    its buckets are queried). ``index`` is ``ops_runs/bucket-index``: ``complete`` (a new deployment) or
    ``built.g<n>`` (a build went over every component) say from when records are whole; a component's own
    ``pi.g<n>`` (its build, a backfill's floor, or dropped entries) says it for its record. A writer that
    does not record (an older CLI or instance) is caught at the component's newest bucket (``lastTs``)."""
    recorded = doc["p"] if isinstance(doc.get("p"), dict) else {}
    flags = doc["pi"] if isinstance(doc.get("pi"), dict) else {}
    built = index["built"] if isinstance(index.get("built"), dict) else {}
    name = field_name(generation)
    valid_from = flags.get(name)
    if not isinstance(valid_from, int):
        valid_from = 0 if index.get("complete") is True else built.get(name)
    if not isinstance(valid_from, int) or isinstance(valid_from, bool):
        return None
    held = tuple(sorted({g for g in map(generation_of, [*recorded, *flags]) if g is not None}))
    record = Presence.of(recorded.get(name), valid_from, held)
    newest = doc.get("lastTs")
    return None if isinstance(newest, int) and not record.holds(newest) else record


@dataclass(frozen=True)
class Pruning:
    """What to drop from one key's record: 5-minute starts no window needs (its record then complete from
    ``valid_from``), and the records of generations no reader or writer uses any more."""

    starts: list[int]
    valid_from: int
    dead: tuple[int, ...] = ()
