"""Scoring shards through the served functions: scoreObservations scores them (inline here, no task
queue), and the scoreShard task worker scores the shard a task names and refuses a malformed task."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests

from opsloop.domain import shards as shard_domain
from opsloop.store import paths
from opsloop.store.client import get_db
from opsloop.store.firestore_store import FirestoreStore
from tests.e2e.test_functions_http import trigger
from tests.emulator.test_scoring import ingest, make_batch

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]


def task(server: str, data: Any) -> requests.Response:
    """POST the way Cloud Tasks delivers a task to a task-queue function."""
    return requests.post(f"{server}/scoreShard", json={"data": data}, timeout=120)


def test_scheduled_run_scores_every_shard_and_a_task_scores_its_shard(server: str, seeded: Any) -> None:
    seeded.configs.set("scoring", {"safetyMarginMs": 0, "shards": 2})
    fresh = FirestoreStore(get_db())  # a newly started recordObservation instance: it reads shards = 2
    ingest(fresh, make_batch(60, seed=11, components=2))
    r = trigger(server, "scoreObservations", dt.datetime.now(dt.UTC))
    assert r.status_code in (200, 204), r.text
    assert seeded.count(paths.REWARDS) == 60
    for key in shard_domain.keys(2):
        assert fresh.observations.cursor(key).received_at is not None

    ingest(fresh, make_batch(40, seed=12, components=2))
    done = [task(server, {"shard": key, "capMs": None, "scheduleTime": 0}) for key in shard_domain.keys(2)]
    assert all(r.status_code == 200 for r in done), [r.text for r in done]
    assert sum(r.json()["result"]["scored"] for r in done) == 40
    assert seeded.count(paths.REWARDS) == 100


@pytest.mark.parametrize("data", [{}, {"shard": "x"}, {"shard": "2-0", "capMs": "soon"}, {"shard": "0-1"}, "2-0"])
def test_a_malformed_task_is_refused_and_writes_nothing(server: str, seeded: Any, data: Any) -> None:
    r = task(server, data)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert seeded.count(paths.REWARDS) == 0 and seeded.runs.get("lease-score~2-0") is None
