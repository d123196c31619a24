"""Skill cards refreshed by the scoring schedule, against the real emulator."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from opsloop.services import scoring, skill_cards
from opsloop.services.record import record_batch
from opsloop.store.firestore_store import FirestoreStore

pytestmark = pytest.mark.emulator

DAY = 86_400_000
# A schedule time on the hour, so the refresh is due; "today" is the day before it.
SCHEDULE = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
SCHEDULE_MS = int(SCHEDULE.timestamp() * 1000)
TODAY_MS = (SCHEDULE_MS - 1) // DAY * DAY
SMALL = scoring.ScoringSettings(chunk_size=200, safety_margin_ms=0)


def ingest(store: FirestoreStore, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})


def history(days: int, per_day: int, improving: bool, seed: int = 1) -> list[dict[str, Any]]:
    """``router:gemini``: fast, cheap, reliable, and getting faster by the day when ``improving``.
    ``router:gpt-5``: slow with outliers, expensive, fails with two error codes.
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for d in range(days):
        day_ts = TODAY_MS - (days - 1 - d) * DAY  # the last day is today (in progress), as trends count it
        for i in range(per_day):
            latency = 3000 - (2500 * d / max(days - 1, 1) if improving else 0)
            out.append({"component": "router:gemini", "outcome": "success", "durationMs": latency + rng.uniform(0, 50),
                        "costUsd": 0.01, "ts": day_ts + i, "policyVersion": "router-core@1.0.0"})
            failed = i % 4 == 0
            out.append({"component": "router:gpt-5", "outcome": "timeout" if failed and i % 8 == 0 else
                        ("failure" if failed else "success"),
                        "errorCode": ("UPSTREAM_503" if i % 8 else None) if failed else None,
                        "durationMs": 20_000 if i % 10 == 0 else 900 + rng.uniform(0, 100),
                        "costUsd": 0.15, "ts": day_ts + i, "policyVersion": "router-core@1.0.0"})
    return [{k: v for k, v in o.items() if v is not None} for o in out]


def test_cards_judge_strengths_weaknesses_failure_modes_and_trends(seeded: FirestoreStore) -> None:
    ingest(seeded, history(days=30, per_day=60, improving=True))
    result = scoring.score_observations(seeded, SCHEDULE, settings=SMALL)
    assert result.cards_written >= 3

    good = seeded.cards.get("router:gemini")
    assert good is not None and good["judged"] is True
    assert {s["code"] for s in good["strengths"]} >= {"high_success_rate", "within_cost_budget",
                                                       "within_latency_budget"}
    assert good["weaknesses"] == []
    assert good["failureModes"] == []
    assert good["trends"]["30d"]["direction"] == "up" and good["trends"]["30d"]["slopePerDay"] > 0
    assert good["trends"]["30d"]["points"] == 30 and good["trends"]["7d"]["points"] == 7
    assert good["policyVersions"] == [{"version": "router-core@1.0.0", "share": 1.0}]
    assert good["governedBy"]["policy"] == "router-core"

    bad = seeded.cards.get("router:gpt-5")
    assert bad is not None and bad["judged"] is True
    codes = {w["code"] for w in bad["weaknesses"]}
    assert {"low_success_rate", "over_cost_budget", "latency_outliers", "below_min_acceptable"} <= codes
    assert bad["strengths"] == []
    modes = {m["code"]: m for m in bad["failureModes7d"]}
    # 60 a day: 15 failures, of which i % 8 == 0 (8 of them) are timeouts without a code
    assert set(modes) == {"UPSTREAM_503", "timeout"}
    assert modes["timeout"]["count"] == 8 * 7 and modes["UPSTREAM_503"]["count"] == 7 * 7
    assert bad["trends"]["30d"]["direction"] == "flat"

    router = seeded.cards.get("policy~router-core")
    assert router is not None and router["kind"] == "router"
    assert router["activeVersion"] == "1.0.0"
    assert router["bestModel"]["model"] == "gemini" and router["bestModel"]["clearWinner"] is True


