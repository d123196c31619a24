"""The scoring shards in use (``ops_runs/shard-layout``) and which of their keys a run scores.

See ``domain/shards`` for the layout and how a change of ``config/scoring.shards`` is drained.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..domain import shards as shard_domain
from ..domain.config import ScoringSettings
from ..domain.shards import Job, Layout
from ..domain.windows import ms
from ..store import paths
from . import config as config_service
from .ports import Store


def grace_ms(settings: ScoringSettings) -> int:
    """How long after adopting a layout an observation may still be stamped with the one before: the
    lifetime of ingestion's config cache, the scorer's safety margin, and a second of clock skew."""
    return int(config_service.CACHE_TTL_S * 1000) + settings.safety_margin_ms + 1000


def adopt(store: Store, settings: ScoringSettings, now: dt.datetime) -> tuple[Layout, bool]:
    """The layout after adopting ``settings.shards`` (one read; one transaction when it changes), and
    whether scoring has ever had shards (then reward generations take a time boundary)."""
    held = store.runs.get(paths.SHARD_LAYOUT_DOC)
    layout = Layout.from_doc(held)
    if held is None and settings.shards == 1:
        return layout, False
    if layout.current == settings.shards and held is not None:
        return layout, bool(held.get("everSharded"))

    def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        before = Layout.from_doc(doc)
        after = before.adopt(settings.shards, ms(now), grace_ms(settings))
        ever = bool((doc or {}).get("everSharded")) or after.current > 1 or bool(after.draining)
        return {**after.to_doc(), "everSharded": ever}

    stored = store.runs.change(paths.SHARD_LAYOUT_DOC, change) or {}
    return Layout.from_doc(stored), bool(stored.get("everSharded"))


def plan(store: Store, layout: Layout, upper: dt.datetime) -> list[Job]:
    """The keys with observations waiting (one single-document query each); a draining layout whose keys
    are all scored up to its end (which is behind ``upper``) is retired instead."""
    if layout.current == 1 and not layout.draining:  # one global scanner, as before shards: no query
        return [Job(None, upper, None)]
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


def _retired(doc: dict[str, Any] | None, shards: list[int]) -> dict[str, Any] | None:
    if doc is None:
        return None
    layout = Layout.from_doc(doc)
    for k in shards:
        layout = layout.retire(k)
    return {**doc, **layout.to_doc()}
