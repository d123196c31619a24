"""The scoring shards in use (``ops_runs/shard-layout``) and which of their keys a run scores.

See ``domain/shards`` for the layout and how a change of ``config/scoring.shards`` is drained.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from ..domain import config as config_domain
from ..domain import shards as shard_domain
from ..domain.config import ScoringSettings
from ..domain.errors import OpsError
from ..domain.shards import Job, Layout
from ..domain.windows import ms
from ..store import paths
from . import alerts
from . import config as config_service
from .ports import Store

log = logging.getLogger("opsloop.shards")


def grace_ms(settings: ScoringSettings) -> int:
    """How long after adopting a layout an observation may still be stamped with the one before: the
    lifetime of ingestion's config cache, the scorer's safety margin, and a second of clock skew."""
    return int(config_service.CACHE_TTL_S * 1000) + settings.safety_margin_ms + 1000


def adopt(store: Store, settings: ScoringSettings, now: dt.datetime) -> tuple[Layout, bool]:
    """The layout after adopting ``settings.shards`` (one read; one transaction when it changes), and
    whether scoring has ever had more than one scanner (then reward generations take a time boundary)."""
    held = store.runs.get(paths.SHARD_LAYOUT_DOC)
    layout = Layout.from_doc(held)
    if held is not None and held.get("v") == 2 and layout.current == settings.shards:
        return layout, bool(held.get("everSharded"))
    legacy = not _new_deployment(store, held)

    def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        before = Layout.from_doc(doc)
        if doc is None and not legacy:  # a new deployment: every observation it has is stamped
            after = Layout(settings.shards, ms(now), {}, frozenset({settings.shards}), "none")
        else:
            after = before.adopt(settings.shards, ms(now), grace_ms(settings))
        return {**after.to_doc(), "everSharded": bool((doc or {}).get("everSharded")) or after.multi}

    stored = store.runs.change(paths.SHARD_LAYOUT_DOC, change) or {}
    return Layout.from_doc(stored), bool(stored.get("everSharded"))


def plan(store: Store, layout: Layout, upper: dt.datetime) -> list[Job]:
    """The keys with observations waiting (one single-document query each); a draining layout whose keys
    are all scored up to its end (which is behind ``upper``) is retired instead."""
    jobs: list[Job] = []
    retire: list[int] = []
    for shards, until in layout.layouts():
        keys = shard_domain.keys(shards)
        cap = upper if until is None else min(upper, dt.datetime.fromtimestamp(until / 1000, dt.UTC))
        waiting = [Job(k, cap, until) for k in keys if store.observations.after(store.observations.cursor(k), cap,
                                                                                 1, shard=k)]
        if until is not None and until < ms(upper) and not waiting:
            retire.append(shards)
        jobs += waiting
    if retire:
        store.runs.change(paths.SHARD_LAYOUT_DOC, lambda doc: _retired(doc, retire))
    return jobs


def stamp_legacy(store: Store, deadline: float, monotonic: Callable[[], float] = time.monotonic,
                 page: int = 500) -> int:
    """Once the legacy layout is retired: stamp the observations it left unstamped with ``MIGRATED``, in
    document id order from where the last run stopped, until ``deadline`` (``monotonic``); returns how many
    it stamped. Collects the layouts it sees on the way (versions before the layout document kept ``used``
    retired some of them). An unstamped observation the legacy scanner never scored (an instance of the
    version before still recording after the drain's end) is stamped too, and alerted: it is not scored."""
    layout = Layout.from_doc(store.runs.get(paths.SHARD_LAYOUT_DOC))
    if layout.legacy != "stamping":
        return 0
    through = store.observations.cursor(shard_domain.GLOBAL)
    stamped = late = 0
    while layout.legacy == "stamping" and monotonic() < deadline:
        got = store.observations.stamp_unkeyed(layout.stamped_after, page, shard_domain.MIGRATED, through)
        stamped, late = stamped + got.stamped, late + got.late
        layout = layout.stamping(got.last, got.done, set(got.seen))
        store.runs.change(paths.SHARD_LAYOUT_DOC, functools.partial(_stamping, at=layout))
    if stamped:
        log.info("stamped %d observation(s) of versions before every observation had a shard", stamped)
    if late:
        alerts.item_failed(store, "scoreObservations", "observations without a shard key", OpsError(
            f"{late} observation(s) without a shard key arrived after the legacy layout's drain ended (an "
            "instance of a version before keys still recording?): stamped \"0-0\" but not scored"))
    return stamped


def stored_keys(store: Store) -> list[str] | None:
    """Every key stored observations carry (None: unstamped ones remain; see ``Layout.stored_keys``)."""
    held = store.runs.get(paths.SHARD_LAYOUT_DOC)
    return _stored_keys(store, held, _new_deployment(store, held))


def waiting(store: Store, upper: dt.datetime) -> int:
    """About how many observations wait to be scored up to ``upper`` (the total of ``describe``'s
    ``waiting``; for a progress bar)."""
    held = store.runs.get(paths.SHARD_LAYOUT_DOC)
    return sum(_waiting(store, upper, held, _new_deployment(store, held)).values())


def describe(store: Store, upper: dt.datetime) -> dict[str, Any]:
    """What ``opsloop shards`` prints: the layout in use, those draining, the legacy migration, and the
    observations waiting per key up to ``upper``."""
    held = store.runs.get(paths.SHARD_LAYOUT_DOC)
    fresh = _new_deployment(store, held)
    settings: ScoringSettings = config_service.cached(store, config_domain.SCORING)
    layout = Layout.from_doc(held)

    def at(ms_: int) -> str:
        return dt.datetime.fromtimestamp(ms_ / 1000, dt.UTC).isoformat(timespec="seconds")

    adopted = held is not None
    return {"adopted": adopted, "configured": settings.shards, "current": layout.current if adopted else None,
            "since": at(layout.since_ms) if adopted else None,
            "draining": [{"shards": k, "until": at(until)} for k, until in sorted(layout.draining.items())],
            "legacy": layout.legacy if adopted else None, "waiting": _waiting(store, upper, held, fresh),
            "storedKeys": _stored_keys(store, held, fresh)}


def _stored_keys(store: Store, held: dict[str, Any] | None, fresh: bool) -> list[str] | None:
    if fresh:  # before its first scoring run: keyed with the shards configured
        settings: ScoringSettings = config_service.cached(store, config_domain.SCORING)
        return [str(k) for k in shard_domain.keys(settings.shards)]
    return Layout.from_doc(held).stored_keys()


def _waiting(store: Store, upper: dt.datetime, held: dict[str, Any] | None, fresh: bool) -> dict[str, int]:
    """Per key, the observations waiting up to ``upper`` (one count each): the keys with a scanner and
    those of the shards configured, not adopted yet (the legacy scanner's count includes the keyed
    observations it steps over)."""
    settings: ScoringSettings = config_service.cached(store, config_domain.SCORING)
    layouts = {settings.shards} | {shards for shards, _ in Layout.from_doc(held).layouts()}
    if fresh:
        layouts.discard(shard_domain.LEGACY)  # nothing unkeyed
    return {shard_domain.label(k): store.observations.backlog(store.observations.cursor(k), upper, k)
            for shards in sorted(layouts) for k in shard_domain.keys(shards)}


def _new_deployment(store: Store, held: dict[str, Any] | None) -> bool:
    """No layout adopted and no global cursor: nothing was scored by a version before keys, so every
    observation stored is keyed (a deployment that did has unstamped observations: the legacy layout)."""
    return held is None and store.observations.cursor(shard_domain.GLOBAL).received_at is None


def _stamping(doc: dict[str, Any] | None, at: Layout) -> dict[str, Any] | None:
    if doc is None:
        return None
    held = Layout.from_doc(doc)
    return {**doc, **held.stamping(at.stamped_after, at.legacy == "done", set(at.used)).to_doc()}


def _retired(doc: dict[str, Any] | None, shards: list[int]) -> dict[str, Any] | None:
    if doc is None:
        return None
    layout = Layout.from_doc(doc)
    for k in shards:
        layout = layout.retire(k)
    return {**doc, **layout.to_doc()}
