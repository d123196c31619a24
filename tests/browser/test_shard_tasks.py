"""Scoring shards through Cloud Tasks on the emulator suite: scoreObservations enqueues one task per shard
on the scoreShard queue (firebase-tools' Cloud Tasks emulator), which calls the scoreShard function,
which scores its shard; as deployed, with nothing scored in the scheduled run itself."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scripts import suite as suite_mod
from tests.browser.test_console import suite_env

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def suite() -> Iterator[suite_mod.Suite]:
    s = suite_mod.start_suite(free=True, env={"OPSLOOP_CONFIG_CACHE_S": "0"})
    try:
        yield s
    finally:
        s.stop()


def test_a_scheduled_run_hands_each_shard_to_the_task_queue_and_the_workers_score_them(
    suite: suite_mod.Suite,
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from opsloop.domain import shards
    from opsloop.services.record import record_batch
    from opsloop.services.seed import load_seed
    from opsloop.store.firestore_store import FirestoreStore

    with suite_env(suite):
        db = firestore.Client(project=suite_mod.PROJECT, credentials=AnonymousCredentials())
    store = FirestoreStore(db)
    load_seed(store, suite_mod.ROOT / "seed")
    store.configs.set("scoring", {"safetyMarginMs": 0, "shards": 3})
    now = dt.datetime.now(dt.UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what the scheduler's header carries
    ts = int(now.timestamp() * 1000) - 10 * 60_000
    items: list[dict[str, Any]] = [{"component": f"svc:{i % 4}", "outcome": "success", "durationMs": 200 + i,
                                    "costUsd": 0.01, "ts": ts + i} for i in range(90)]
    record_batch(store, {"observations": items})
    assert {d.to_dict().get("shard") for d in db.collection("ops_observations").stream()} == set(shards.keys(3))

    assert suite.trigger("scoreObservations", now)["status"] == 200
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (store.count("ops_rewards") < 90
                                           or suite.log.read_text(errors="replace").count("scoreShard finished") < 3):
        time.sleep(0.5)
    assert store.count("ops_rewards") == 90
    log = suite.log.read_text(errors="replace")
    assert log.count("scoreShard finished") >= 3, log[-3000:]
    # the run handed every shard to the queue and scored none itself
    runs = [json.loads(line.split(">", 1)[1]) for line in log.splitlines()
            if '"message": "scoreObservations finished"' in line]
    ours = [run for run in runs if run["scheduleTime"] == round(now.timestamp() * 1000)]
    assert [sorted(run["dispatched"]) for run in ours] == [shards.keys(3)], log[-3000:]
    assert "could not enqueue" not in log
    for key in shards.keys(3):  # each shard's cursor moved: its worker scored it
        assert store.observations.cursor(key).received_at is not None
    # the next scheduled run's stats count what the workers scored
    assert suite.trigger("scoreObservations", now + dt.timedelta(seconds=1))["status"] == 200
    stats = db.collection("ops_stats").document("svc:0~1h").get().to_dict() or {}
    assert stats.get("n") == 23
