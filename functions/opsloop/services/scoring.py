"""Scoring every not-yet-scored observation and refreshing the rolling stats (``scoreObservations``).

Exactly-once, by construction rather than by luck:

* Each shard key's observations (``domain/shards``; one key, ``"1-0"``, by default) are taken in ingestion
  order, ``(receivedAt, id)``, where ``receivedAt`` is the server's commit timestamp. Only observations
  committed at least ``safetyMarginMs`` before the run's clock are taken, so nothing can still commit
  behind the cursor (late *event* times are fine: their ingestion is still new).
* One transaction per chunk re-reads the cursor, writes the chunk's rewards, writes the chunk's
  sufficient statistics as one *delta* document and advances the cursor. A run that finds the cursor
  moved (a concurrent or retried run got there first) discards its chunk and reads again; a crash leaves
  either the whole chunk or none of it.
* Deltas are folded into the 5-minute/hour/day buckets in transactions that delete what they add, so
  each is counted once, whoever folds it. Runs fold every FOLD_EVERY chunks, before computing stats, and
  at start (what a crashed run left). This keeps a run's Firestore cost near one read and one write per
  observation: bucket documents are written once per fold, not once per chunk. A run folds its own
  deltas from the parts it kept in memory, checking in the fold's transaction that they are all still
  pending; if any is not, the rest are read back and folded like anyone else's.
* A lease keeps concurrent runs from fighting over the cursor; correctness does not depend on it.
* Stats documents are recomputed from buckets for windows ending at the schedule time, so a retry or a
  replay of the same schedule time computes the same stats from the same data.
* Metrics (``telemetry.scoring_run``) come from what the run already holds: the rewards of its chunks, the
  first observation it read (the scoring lag) and, only when the run stopped at its budget, one count
  aggregation of what is left (the backlog; a drained backlog is 0 without a query).
* Buckets are kept per reward generation (``services/generations``): each run first adopts
  ``config/reward_config``; while a changed formula is backfilled, chunks are scored under both the
  generation the readers use and the new one, and what is left of the run's budget goes to the backfill.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import telemetry
from ..domain import presence, windows
from ..domain import shards as shard_domain
from ..domain.config import ScoringSettings
from ..domain.generations import Generations
from ..domain.ingest import Cursor, StoredObservation
from ..domain.presence import Presence
from ..domain.stats import Summary, total, window_stats
from ..domain.windows import ms
from ..store import paths
from . import alerts, bucket_index, generations, reward_docs, skill_cards
from . import config as config_service
from . import shards as shard_service
from .folding import MAX_COMMIT_WRITES, Checkpoint, OwnDeltas, delta_fits, fold_all
from .ports import Store

__all__ = ["ScoringSettings", "fold_all", "score_observations"]

log = logging.getLogger("opsloop.scoring")

STATS_READERS = 8  # bucket queries in flight while stats are refreshed
READ_CHUNKS = 5  # a scanner reads its queue this many chunks at a time, the next page while one is scored


@dataclass
class ScoreRunResult:
    run_id: str
    schedule_ms: int
    lease_acquired: bool
    scored: int = 0
    invalid: int = 0
    chunks: int = 0
    lost_races: int = 0
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats_written: int = 0
    stats_full: bool = True  # the stats of every component were refreshed, not only changed and due ones
    cards_written: int = 0
    cards_error: str | None = None
    budget_exhausted: bool = False  # the run stopped taking chunks at config/scoring.runBudgetS
    feedback: dict[str, int] = field(default_factory=dict)  # late feedback: applied / waiting / ...
    backfill: int = 0  # observations re-scored under a new reward config (see services/generations)
    generation: int | None = None  # the reward generation the stats were computed from
    config_errors: list[str] = field(default_factory=list)
    reward_sums: dict[str, tuple[int, float]] = field(default_factory=dict)  # per component: n scored, their sum
    oldest_unscored_ms: int | None = None  # receivedAt of the first observation the run read
    backlog: int | None = None  # left unscored at the end (before the safety margin); None: not known

    shards: dict[str, dict[str, Any]] = field(default_factory=dict)  # per scanner key: what it did
    dispatched: list[str] = field(default_factory=list)  # shard keys handed to task workers
    legacy_stamped: int = 0  # unstamped observations of versions before shards, stamped "0-0" (once)
    indexed: int = 0  # components whose record of the buckets holding data this run built (bucket_index)

    def add(self, other: ScoreRunResult) -> None:
        """Count in what a concurrent scanner (one shard) did."""
        self.scored += other.scored
        self.invalid += other.invalid
        self.chunks += other.chunks
        self.lost_races += other.lost_races
        self.budget_exhausted = self.budget_exhausted or other.budget_exhausted
        _add_sums(self.reward_sums, other.reward_sums)
        if other.oldest_unscored_ms is not None:
            self.oldest_unscored_ms = min(other.oldest_unscored_ms, self.oldest_unscored_ms or other.oldest_unscored_ms)

    def summary(self) -> dict[str, Any]:
        """What one scanner did, as ``shards`` reports it."""
        return {"scored": self.scored, "chunks": self.chunks, "budgetExhausted": self.budget_exhausted,
                "backlog": self.backlog}

    def reward_means(self) -> dict[str, float]:
        """Per component, the mean reward of the observations this run scored."""
        return {comp: total / n for comp, (n, total) in self.reward_sums.items() if n}

    def lag_s(self) -> float:
        """The schedule time minus the oldest unscored observation's receivedAt (0 when none waited)."""
        if self.oldest_unscored_ms is None:
            return 0.0
        return max(0.0, (self.schedule_ms - self.oldest_unscored_ms) / 1000)


