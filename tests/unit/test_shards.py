"""Scoring shards: stamping, layouts and their drain (domain/shards)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from opsloop.domain import config as config_domain
from opsloop.domain import shards
from opsloop.domain.shards import Layout


def test_every_observation_gets_a_key_and_keys_are_stable() -> None:
    assert shards.shard_of("abc", 1) == "1-0"  # one shard too: every query over receivedAt names a key
    assert shards.keys(1) == ["1-0"]
    assert shards.keys(shards.LEGACY) == [shards.GLOBAL]  # the unstamped observations of earlier versions
    assert shards.shard_of("abc", 4) == shards.shard_of("abc", 4)  # a retried insert lands in the same shard
    assert shards.keys(3) == ["3-0", "3-1", "3-2"]
    assert [shards.layout_of(k) for k in ("4-3", "1-0", shards.MIGRATED, None, "x", 7)] == [4, 1, 0, None, None, None]


def test_ids_spread_evenly_over_the_shards() -> None:
    counts = Counter(shards.shard_of(uuid.uuid4().hex, 4) for _ in range(8000))
    assert set(counts) == set(shards.keys(4))
    assert all(1700 < n < 2300 for n in counts.values()), counts


def test_a_change_drains_the_old_layout_until_the_grace_ends() -> None:
    layout = Layout(1, 0, {}, frozenset({1}), "none").adopt(4, now_ms=1_000, grace_ms=500)
    assert (layout.current, layout.since_ms, layout.draining, layout.used) == (4, 1_000, {1: 1_500}, {1, 4})
    assert layout.layouts() == [(4, None), (1, 1_500)]
    assert layout.adopt(4, 2_000, 500) is layout  # unchanged
    again = layout.adopt(2, 2_000, 500)
    assert again.layouts() == [(2, None), (1, 1_500), (4, 2_500)]
    back = again.adopt(4, 3_000, 500)  # adopted again while it drained: current, not draining
    assert back.layouts() == [(4, None), (1, 1_500), (2, 3_500)]
    assert back.retire(1).retire(2).layouts() == [(4, None)]
    assert back.retire(1).retire(2).stored_keys() == ["1-0", "2-0", "2-1", "4-0", "4-1", "4-2", "4-3"]


def test_the_legacy_layout_drains_then_its_observations_are_stamped() -> None:
    layout = Layout().adopt(1, 1_000, 500)  # a deployment of a version that stamped nothing with one shard
    assert layout.layouts() == [(1, None), (shards.LEGACY, 1_500)] and layout.multi
    assert layout.stored_keys() is None  # unstamped observations: readers read them without a key
    stamping = layout.retire(shards.LEGACY)
    assert (stamping.legacy, stamping.multi, stamping.stored_keys()) == ("stamping", False, None)
    halfway = stamping.stamping("obs-5", False, {4})  # saw observations of a layout retired long ago
    assert (halfway.legacy, halfway.stamped_after, halfway.used) == ("stamping", "obs-5", {1, 4})
    done = halfway.stamping("obs-9", True, set())
    assert done.stored_keys() == [shards.MIGRATED, "1-0", "4-0", "4-1", "4-2", "4-3"]


def test_layout_round_trips_through_its_document() -> None:
    layout = Layout().adopt(4, 1_000, 500).adopt(8, 2_000, 500)
    assert Layout.from_doc(layout.to_doc()) == layout
    assert Layout.from_doc(None) == Layout()
    done = layout.retire(shards.LEGACY).stamping("a", True, {2})
    assert Layout.from_doc(done.to_doc()) == done


def test_a_layout_document_of_the_version_before_reads_its_one_shard_as_the_legacy_layout() -> None:
    old = Layout.from_doc({"current": 1, "sinceMs": 5, "draining": {"4": 9}})
    assert (old.current, old.draining, old.used, old.legacy) == (shards.LEGACY, {4: 9}, {4}, "draining")
    sharded = Layout.from_doc({"current": 4, "sinceMs": 5, "draining": {}})  # its legacy layout retired
    assert (sharded.current, sharded.legacy) == (4, "stamping")


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
