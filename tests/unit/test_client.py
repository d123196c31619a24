"""opsloop.client.PolicyClient with an in-memory reader: assignment, caching, unknown policies."""

from __future__ import annotations

from typing import Any

import pytest

from opsloop.client import PolicyClient, Router
from opsloop.domain.errors import NotFound
from opsloop.domain.policy import Head, Rollout


class Reader:
    def __init__(self) -> None:
        self.heads = {"autoscaler-core": Head("autoscaler-core", active="1.0.0", seq=2,
                                              rollout=Rollout("r1", "1.0.1", "1.0.0", "canary", 0.5, 0, 0))}
        self.versions = {"autoscaler-core@1.0.0": {"kind": "params", "params": {"targetCpu": 0.6}},
                         "autoscaler-core@1.0.1": {"kind": "params", "params": {"targetCpu": 0.7}}}
        self.reads = 0

    def head(self, policy_id: str) -> Head:
        self.reads += 1
        return self.heads.get(policy_id, Head(policy_id))

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.versions.get(f"{policy_id}@{version}")


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_assignments_carry_each_arm_s_params_and_are_cached() -> None:
    reader, clock = Reader(), Clock()
    client = PolicyClient(reader, ttl_s=60, clock=clock)
    got = [client.assign(f"r-{i}", "autoscaler-core") for i in range(400)]
    assert {a.arm for a in got} == {"champion", "challenger"}
    for a in got:
        assert a.params == {"targetCpu": 0.7 if a.arm == "challenger" else 0.6} and a.propensity == 0.5
        assert a.kind == "params" and a.policy_version == f"autoscaler-core@{a.version}"
    assert reader.reads == 3  # one head, two versions
    clock.t = 61
    client.assign("r-0", "autoscaler-core")
    assert reader.reads == 4  # the head again after ttl_s; versions never change


def test_an_unknown_policy_is_not_found_and_remembered_for_ttl() -> None:
    reader, clock = Reader(), Clock()
    client = PolicyClient(reader, ttl_s=60, clock=clock)
    for _ in range(3):
        with pytest.raises(NotFound):
            client.assign("r-1", "nope")
    assert reader.reads == 1


def test_a_router_is_a_policy_client_that_picks_a_model() -> None:
    reader = Reader()
    reader.heads["router-core"] = Head("router-core", active="1.0.0")
    reader.versions["router-core@1.0.0"] = {"params": {"modelWeights": {"gpt-5": 1.0, "gemini": 0.0}}}
    call = Router(reader, ttl_s=60).route("r-1", "router-core")
    assert call.model == "gpt-5" and call.model_propensity == 1.0 and call.arm is None
