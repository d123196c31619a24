"""One reward version at a time (``domain/generations``): adopting a changed reward config, the resumable
backfill that re-scores history under it, and the generation every reader reads.

``adopt`` runs at the start of every scoring run (and of ``opsloop reward backfill``): a changed
``config/reward_config`` starts a new generation. ``backfill`` re-scores, chunk by chunk, the observations
ingested before the change; each scoring run spends what is left of its budget on it, and the CLI runs it
to the end with a progress bar. Readers call ``current``: until the backfill is done they read the old
generation, which the scorer keeps up to date meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..domain import config as config_domain
from ..domain import generations as gen_domain
from ..domain import shards as shard_domain
from ..domain.generations import BackfillChunk, Build, Generations
from ..domain.ingest import Cursor, StoredObservation
from ..domain.reward import RewardRules
from ..domain.stats import Deltas
from ..domain.windows import ms
from . import reward_docs
from .folding import MAX_COMMIT_WRITES, OwnDeltas, delta_fits, fold_all
from .ports import Store

log = logging.getLogger("opsloop.generations")


def _no_checkpoint(_name: str) -> None:
    return None


# what a backfill changes on a reward (merged: the other generations' scores, the inputs and the feedback
# ids stay); the fewer fields, the cheaper the merge is to encode
RESCORED = ("score", "details", "missingTerms", "rewardVersion", "generation", "scores", "scoredAt")
CHUNK = 400  # observations per backfill transaction (their rewards, one delta, the state, and the components)


def _parse_rules(doc: dict[str, Any]) -> RewardRules:
    """A stored generation's formula. One a newer, stricter version of the loop refuses is read as the
    default rather than stopping every reader (logged: its labels may then be wrong until the next change)."""
    try:
        rules: RewardRules = config_domain.parse(config_domain.REWARD, doc)
    except config_domain.ConfigInvalid as exc:
        log.error("a stored reward generation's formula no longer parses (%s); reading it as the default", exc)
        return RewardRules()
    return rules


def parse(doc: dict[str, Any] | None, fallback: RewardRules | None = None) -> Generations:
    """The stored state; with none stored yet, the unversioned buckets under ``fallback``'s labels."""
    if doc is None:
        rules = fallback or RewardRules()
        return Generations(read=gen_domain.LEGACY, write=gen_domain.LEGACY, rules={gen_domain.LEGACY: rules})
    return Generations.from_doc(doc, _parse_rules)


def current(store: Store, fallback: RewardRules | None = None) -> Generations:
    """The generation readers use now (one document read)."""
    return parse(store.generations.get(), fallback)


def adopt(store: Store, rules: RewardRules, *, by_time: bool = False) -> Generations:
    """Adopt today's reward config: a changed formula starts a new generation and its backfill.

    ``by_time``: the boundary is the adoption time rather than the global scorer's cursor (once scoring has
    had more than one scanner, each with its own cursor; see ``gen_domain.adopt``); else the cursor of the
    one scanner there has ever been (key ``SINGLE``)."""
    at = dt.datetime.now(dt.UTC)
    now = ms(at)
    at_time = Cursor(at, gen_domain.AFTER_ANY_ID) if by_time else None

    def plan(doc: dict[str, Any] | None, cursor: Cursor) -> dict[str, Any] | None:
        new = gen_domain.adopt(None if doc is None else parse(doc), rules, cursor, now, at_time)
        return None if new is None else new.to_doc()

    return parse(store.generations.adopt(plan, shard_domain.SINGLE), rules)


@dataclass
class BackfillResult:
    scored: int = 0
    chunks: int = 0
    done: bool = False  # the readers switched (or there was nothing to backfill)
    stopped: str | None = None  # why it stopped before the end: "budget", or "superseded" by a newer change


def _within_commit(rewards: list[Any], deltas: Deltas) -> bool:
    """Whether a backfill commit (its rewards, the delta, the state and each component's record of the
    buckets holding data) stays within MAX_COMMIT_WRITES."""
    return len(rewards) + 2 + len({gen_domain.split_key(str(ident["component"]))[0]
                                   for ident, _ in deltas.values()}) <= MAX_COMMIT_WRITES