def _add_sums(into: dict[str, tuple[int, float]], sums: dict[str, tuple[int, float]]) -> None:
    """Add per-component (n, sum of scores) pairs into ``into``."""
    for comp, (n, total_score) in sums.items():
        had_n, had_total = into.get(comp, (0, 0.0))
        into[comp] = (had_n + n, had_total + total_score)


def apply_feedback(store: Store, gens: Generations, limit: int = 500) -> dict[str, int]:
    """Apply pending feedback to the observations already scored; returns how many ended each way."""
    counts: dict[str, int] = {}
    for feedback_id, doc in store.feedback.pending(limit):
        obs_id = str(doc.get("observationId"))
        try:
            outcome = store.feedback.apply(feedback_id, functools.partial(reward_docs.correction, obs_id, gens=gens))
        except Exception as exc:  # one bad item is recorded and skipped
            alerts.item_failed(store, "scoreObservations.feedback", f"feedback {feedback_id}", exc)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@dataclass
class _Chunk:
    """One commit's worth: rewards, bucket deltas and the cursor after its last observation."""

    page: list[StoredObservation]
    rewards: list[tuple[str, dict[str, Any]]]
    deltas: dict[str, tuple[dict[str, Any], Summary]]
    cursor: Cursor
    scored: int
    live: tuple[int, ...]  # the reward generations it was scored under
    reward_sums: dict[str, tuple[int, float]]  # per component: n scored, sum of their scores (newest generation)

    skipped: int = 0  # another scanner's (a shard's, seen by the global scanner): stepped over

    @classmethod
    def build(cls, page: list[StoredObservation], gens: Generations, days: int, shard: str | None = None) -> _Chunk:
        expire_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        rewards: list[tuple[str, dict[str, Any]]] = []
        scored: list[tuple[StoredObservation, reward_docs.Scored]] = []
        components: dict[str, int] = {}
        sums: dict[str, tuple[int, float]] = {}
        skipped = 0
        for obs in page:
            if obs.data.get("shard") != shard:
                skipped += 1
                continue
            doc, per_generation = reward_docs.reward_doc(obs, gens, expire_at)
            rewards.append((obs.doc_id, doc))
            if per_generation is None:
                continue
            scored.append((obs, per_generation))
            comp, ts = str(obs.data["component"]), int(obs.data["ts"])
            components[comp] = max(ts, components.get(comp, 0))
            n, total_score = sums.get(comp, (0, 0.0))
            sums[comp] = (n + 1, total_score + float(doc["score"]))
        last = page[-1]
        return cls(page, rewards, reward_docs.bucket_deltas(scored),
                   Cursor(last.received_at, last.doc_id, components), len(scored), gens.live, sums, skipped)

    def fits(self) -> bool:
        """Whether its delta fits one document and one fold (``folding.delta_fits``), and its commit the
        write limit."""
        return delta_fits(self.deltas) and self.within_write_limits()

    def within_write_limits(self) -> bool:
        """Whether its commit, and a fold of its delta alone, each stay within Firestore's write limit.

        The commit writes its rewards, the delta, the cursor and each component's newest time; a fold writes
        each bucket the delta touches and deletes the delta. A chunk of many distinct components could break
        either, so it is halved like an oversized payload.
        """
        commit = len(self.rewards) + 2 + len(self.cursor.components or {})
        return commit <= MAX_COMMIT_WRITES


