"""A scoring run refreshes the stats of components with new data and of those whose windows change
without it (a bucket leaves, a future-stamped one enters): what readers see equals a full recompute."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from opsloop.services import generations, scoring
from opsloop.store import paths
from opsloop.store.firestore_store import FirestoreStore
from tests.emulator.test_scoring import ingest

pytestmark = pytest.mark.emulator

FIGURES = ("n", "avgReward", "successRate", "p95Latency", "avgCostUsd", "series")
FIVE_MIN = 5 * 60_000


def at(ms_: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms_ / 1000, dt.UTC)


def obs(component: str, ts: int, ok: bool = True) -> dict[str, Any]:
    return {"component": component, "outcome": "success" if ok else "failure", "durationMs": 300,
            "costUsd": 0.01, "ts": ts}


def last_mark() -> int:
    """The start of the last full hour but one: the runs' schedule times step from it, stay in the past and
    in that hour (crossing an hour makes the skill cards due, and with them a refresh of every component)."""
    hour = 60 * 60_000
    return (int(dt.datetime.now(dt.UTC).timestamp() * 1000) // hour) * hour - hour


def full_recompute(store: FirestoreStore, schedule_ms: int) -> dict[str, dict[str, Any]]:
    gens = generations.current(store)
    return scoring.stats_docs(scoring.window_summaries(store, schedule_ms, gens), schedule_ms, gens)


def assert_readers_see_a_full_recompute(store: FirestoreStore, schedule_ms: int) -> None:
    stored = {s.id: s.to_dict() or {} for s in store.db.collection(paths.STATS).stream()}
    for sid, want in full_recompute(store, schedule_ms).items():
        got = stored.get(sid)
        assert got is not None, sid
        for name in FIGURES:
            assert got.get(name) == want.get(name), (sid, name, got.get(name), want.get(name))


@pytest.fixture()
def quiet(seeded: FirestoreStore) -> tuple[FirestoreStore, int]:
    """12 components with data 40 minutes before a 5-minute mark; their first stats run (a full one)."""
    base = last_mark()
    ingest(seeded, [obs(f"svc:c{i}", base - 40 * 60_000 + i * 1000, ok=i % 3 > 0) for i in range(12)])
    first = scoring.score_observations(seeded, at(base))
    assert first.stats_full and len(first.stats) == 36
    return seeded, base


def test_a_run_refreshes_only_the_components_with_new_data(quiet: tuple[FirestoreStore, int]) -> None:
    store, base = quiet
    ingest(store, [obs("svc:c1", base + 60_000), obs("svc:c7", base + 90_000, ok=False)])
    run = scoring.score_observations(store, at(base + FIVE_MIN))
    assert not run.stats_full
    assert sorted({d["component"] for d in run.stats.values()}) == ["svc:c1", "svc:c7"]
    assert run.stats["svc:c7~1h"]["n"] == 2
    assert_readers_see_a_full_recompute(store, base + FIVE_MIN)
    nothing = scoring.score_observations(store, at(base + 2 * FIVE_MIN))
    assert nothing.stats == {}  # nothing new, nothing leaves a window yet: no bucket is read


def test_a_component_whose_data_leaves_a_window_is_refreshed_then(quiet: tuple[FirestoreStore, int]) -> None:
    store, base = quiet
    # the 40-minute-old data leaves the 1h window 25 minutes later (its 5-minute bucket + 1 h)
    for step in range(1, 7):
        when = base + step * FIVE_MIN
        run = scoring.score_observations(store, at(when))
        refreshed = {d["component"] for d in run.stats.values()}
        assert (refreshed == {f"svc:c{i}" for i in range(12)}) == (step == 5), (step, sorted(refreshed))
        assert_readers_see_a_full_recompute(store, when)
    assert store.db.collection(paths.STATS).document("svc:c0~1h").get().to_dict()["n"] == 0
    assert store.db.collection(paths.STATS).document("svc:c0~24h").get().to_dict()["n"] == 1


def test_a_future_stamped_observation_is_counted_when_its_window_reaches_it(
    quiet: tuple[FirestoreStore, int],
) -> None:
    store, base = quiet
    ingest(store, [obs("svc:late", base + 12 * 60_000)])  # stamped 12 minutes ahead of the run
    run = scoring.score_observations(store, at(base))
    assert run.stats["svc:late~1h"]["n"] == 0
    for step in (1, 2):  # nothing new arrives; its bucket [base+10m, base+15m) enters at base+15m
        when = base + step * FIVE_MIN
        scoring.score_observations(store, at(when))
    run = scoring.score_observations(store, at(base + 3 * FIVE_MIN))
    assert run.stats["svc:late~1h"]["n"] == 1
    assert_readers_see_a_full_recompute(store, base + 3 * FIVE_MIN)


def test_late_feedback_refreshes_its_component(seeded: FirestoreStore) -> None:
    from opsloop.services import feedback
    from tests.emulator.test_feedback import QUALITY

    seeded.configs.set("reward_config", QUALITY, merge=False)
    base = last_mark()
    ingest(seeded, [{**obs(f"router:m{i}", base - 20 * 60_000), "id": f"o{i}"} for i in range(4)])
    scoring.score_observations(seeded, at(base))
    got = feedback.record_feedback(seeded, {"feedback": [{"id": "f1", "observationId": "o2",
                                                          "metrics": {"judge": 9}}]})
    assert got.corrected == 1
    run = scoring.score_observations(seeded, at(base + FIVE_MIN))
    assert sorted(run.stats) == ["router:m2~1h", "router:m2~24h", "router:m2~7d"]
    assert_readers_see_a_full_recompute(seeded, base + FIVE_MIN)


def test_a_replay_of_an_older_schedule_time_refreshes_all_and_moves_nothing(
    quiet: tuple[FirestoreStore, int],
) -> None:
    store, base = quiet
    scoring.score_observations(store, at(base + FIVE_MIN))
    state = store.runs.get(paths.STATS_RUN_DOC) or {}
    replay = scoring.score_observations(store, at(base))  # an older schedule time, e.g. `opsloop score --at`
    assert replay.stats_full and len(replay.stats) == 36
    assert store.runs.get(paths.STATS_RUN_DOC) == state  # the next run still counts changes from the same mark