def _build(expected_write: int, expire_days: int) -> Build:
    def build(doc: dict[str, Any], page: list[StoredObservation], complete: bool,
              stored: dict[str, dict[str, Any]] | None) -> BackfillChunk | None:
        gens = parse(doc)
        if gens.write != expected_write or not gens.backfilling:
            return None  # superseded by a newer change since this backfill started
        expire_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=expire_days)
        rewards: list[tuple[str, dict[str, Any]]] = []
        scored: list[tuple[StoredObservation, reward_docs.Scored]] = []
        field_name = gen_domain.score_field(gens.write)
        for obs in page:
            if not gen_domain.before_or_at(obs, gens.boundary):
                continue  # scored under the new generation by the scorer
            if stored is not None:  # a time boundary: only what was scored, and not under ``write`` yet
                had = stored.get(obs.doc_id)
                if had is None or field_name in (had.get("scores") or {}):
                    continue
            reward, per_generation = reward_docs.reward_doc(obs, gens, expire_at, only=[gens.write])
            if per_generation is None:
                continue  # invalid under any formula: its reward says so already
            reward.setdefault("missingTerms", [])  # merged over the old reward: an old list must not stay
            rewards.append((obs.doc_id, {k: reward[k] for k in RESCORED}))
            scored.append((obs, per_generation))
        deltas = reward_docs.bucket_deltas(scored)
        while len(page) > 1 and not (delta_fits(deltas) and _within_commit(rewards, deltas)):  # a shorter page
            page, complete = page[: len(page) // 2], False
            kept = {obs.doc_id for obs in page}
            rewards = [r for r in rewards if r[0] in kept]
            scored = [s for s in scored if s[0].doc_id in kept]
            deltas = reward_docs.bucket_deltas(scored)
        position = Cursor(page[-1].received_at, page[-1].doc_id) if page else gens.position
        after = gens.advanced(position or Cursor(), len(scored), complete)
        return BackfillChunk(after.to_doc(), rewards, deltas, len(scored), complete, uuid.uuid4().hex)

    return build


def backfill(
    store: Store,
    *,
    chunk_size: int = CHUNK,
    expire_days: int = 30,
    deadline: float = math.inf,
    monotonic: Callable[[], float] = time.monotonic,
    progress: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Re-score the observations behind the boundary into the newest generation, until done or ``deadline``.

    Safe to stop at any point and to run twice at once: each chunk commits with the position it read. Its
    bucket deltas are folded from memory every few chunks and before it returns, as the scorer's are.
    """
    result = BackfillResult()
    gens = current(store)
    if not gens.backfilling:
        result.done = True
        return result
    build = _build(gens.write, expire_days)
    own = OwnDeltas()
    while True:
        if monotonic() >= deadline:
            result.stopped = "budget"
            break
        chunk = store.generations.backfill_chunk(chunk_size, build)
        if chunk is None:
            result.done = not current(store).backfilling
            result.stopped = None if result.done else "superseded"
            break
        own.keep(store, chunk.delta_id, chunk.deltas, _no_checkpoint)
        result.scored += chunk.scored
        result.chunks += 1
        if progress is not None:
            progress(result.scored)  # an exception here (or a crash) leaves its deltas pending: any fold takes them
        if chunk.done:
            break
    own.fold(store, _no_checkpoint)
    if result.stopped is None and not result.done:  # caught up: fold what any crashed run left, then switch
        fold_all(store)
        result.done = not _switch(store, gens.write).backfilling
    return result


def _switch(store: Store, generation: int) -> Generations:
    """Every reader on ``generation``, if its backfill caught up (in one transaction with that check)."""
    now = ms(dt.datetime.now(dt.UTC))

    def plan(doc: dict[str, Any] | None, _cursor: Cursor) -> dict[str, Any] | None:
        gens = parse(doc)
        return gens.switched(now).to_doc() if gens.write == generation and gens.caught_up else None

    return parse(store.generations.adopt(plan))


def status(store: Store) -> dict[str, Any]:
    """What ``opsloop reward backfill --status`` prints: the generations, the versions, the progress."""
    doc = store.generations.get()
    gens = parse(doc)
    out: dict[str, Any] = {
        "adopted": doc is not None,
        "readGeneration": gens.read,
        "writeGeneration": gens.write,
        "readVersions": gens.read_rules.versions(),
        "backfilling": gens.backfilling,
        "scored": gens.scored,
        "caughtUp": gens.caught_up,
        "startedAt": gens.started_at,
        "finishedAt": gens.finished_at,
    }
    if gens.backfilling and gens.boundary is not None:
        remaining = store.generations.remaining(gens.position, gens.boundary)
        out.update(writeVersions=gens.rules_of(gens.write).versions(), remaining=remaining,
                   percent=round(100.0 * gens.scored / max(1, gens.scored + remaining), 1))
    return out
