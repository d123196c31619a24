"""Scoring shards: stamping, layouts and their drain (domain/shards)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from opsloop.domain import config as config_domain
from opsloop.domain import shards
from opsloop.domain.shards import Layout


def test_one_shard_stamps_nothing_and_keys_are_stable() -> None:
    assert shards.shard_of("abc", 1) is None
    assert shards.keys(1) == [None]
    assert shards.shard_of("abc", 4) == shards.shard_of("abc", 4)  # a retried insert lands in the same shard
    assert shards.keys(3) == ["3-0", "3-1", "3-2"]


def test_ids_spread_evenly_over_the_shards() -> None:
    counts = Counter(shards.shard_of(uuid.uuid4().hex, 4) for _ in range(8000))
    assert set(counts) == set(shards.keys(4))
    assert all(1700 < n < 2300 for n in counts.values()), counts


def test_a_change_drains_the_old_layout_until_the_grace_ends() -> None:
    layout = Layout().adopt(4, now_ms=1_000, grace_ms=500)
    assert (layout.current, layout.since_ms, layout.draining) == (4, 1_000, {1: 1_500})
    assert layout.layouts() == [(4, None), (1, 1_500)]
    assert layout.adopt(4, 2_000, 500) is layout  # unchanged
    again = layout.adopt(2, 2_000, 500)
    assert again.layouts() == [(2, None), (1, 1_500), (4, 2_500)]
    back = again.adopt(4, 3_000, 500)  # adopted again while it drained: current, not draining
    assert back.layouts() == [(4, None), (1, 1_500), (2, 3_500)]
    assert back.retire(1).retire(2).layouts() == [(4, None)]


def test_layout_round_trips_through_its_document() -> None:
    layout = Layout().adopt(4, 1_000, 500).adopt(8, 2_000, 500)
    assert Layout.from_doc(layout.to_doc()) == layout
    assert Layout.from_doc(None) == Layout()


@pytest.mark.parametrize("bad", [0, -1, shards.MAX_SHARDS + 1, 2.5, "4", True])
def test_config_refuses_a_bad_shard_count(bad: object) -> None:
    with pytest.raises(config_domain.OpsError, match="shards"):
        config_domain.parse(config_domain.SCORING, {"shards": bad})


def test_config_takes_a_shard_count() -> None:
    assert config_domain.parse(config_domain.SCORING, {"shards": 4}).shards == 4
    assert config_domain.parse(config_domain.SCORING, {}).shards == 1


@pytest.mark.parametrize(("env", "mode"), [
    ({}, "inline"),
    ({"K_SERVICE": "scoreobservations"}, "tasks"),  # deployed
    ({"K_SERVICE": "x", "FUNCTIONS_EMULATOR": "true"}, "inline"),  # the functions emulator without a queue
    ({"CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9499"}, "tasks"),
    ({"K_SERVICE": "x", "OPSLOOP_SHARD_DISPATCH": "inline"}, "inline"),
    ({"OPSLOOP_SHARD_DISPATCH": "TASKS"}, "tasks"),
])
def test_shards_go_to_task_workers_when_deployed_or_asked(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                          mode: str) -> None:
    from opsloop.handlers import tasks

    for name in ("K_SERVICE", "FUNCTIONS_EMULATOR", "CLOUD_TASKS_EMULATOR_HOST", "OPSLOOP_SHARD_DISPATCH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tasks.dispatch_mode() == mode
    assert (tasks.dispatcher() is None) == (mode == "inline")