class _ReadAhead:
    """A scanner's queue read a page (``size`` observations) at a time, the next page in flight while the
    current one is scored and committed.

    A page of several chunks costs one query: on Firestore one round trip instead of several, on the
    emulator, whose queries each cost about a scan of the collection, several times less. Pages are read in
    the order of the queue, each after the previous one's last observation; a short page is its end.
    """

    def __init__(self, pool: ThreadPoolExecutor, read: Callable[[Cursor, int], list[StoredObservation]],
                 size: int) -> None:
        self._pool, self._read, self._size = pool, read, size
        self._pending: Future[list[StoredObservation]] | None = None

    def start(self, after: Cursor) -> None:
        """Read from ``after`` on (what is in flight is dropped)."""
        self.stop()
        self._pending = self._pool.submit(self._read, after, self._size)

    def take(self) -> list[StoredObservation]:
        """The next page ([] at the end of the queue); the one after it is read meanwhile."""
        if self._pending is None:
            return []
        page = self._pending.result()
        self._pending = None
        if len(page) == self._size:
            self._pending = self._pool.submit(self._read, Cursor(page[-1].received_at, page[-1].doc_id), self._size)
        return page

    def stop(self) -> None:
        if self._pending is not None and not self._pending.cancel():
            self._pending.exception()  # a read already under way is waited for; its page is not used
        self._pending = None


