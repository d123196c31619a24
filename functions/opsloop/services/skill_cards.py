"""Refreshing ``ops_skill_cards`` from the scoring run's window summaries (``scoreObservations``).

One card per component (strengths, weaknesses, failure modes, 7/30-day reward trends, policy versions
seen) and one per router policy (its best model, the versions in use). Cards are refreshed once per
hour of schedule time: the window summaries come free from the stats refresh, and the daily series
for trends costs one query per component.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..domain import skill_card, windows
from ..domain.generations import Generations
from ..domain.stats import Summary
from .ports import Store

REFRESH_EVERY_MS = windows.HOUR_MS
TREND_DAYS = 30


def due(last_ms: int | None, schedule_ms: int) -> bool:
    """Whether the cards are stale: never refreshed, or an hour boundary passed since they were.

    A replay of an older schedule time is never due, so it cannot overwrite newer cards.
    """
    if last_ms is None:
        return True
    return windows.window_end(schedule_ms) // REFRESH_EVERY_MS > windows.window_end(last_ms) // REFRESH_EVERY_MS


def card_id(component: str | None = None, policy: str | None = None) -> str:
    """Components cannot contain ``~``, so a router policy's card never collides with a component's."""
    return f"policy~{policy}" if policy is not None else str(component)


def build_cards(
    store: Store,
    schedule_ms: int,
    summaries: dict[str, dict[str, Summary]],
    gens: Generations,
    s: skill_card.CardSettings,
) -> dict[str, dict[str, Any]]:
    """Every card for windows ending at ``schedule_ms``, keyed by card id (component or policy id)."""
    end = windows.window_end(schedule_ms)
    day_end = windows.bucket_start(end - 1, "1d") + windows.DAY_MS  # the day in progress counts
    comps = sorted(summaries)
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="opsloop-cards") as pool:  # one query each
        series = list(pool.map(lambda c: store.buckets.series(
            gens.read_key(c), "1d", day_end - TREND_DAYS * windows.DAY_MS, day_end), comps))
    cards: dict[str, dict[str, Any]] = {}
    for comp, daily in zip(comps, series, strict=True):
        cards[card_id(comp)] = skill_card.component_card(comp, summaries[comp], daily, gens.config(comp), s,
                                                         end)
    for policy in store.policies.with_status("active"):
        weights = (policy.get("params") or {}).get("modelWeights")
        if not isinstance(weights, dict) or not weights:
            continue
        policy_id = str(policy["id"])
        head = store.policies.head(policy_id)
        models = {m: (summaries.get(f"router:{m}") or {}).get("24h") or Summary() for m in weights}
        rollout = None if head.rollout is None else head.rollout.to_doc()
        card = skill_card.router_card(policy_id, models, head.active, rollout,
                                      {m: float(w) for m, w in weights.items()}, s, end)
        cards[card_id(policy=policy_id)] = card
        for m in weights:  # each model's card names the router policy that governs it
            if f"router:{m}" in cards:
                cards[f"router:{m}"]["governedBy"] = {"policy": policy_id, "activeVersion": head.active,
                                                      "weight": round(float(weights[m]), 6)}
    return cards


def is_due(store: Store, schedule_ms: int) -> bool:
    """Whether a run at ``schedule_ms`` refreshes the cards (one read)."""
    return due(windows.trusted_marker(store.cards.refreshed_for(), windows.ms(dt.datetime.now(dt.UTC))), schedule_ms)


def refresh_if_due(
    store: Store,
    schedule_ms: int,
    summaries: dict[str, dict[str, Summary]],
    gens: Generations,
    settings: skill_card.CardSettings,
    force: bool = False,
) -> int:
    """Refresh every card when due (or ``force``: the caller checked ``is_due``); returns how many were
    written."""
    if not force and not is_due(store, schedule_ms):
        return 0
    return store.cards.write(build_cards(store, schedule_ms, summaries, gens, settings), schedule_ms)