def test_a_component_with_few_samples_is_not_judged(seeded: FirestoreStore) -> None:
    ingest(seeded, [{"component": "autoscaler", "outcome": "failure", "durationMs": 5, "ts": SCHEDULE_MS - 60_000}
                    for _ in range(5)])
    scoring.score_observations(seeded, SCHEDULE, settings=SMALL)
    card = seeded.cards.get("autoscaler")
    assert card is not None
    assert card["judged"] is False and card["strengths"] == [] and card["weaknesses"] == []
    assert "fewer than minSamples 50" in card["reason"]
    assert card["failureModes"] == [{"code": "failure", "count": 5, "share": 1.0}]  # counted even when not judged


def test_cards_refresh_once_per_hour_and_never_from_an_older_replay(seeded: FirestoreStore) -> None:
    ingest(seeded, [{"component": "autoscaler", "outcome": "success", "durationMs": 5, "ts": SCHEDULE_MS - 60_000}])
    first = scoring.score_observations(seeded, SCHEDULE, settings=SMALL)
    assert first.cards_written == 2  # the component's card and the seeded router policy's
    later = scoring.score_observations(seeded, SCHEDULE + dt.timedelta(minutes=5), settings=SMALL,
                                       now=SCHEDULE + dt.timedelta(minutes=5))
    assert later.cards_written == 0  # same hour: not due
    replay = scoring.score_observations(seeded, SCHEDULE - dt.timedelta(hours=2), settings=SMALL)
    assert replay.cards_written == 0
    assert seeded.cards.get("autoscaler")["ts"] == SCHEDULE_MS
    forced = scoring.score_observations(seeded, SCHEDULE + dt.timedelta(minutes=10), settings=SMALL,
                                        refresh_cards=True, now=SCHEDULE + dt.timedelta(minutes=10))
    assert forced.cards_written == 2
    next_hour = scoring.score_observations(seeded, SCHEDULE + dt.timedelta(hours=1), settings=SMALL,
                                           now=SCHEDULE + dt.timedelta(hours=1))
    assert next_hour.cards_written == 2
    assert skill_cards.due(SCHEDULE_MS, SCHEDULE_MS + 3_600_000) and not skill_cards.due(SCHEDULE_MS, SCHEDULE_MS)


@pytest.mark.parametrize(("config", "field"), [({"lowSuccess": 0.99, "highSuccess": 0.5}, ""),
                                             ({"minSamples": None}, "minSamples")])
def test_a_bad_card_config_is_reported_and_the_last_good_one_is_used(seeded: FirestoreStore, config: dict[str, Any],
                                                                     field: str) -> None:
    seeded.configs.set("skill_cards", {"minSamples": 1}, merge=False)
    ingest(seeded, [{"component": "autoscaler", "outcome": "success", "durationMs": 5, "ts": SCHEDULE_MS - 60_000}])
    scoring.score_observations(seeded, SCHEDULE - dt.timedelta(hours=1), settings=SMALL)  # a good config, kept
    seeded.configs.set("skill_cards", config, merge=False)
    result = scoring.score_observations(seeded, SCHEDULE, settings=SMALL)
    assert result.scored == 0 and result.stats_written == 3  # scored by the first run
    assert result.cards_written == 2 and result.cards_error is None
    assert len(result.config_errors) == 1 and result.config_errors[0].startswith("config/skill_cards")
    assert seeded.cards.get("autoscaler")["judged"]  # minSamples 1, the last good value, judged its 1 sample
    [alert] = [a for a in seeded.alerts.recent() if a.get("kind") == "config"]
    assert (alert["path"], alert["field"]) == ("config/skill_cards", field)
    run = seeded.db.collection("ops_runs").document(result.run_id).get().to_dict()
    assert run["status"] == "done" and run["configErrors"] == result.config_errors