def score_observations(
    store: Store,
    schedule_time: dt.datetime,
    *,
    now: dt.datetime | None = None,
    settings: ScoringSettings | None = None,
    progress: Callable[[int], None] | None = None,
    checkpoint: Checkpoint | None = None,
    run_id: str | None = None,
    refresh_cards: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
    dispatch: Dispatch | None = None,
) -> ScoreRunResult:
    """Score the backlog, then refresh ``ops_stats`` for windows ending at ``schedule_time``.

    Skill cards are refreshed from the same summaries once per hour of schedule time (or when
    ``refresh_cards``), so their extra bucket reads stay off most runs. A schedule time more than
    ``windows.MAX_SCHEDULE_SKEW_MS`` ahead of the clock is refused (InvalidArgument) before anything is
    written. Each config document is read once; a bad one is alerted and replaced (``services/config``).

    With ``config/scoring.shards`` > 1 each shard key with observations waiting is scored concurrently:
    in this process (a thread each), or by task workers when ``dispatch`` hands them over (``score_shard``
    in each; the stats then include their work from the next run on).
    """
    started = monotonic()
    schedule_ms = ms(schedule_time)
    windows.check_schedule_time(schedule_ms, ms(now or dt.datetime.now(dt.UTC)))
    loaded = config_service.load(store)
    cfg = loaded.reward_rules
    settings = settings or loaded.scoring
    run_id = run_id or f"score-{schedule_ms}-{uuid.uuid4().hex[:8]}"
    hit = checkpoint or (lambda _name: None)

    if not store.runs.acquire_lease("score", run_id, settings.lease_ttl_s):
        return ScoreRunResult(run_id, schedule_ms, lease_acquired=False)
    result = ScoreRunResult(run_id, schedule_ms, lease_acquired=True,
                            config_errors=[message for _, message in loaded.problems])
    try:
        hit("after-lease")
        store.runs.record(run_id, {"kind": "score", "scheduleTime": schedule_ms, "status": "running",
                                  "startedAt": ms(dt.datetime.now(dt.UTC)), "configErrors": result.config_errors})
        hit("after-run-start")
        store.observations.migrate_legacy_components()
        fold_all(store, hit)  # deltas a crashed run left behind
        clock = now or dt.datetime.now(dt.UTC)
        index = store.buckets.index_state(ms(clock))  # before this run buckets anything (bucket_index)
        upper = clock - dt.timedelta(milliseconds=settings.safety_margin_ms)
        deadline = started + settings.run_budget_s
        layout, ever_sharded = shard_service.adopt(store, settings, clock)
        # a changed reward config starts a new generation
        gens = generations.adopt(store, cfg, by_time=ever_sharded)
        hit("after-adopt")
        jobs = shard_service.plan(store, layout, upper)
        if dispatch is not None and layout.multi:  # shards go to task workers; the global scanner stays here
            keyed = [job for job in jobs if job.shard is not None]
            result.dispatched = dispatch(keyed, schedule_ms) if keyed else []
            # what could not be handed over (no queue, Cloud Tasks down) is scored here
            jobs = [job for job in jobs if shard_domain.label(job.shard) not in result.dispatched]
            if len(result.dispatched) < len(keyed):
                log.warning("scoring %d shard(s) in this run: the task queue refused them",
                            len(keyed) - len(result.dispatched))
        gens = _score_jobs(store, jobs, gens, settings, result, hit, progress, deadline, monotonic, run_id,
                           alone=not layout.multi)
        if layout.legacy in ("draining", "stamping"):  # once retired (maybe by this run's plan), what versions
            # before shards left unstamped is stamped, within the budget
            result.legacy_stamped = shard_service.stamp_legacy(store, deadline, monotonic)
        if result.dispatched:
            result.backlog = None  # what the task workers leave is theirs to tell
        result.feedback = apply_feedback(store, gens)  # late metrics of observations scored before
        hit("before-backfill")
        if gens.backfilling:  # what is left of the budget re-scores history under the new config
            result.backfill = generations.backfill(store, expire_days=settings.retention_days, deadline=deadline,
                                                   monotonic=monotonic).scored
            gens = generations.current(store, cfg)
        # changes committed from here on are not in this run's stats (Firestore's clock, like changedAt)
        folded_at = store.runs.stamp(paths.STATS_MARK_DOC)
        fold_all(store, hit)  # anything another run left pending meanwhile (one empty query when none)
        hit("before-stats")
        result.indexed = bucket_index.build(store, index, gens, windows.window_end(schedule_ms), ms(clock),
                                            lambda: monotonic() < deadline)
        cards_due = refresh_cards or (not result.budget_exhausted and skill_cards.is_due(store, schedule_ms))
        selection = stats_selection(store, schedule_ms, gens, full=cards_due)
        summaries = window_summaries(store, schedule_ms, gens, selection.components)
        result.stats = stats_docs(summaries, schedule_ms, gens)
        result.generation = gens.read
        result.stats_full = selection.full
        result.stats_written = store_stats(store, result.stats, schedule_ms, hit, ms(clock))
        hit("after-stats")
        if selection.record:  # what changes next without new data, and from when new data counts
            store.observations.set_stats_due(summaries.due)
            store.buckets.forget(summaries.pruning)
            store.runs.record(paths.STATS_RUN_DOC, {"foldedAt": folded_at, "scheduleMs": schedule_ms,
                                                    "generation": gens.read, "full": selection.full,
                                                    "components": len(selection.components)})
        try:  # out of budget: the cards stay due, and the next run refreshes them
            if cards_due:  # decided above, before the stats: due cards need every component's summaries
                result.cards_written = skill_cards.refresh_if_due(store, schedule_ms, summaries.totals, gens,
                                                                  loaded.cards, force=True)
        except (ArithmeticError, KeyError, TypeError, ValueError) as exc:  # cards are derived; scoring goes on
            result.cards_error = alerts.item_failed(store, "scoreObservations", "skill cards", exc)[:500]
        store.runs.record(run_id, {"status": "done", "scored": result.scored, "invalid": result.invalid,
                                  "chunks": result.chunks, "statsWritten": result.stats_written,
                                  "cardsWritten": result.cards_written, "cardsError": result.cards_error,
                                  "budgetExhausted": result.budget_exhausted,
                                  "finishedAt": ms(dt.datetime.now(dt.UTC))})
        hit("after-run-done")
    finally:
        store.runs.release_lease("score", run_id)
    telemetry.scoring_run(result.reward_means(), result.lag_s(), result.backlog)
    return result


# Hands shard jobs to workers elsewhere (Cloud Tasks); returns the keys handed over.
Dispatch = Callable[[list[shard_domain.Job], int], list[str]]
MAX_INLINE_SHARDS = 8  # shard scanners one process runs at once


def _score_jobs(store: Store, jobs: list[shard_domain.Job], gens: Generations, settings: ScoringSettings,
                result: ScoreRunResult, hit: Checkpoint, progress: Callable[[int], None] | None,
                deadline: float, monotonic: Callable[[], float], run_id: str, *, alone: bool = False) -> Generations:
    """Score each job's key up to its upper bound under its lease: the one scanner of a single-shard layout
    (``alone``) in this thread, with the run's progress and checkpoints; shards in a thread each. Returns
    the generations to go on with."""
    if alone and len(jobs) == 1:
        scanned = _score_key(store, jobs[0], gens, settings, hit, progress, deadline, monotonic, run_id,
                             leased=True)  # leased: a task for the key may run (K was > 1 a moment ago)
        if scanned is None:
            result.shards[shard_domain.label(jobs[0].shard)] = {"busy": True}
            result.backlog = None
            return gens
        one, gens = scanned
        result.add(one)
        result.backlog = one.backlog
        return gens
    done: dict[str | None, int] = {}
    lock = threading.Lock()

    def report(key: str | None) -> Callable[[int], None] | None:
        if progress is None:
            return None

        def seen(n: int) -> None:
            with lock:
                done[key] = n
                total_seen = sum(done.values())
            progress(total_seen)

        return seen

    def work(job: shard_domain.Job) -> ScoreRunResult | None:
        scanned = _score_key(store, job, gens, settings, hit, report(job.shard), deadline, monotonic, run_id,
                             leased=job.shard is not None)
        return None if scanned is None else scanned[0]

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), MAX_INLINE_SHARDS)),
                            thread_name_prefix="opsloop-shard") as pool:
        outcomes = list(pool.map(work, jobs))
    backlog: int | None = 0
    for job, part in zip(jobs, outcomes, strict=True):
        label = shard_domain.label(job.shard)
        if part is None:  # another worker holds the shard's lease
            result.shards[label] = {"busy": True}
            backlog = None
            continue
        result.add(part)
        result.shards[label] = part.summary()
        backlog = None if backlog is None or part.backlog is None else backlog + part.backlog
    result.backlog = backlog
    return generations.current(store, gens.read_rules) if jobs else gens


def _score_key(store: Store, job: shard_domain.Job, gens: Generations, settings: ScoringSettings,
               hit: Checkpoint, progress: Callable[[int], None] | None, deadline: float,
               monotonic: Callable[[], float], run_id: str, *,
               leased: bool) -> tuple[ScoreRunResult, Generations] | None:
    """One scanner's pass (a shard's under the lease ``score~<key>``) and the generations it ended with;
    None when its lease is held."""
    lease = f"score~{shard_domain.label(job.shard)}"
    if leased and not store.runs.acquire_lease(lease, run_id, settings.lease_ttl_s):
        return None
    try:
        part = ScoreRunResult(run_id, 0, lease_acquired=True)
        gens = _score_backlog(store, gens, settings, job.upper, part, hit, progress, deadline, monotonic,
                              job.shard)
        part.backlog = _backlog(store, part, job.upper, job.shard)
        return part, gens
    finally:
        if leased:
            store.runs.release_lease(lease, run_id)


def score_shard(store: Store, shard: str, cap_ms: int | None = None, *, run_id: str | None = None,
                now: dt.datetime | None = None,
                monotonic: Callable[[], float] = time.monotonic) -> ScoreRunResult:
    """A task worker's run: score shard ``shard`` (up to ``cap_ms`` when its layout is draining) within
    ``config/scoring.runBudgetS``. Exactly once like the global scanner: the shard's lease keeps two
    workers apart, and its cursor moves in each chunk's transaction. Stats are left to scoreObservations."""
    started = monotonic()
    loaded = config_service.load(store)
    settings = loaded.scoring
    clock = now or dt.datetime.now(dt.UTC)
    upper = clock - dt.timedelta(milliseconds=settings.safety_margin_ms)
    if cap_ms is not None:
        upper = min(upper, dt.datetime.fromtimestamp(cap_ms / 1000, dt.UTC))
    run_id = run_id or f"score-{shard}-{uuid.uuid4().hex[:8]}"
    state = store.generations.get()  # none before the first scoreObservations: adopt, or no commit would match
    gens = (generations.parse(state, loaded.reward_rules) if state is not None
            else generations.adopt(store, loaded.reward_rules, by_time=True))
    scanned = _score_key(store, shard_domain.Job(shard, upper, cap_ms), gens, settings, lambda _name: None, None,
                         started + settings.run_budget_s, monotonic, run_id, leased=True)
    if scanned is None:
        return ScoreRunResult(run_id, ms(clock), lease_acquired=False)
    part = scanned[0]
    part.schedule_ms = ms(clock)
    part.shards[shard] = part.summary()
    telemetry.scoring_run(part.reward_means(), part.lag_s(), part.backlog)
    return part


def _backlog(store: Store, result: ScoreRunResult, upper: dt.datetime, shard: str | None = None) -> int | None:
    """What the run left unscored (before its safety margin): 0 when it drained the backlog, else one count
    aggregation behind the cursor (Firestore bills one read per 1,000 entries counted); None if that fails,
    since a figure for metrics and logs never fails the run.

    The count is by ``receivedAt`` after the cursor's, so it leaves out the rest of the batch the cursor
    stopped in (one commit time): a lower bound, short by less than one recordObservation batch.
    """
    if not result.budget_exhausted:
        return 0
    try:
        return store.observations.backlog(store.observations.cursor(shard), upper, shard)
    except Exception as exc:
        log.warning("could not count the scoring backlog: %r", exc)
        return None


def _score_backlog(
    store: Store,
    gens: Generations,
    settings: ScoringSettings,
    upper: dt.datetime,
    result: ScoreRunResult,
    hit: Checkpoint,
    progress: Callable[[int], None] | None,
    deadline: float = math.inf,
    monotonic: Callable[[], float] = time.monotonic,
    shard: str | None = None,
) -> Generations:
    """Commit chunk after chunk of ``shard``'s scanner; the next chunk is built while the previous one
    commits, and the queue is read ahead a page of several chunks at a time (``_ReadAhead``).

    Commits stay strictly sequential (one at a time, each checking the cursor the previous one left), so
    the overlap only hides reads and the Python work of scoring behind Firestore's latency; a moved cursor
    drops what was read ahead and reads again from it. No chunk is taken
    after ``deadline`` (``time.monotonic()``): the rest waits for the next run, which keeps a large backlog
    from running into the function's timeout before the stats are refreshed.

    Each chunk is scored under the live reward generations ``gens``; a commit refused because they changed
    meanwhile (a backfill finished, or a concurrent run adopted a new config) is read again like a lost
    race. Returns the generations it ended with.
    """
    days = settings.retention_days
    expected = store.observations.cursor(shard)
    buffer: list[StoredObservation] = []  # read, not yet handed to a commit; right after the last one
    in_flight: tuple[Future[bool], _Chunk, str] | None = None
    own = OwnDeltas()

    def settle() -> bool:
        """Wait for the commit in flight; False when another run had moved the cursor first."""
        nonlocal in_flight, expected, gens
        if in_flight is None:
            return True
        future, chunk, delta_id = in_flight
        in_flight = None
        if not future.result():
            result.lost_races += 1
            expected = store.observations.cursor(shard)  # read again from where the other run left it
            gens = generations.current(store, gens.read_rules)
            return False
        own.keep(store, delta_id, chunk.deltas, hit, fold_now=False)
        hit("after-chunk-commit")
        result.scored += chunk.scored
        result.invalid += len(chunk.page) - chunk.scored - chunk.skipped
        _add_sums(result.reward_sums, chunk.reward_sums)
        result.chunks += 1
        if progress is not None:
            progress(result.scored + result.invalid)
        own.fold_if_due(store, hit)
        return True

    with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="opsloop-commit") as committer,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="opsloop-read") as read_pool):
        pages = _ReadAhead(read_pool, lambda after, limit: store.observations.after(after, upper, limit, shard=shard),
                           settings.chunk_size * READ_CHUNKS)
        pages.start(expected)
        try:
            while True:
                if monotonic() >= deadline:
                    result.budget_exhausted = True
                    buffer = []
                if result.budget_exhausted:
                    pages.stop()
                    settle()
                    own.fold(store, hit)
                    return gens
                if len(buffer) < settings.chunk_size:
                    buffer += pages.take()
                    if result.oldest_unscored_ms is None and buffer:  # the first read: the oldest waiting
                        result.oldest_unscored_ms = ms(buffer[0].received_at)
                chunk = None
                if buffer:
                    chunk = _Chunk.build(buffer[: settings.chunk_size], gens, days, shard)
                    while len(chunk.page) > 1 and not chunk.fits():
                        chunk = _Chunk.build(chunk.page[: len(chunk.page) // 2], gens, days, shard)
                if not settle():
                    buffer = []
                    pages.start(expected)
                    continue
                if chunk is None:
                    own.fold(store, hit)
                    return gens
                buffer = buffer[len(chunk.page) :]
                hit("before-chunk-commit")
                delta_id = uuid.uuid4().hex
                future = committer.submit(store.observations.commit_chunk, expected, chunk.cursor, chunk.rewards,
                                          chunk.deltas, delta_id, chunk.live, shard)
                in_flight = (future, chunk, delta_id)
                expected = Cursor(chunk.cursor.received_at, chunk.cursor.doc_id)
        finally:
            pages.stop()
            if in_flight is not None:  # a crash in this thread must not leave a commit unobserved
                in_flight[0].exception()


# The points of each window's chart (``series`` of an ops_stats document): the buckets of one level that
# overlap the window, the last one (in progress) counted up to the window's end.
SERIES_LEVELS: dict[str, str] = {"1h": "5m", "24h": "1h", "7d": "1d"}


@dataclass
class WindowSummaries:
    """Per component, per window: the summary, and the chart's points (bucket start, summary); per
    component, when its stats next change without new data (None: never)."""

    totals: dict[str, dict[str, Summary]]
    series: dict[str, dict[str, list[tuple[int, Summary]]]]
    due: dict[str, int | None] = field(default_factory=dict)
    pruning: dict[str, presence.Pruning] = field(default_factory=dict)  # per key: what its record can drop


@dataclass(frozen=True)
class StatsSelection:
    components: list[str]
    full: bool  # every component seen within the longest window
    record: bool  # store due times and the fold mark (not for a replay of an older schedule time)


def stats_selection(store: Store, schedule_ms: int, gens: Generations, *, full: bool = False) -> StatsSelection:
    """The components whose stats this run refreshes.

    A component's window stats change only when data is added (a chunk or a feedback commit marks it
    ``changedAt``, Firestore's commit time), when a non-empty bucket leaves a window, or when a
    future-stamped one enters it (``statsDueAt``, from its buckets when its stats were last computed). So a
    run refreshes the components changed since the previous stats run's last fold began (``foldedAt``, also
    Firestore's time: everything committed before it was folded into that run's stats) and those due by
    this window end; the stats a reader sees are exact for the latest run's window end, whichever
    components it refreshed (their ``ts`` says when each was last recomputed). Every component seen
    within the longest window is refreshed on the first run, when readers move to another reward
    generation, when the skill cards are due (hourly: they need every summary) and for a replay of an
    older schedule time (which does not move the state).
    """
    end = windows.window_end(schedule_ms)
    due = store.observations.due_components(end)
    state = store.runs.get(paths.STATS_RUN_DOC) or {}
    prev_schedule, since = state.get("scheduleMs"), state.get("foldedAt")
    record = not isinstance(prev_schedule, int) or schedule_ms >= prev_schedule
    if full or not record or not isinstance(since, dt.datetime) or state.get("generation") != gens.read:
        active = store.observations.active_components(end - max(windows.WINDOWS.values()))
        return StatsSelection(sorted(set(active) | due), True, record)
    return StatsSelection(sorted(store.observations.changed_components(since) | due), False, record)


Fetch = Callable[[list[windows.Segment]], list[tuple[int, Summary]]]  # segments -> (start, bucket) held


def _window(plan: windows.WindowPlan, fetch: Fetch) -> tuple[Summary, list[tuple[int, Summary]]]:
    """One window's summary and chart points from the buckets its plan names, however they are fetched."""
    points = fetch([plan.series])
    last = total([s for _, s in fetch(plan.tail)])
    if last.n:
        points.append((plan.in_progress, last))
    return total([s for _, s in fetch(plan.cover)]), points


def window_summaries(store: Store, schedule_ms: int, gens: Generations,
                     components: list[str] | None = None) -> WindowSummaries:
    """Per component (default: every one seen within the longest window), its summary for each window
    ending at ``schedule_ms``, the window's series and when they next change, from the buckets of the
    generation readers use: got by id where the component's record of the buckets holding data is complete
    (``domain/presence``), else found by a query per window segment."""
    longest = max(windows.WINDOWS.values())
    end = windows.window_end(schedule_ms)
    if components is None:
        components = sorted(store.observations.active_components(end - longest))
    keys = {comp: gens.read_key(comp) for comp in components}
    # where a component's record of the buckets holding data is complete, they are got by id (no query)
    known = {k: p for k, p in store.buckets.presence(list(keys.values())).items()
             if p.valid_from <= presence.needed_from(end)}
    jobs = [(comp, name) for comp in components if keys[comp] not in known for name in windows.WINDOWS]
    plans = {name: windows.window_plan(*windows.window_bounds(schedule_ms, name), SERIES_LEVELS[name])
             for name in windows.WINDOWS}

    def load(job: tuple[str, str]) -> tuple[Summary, list[tuple[int, Summary]]]:
        key = keys[job[0]]
        return _window(plans[job[1]], lambda segments: [
            point for seg in segments for point in store.buckets.series(key, seg.level, seg.start, seg.end)])

    # The queries are independent and each waits on a round trip: a few in flight hide the latency.
    with ThreadPoolExecutor(max_workers=STATS_READERS, thread_name_prefix="opsloop-stats") as pool:
        loaded = list(pool.map(load, jobs))
        out = WindowSummaries({comp: {} for comp in components}, {comp: {} for comp in components})
        for (comp, name), (summary, points) in zip(jobs, loaded, strict=True):
            out.totals[comp][name] = summary
            out.series[comp][name] = points
        _from_records(store, pool, plans, end, {c: known[k] for c, k in keys.items() if k in known}, keys,
                      gens.read, out)

        def due(comp: str) -> int | None:  # two or three single-document queries
            first = functools.partial(store.buckets.first_start, keys[comp], "5m")
            hour = out.series[comp]["1h"]
            return presence.next_change(first, end, hour[0][0] if hour else None)

        queried = [comp for comp in components if keys[comp] not in known]
        out.due.update(zip(queried, pool.map(due, queried), strict=True))
    return out


GET_BATCH = 300  # bucket ids per batch get


def _from_records(store: Store, pool: ThreadPoolExecutor, plans: dict[str, windows.WindowPlan], end: int,
                  records: dict[str, Presence], keys: dict[str, str], read: int, out: WindowSummaries) -> None:
    """The window summaries of components whose record of the buckets holding data is complete: the
    buckets the queries would find, got by id and summed in the same order (the same figures to the bit)."""
    ids = sorted({paths.bucket_id(keys[comp], *b) for comp, p in records.items() for plan in plans.values()
                  for b in presence.held(p, [*plan.cover, plan.series, *plan.tail])})
    got: dict[str, Summary] = {}
    for part in pool.map(store.buckets.get_many, [ids[i : i + GET_BATCH] for i in range(0, len(ids), GET_BATCH)]):
        got.update(part)
    for comp, p in records.items():
        def fetch(segments: list[windows.Segment], p: Presence = p, key: str = keys[comp]) -> list[tuple[int, Summary]]:
            return [(t, got[bid]) for level, t in presence.held(p, segments)
                    if (bid := paths.bucket_id(key, level, t)) in got]

        for name, plan in plans.items():
            out.totals[comp][name], out.series[comp][name] = _window(plan, fetch)
        hour = out.series[comp]["1h"]
        out.due[comp] = presence.next_change(p.first, end, hour[0][0] if hour else None)
        if (drop := bucket_index.pruning(p, end, read)) is not None:
            out.pruning[keys[comp]] = drop


def _point(start: int, summary: Summary) -> dict[str, Any]:
    figures = window_stats(summary)
    return {"t": start, **{k: figures[k] for k in ("n", "avgReward", "successRate", "p95Latency", "avgCostUsd")}}


def stats_docs(summaries: WindowSummaries, schedule_ms: int,
               gens: Generations) -> dict[str, dict[str, Any]]:
    """The ``ops_stats`` documents of those summaries, each labelled with the one reward version (and
    generation) its buckets were computed under, with the window's chart points in ``series``."""
    out: dict[str, dict[str, Any]] = {}
    for comp, per_window in summaries.totals.items():
        for name, summary in per_window.items():
            start, stop = windows.window_bounds(schedule_ms, name)
            out[paths.stats_id(comp, name)] = {
                "component": comp,
                "window": name,
                "ts": schedule_ms,
                "windowStart": start,
                "windowEnd": stop,
                "rewardVersion": gens.config(comp).version,
                "rewardGeneration": gens.read,
                **window_stats(summary),
                "seriesLevel": SERIES_LEVELS[name],
                "series": [_point(t, s) for t, s in summaries.series[comp][name]],
            }
    return out


STATS_GROUP = 240  # stats documents per transaction


def store_stats(store: Store, stats: dict[str, dict[str, Any]], schedule_ms: int,
                checkpoint: Checkpoint | None = None, now_ms: int | None = None) -> int:
    written = 0
    items = list(stats.items())
    for i in range(0, len(items), STATS_GROUP):
        written += store.stats.write(dict(items[i : i + STATS_GROUP]), schedule_ms, now_ms)
        if checkpoint is not None:
            checkpoint("after-stats-write")
    return written
