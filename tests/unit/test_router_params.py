"""The router policy's own parameters (issue 16 part 3): fallbackOn, cooldownMs/allowedFails, maxCostUsd,
their schema, and that what a Router logs is the probability each request really had."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from opsloop.client import Router
from opsloop.domain import kinds
from opsloop.domain.cooldown import Cooldowns
from opsloop.domain.errors import InvalidArgument
from opsloop.domain.policy import Head

WEIGHTS = {"gpt-5": 0.5, "gemini": 0.3, "claude": 0.2}


class Reader:
    def __init__(self, params: dict[str, Any], costs: dict[str, float] | None = None) -> None:
        self.params = params
        self.costs = costs or {}
        self.cost_reads = 0

    def head(self, policy_id: str) -> Head:
        return Head(policy_id, active="1.0.0")

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None:
        return {"params": self.params}

    def expected_costs(self, models: list[str]) -> dict[str, float]:
        self.cost_reads += 1
        return {m: c for m, c in self.costs.items() if m in models}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def router(clock: Clock | None = None, costs: dict[str, float] | None = None, **params: Any) -> Router:
    return Router(Reader({"modelWeights": WEIGHTS, **params}, costs), ttl_s=60, clock=clock or Clock())


@pytest.mark.parametrize(("params", "field"), [
    ({"fallbackOn": ["timeout", "overloaded"]}, "params.fallbackOn"),
    ({"fallbackOn": "timeout"}, "params.fallbackOn"),
    ({"fallbackOn": ["success"]}, "params.fallbackOn"),
    ({"cooldownMs": -1}, "params.cooldownMs"),
    ({"cooldownMs": "30s"}, "params.cooldownMs"),
    ({"maxCostUsd": 0}, "params.maxCostUsd"),
    ({"maxCostUsd": -0.5}, "params.maxCostUsd"),
    ({"latencyTargetMs": 0}, "params.latencyTargetMs"),
    ({"allowedFails": 0}, "params.allowedFails"),
    ({"maxFallbacks": -1}, "params.maxFallbacks"),
])
def test_bad_router_settings_are_refused_with_the_field_named(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        kinds.validate({"id": "router-core", "version": "1.0.1", "params": {"modelWeights": WEIGHTS, **params}})
    assert err.value.details["field"] == field and field in err.value.message


def test_an_unknown_fallback_outcome_is_named_in_the_message() -> None:
    with pytest.raises(InvalidArgument, match="'overloaded' is not an outcome to fall back on"):
        kinds.validate({"params": {"modelWeights": WEIGHTS, "fallbackOn": ["timeout", "overloaded"]}})


def test_the_fallback_chain_is_deterministic_per_request_and_tries_each_model_once() -> None:
    chains = []
    for _ in range(2):  # two processes
        r = router(fallbackOn=["timeout", "rate_limit"])
        call = r.route("req-42", "router-core")
        chain = []
        while call is not None:
            chain.append((call.model, call.attempt, call.fallback_of))
            call = r.next(call, "timeout")
        chains.append(chain)
    assert chains[0] == chains[1]
    assert sorted(m for m, _, _ in chains[0]) == sorted(WEIGHTS)
    assert [a for _, a, _ in chains[0]] == [0, 1, 2]
    assert chains[0][0][2] is None and chains[0][1][2] == chains[0][0][0] and chains[0][2][2] == chains[0][1][0]
    firsts = {router(fallbackOn=["timeout"]).route(f"req-{i}", "router-core").model for i in range(50)}
    assert firsts == set(WEIGHTS)  # different requests, different chains


def test_no_fallback_on_success_or_on_an_outcome_not_listed_and_at_most_max_fallbacks() -> None:
    r = router(fallbackOn=["timeout"], maxFallbacks=1)
    call = r.route("req-1", "router-core")
    assert r.next(call, "success") is None
    assert r.next(call, "failure") is None  # not in fallbackOn
    second = r.next(call, "timeout")
    assert second is not None and second.model != call.model
    assert r.next(second, "timeout") is None  # maxFallbacks reached
    assert router().next(call, "timeout") is None  # no fallbackOn: no fallback


def test_each_try_is_reported_with_its_own_outcome_and_fallback_of() -> None:
    r = router(fallbackOn=["rate_limit"])
    first = r.route("req-7", "router-core")
    second = r.next(first, "rate_limit")
    assert second is not None
    a = first.observation(outcome="rate_limit", durationMs=12.0)
    b = second.observation(outcome="success", durationMs=40.0, meta={"tenant": "t1"})
    assert a == {"policyVersion": "router-core@1.0.0", "component": f"router:{first.model}", "outcome": "rate_limit",
                 "durationMs": 12.0, "propensity": first.model_propensity}
    assert b["component"] == f"router:{second.model}" and b["outcome"] == "success" and "propensity" not in b
    assert b["meta"] == {"tenant": "t1", "fallbackOf": first.model, "attempt": 1,
                         "fallbackPropensity": second.model_propensity}
    others = {m: w for m, w in WEIGHTS.items() if m != first.model}
    assert second.model_propensity == pytest.approx(others[second.model or ""] / sum(others.values()))


def test_a_model_failing_allowed_fails_times_in_a_minute_cools_down_then_is_probed() -> None:
    clock = Clock()
    r = router(clock, cooldownMs=30_000, allowedFails=3)
    call = next(c for i in range(100) if (c := r.route(f"x-{i}", "router-core")).model == "gpt-5")
    for _ in range(2):
        r.next(call, "failure")
        clock.t += 25  # two failures 25 s apart, then the third 50 s after the first: inside a minute
    assert {s.model: s for s in r.status("router-core")}["gpt-5"].state == "ok"
    r.next(call, "timeout")
    status = {s.model: s for s in r.status("router-core")}
    assert status["gpt-5"].state == "cooling" and status["gpt-5"].recent_failures == 3
    assert status["gpt-5"].cooldown_ends_in_ms == 30_000 and status["gpt-5"].weight == 0.5
    picks = Counter(r.route(f"req-{i}", "router-core").model for i in range(600))
    assert picks["gpt-5"] == 0 and set(picks) == {"gemini", "claude"}
    clock.t += 30.001  # cooldown over: probed
    assert {s.model: s for s in r.status("router-core")}["gpt-5"].state == "probing"
    assert "gpt-5" in {r.route(f"req-{i}", "router-core").model for i in range(100)}
    r.next(call, "failure")  # the probe fails: straight back, without three more failures
    assert {s.model: s for s in r.status("router-core")}["gpt-5"].state == "cooling"
    clock.t += 31
    r.next(call, "success")  # a success resets its count
    gpt = {s.model: s for s in r.status("router-core")}["gpt-5"]
    assert gpt.state == "ok" and gpt.recent_failures == 0


def test_failures_spread_over_more_than_a_minute_do_not_cool_a_model() -> None:
    cooldowns = Cooldowns()
    for i in range(10):
        cooldowns.record("gpt-5", False, i * 31_000.0, allowed_fails=3, cooldown_ms=30_000)
    assert cooldowns.cooling(10 * 31_000.0) == {}
    cooldowns.record("gpt-5", False, 0.0, allowed_fails=1, cooldown_ms=0)  # cooldownMs 0: never cools
    assert cooldowns.cooling(1.0) == {}


def test_a_request_never_fails_for_cooldown_alone() -> None:
    clock = Clock()
    r = router(clock, cooldownMs=60_000, allowedFails=1)
    calls = {}
    for i in range(100):
        c = r.route(f"y-{i}", "router-core")
        calls.setdefault(c.model, c)
    for model in ("gemini", "gpt-5", "claude"):  # gemini's cooldown ends first
        r.next(calls[model], "failure")
        clock.t += 1
    assert {s.state for s in r.status("router-core")} == {"cooling"}
    for i in range(50):
        call = r.route(f"z-{i}", "router-core")
        assert call.model == "gemini" and call.model_propensity == 1.0


def test_models_over_max_cost_are_chosen_only_when_nothing_else_is_left() -> None:
    costs = {"gpt-5": 0.12, "gemini": 0.02, "claude": 0.05}
    r = router(costs=costs, maxCostUsd=0.09, fallbackOn=["timeout"])
    picks = Counter(r.route(f"req-{i}", "router-core").model for i in range(800))
    assert picks["gpt-5"] == 0 and picks["gemini"] > picks["claude"] > 0
    status = {s.model: s for s in r.status("router-core")}
    assert status["gpt-5"].over_budget and status["gpt-5"].expected_cost_usd == 0.12
    assert not status["gemini"].over_budget
    call = r.route("req-1", "router-core")
    chain = [call.model]
    while (call := r.next(call, "timeout")) is not None:  # type: ignore[arg-type]
        chain.append(call.model)
    assert chain[-1] == "gpt-5" and len(chain) == 3  # the expensive one only once the others were tried
    everything_dear = router(costs={m: 1.0 for m in WEIGHTS}, maxCostUsd=0.09)
    assert everything_dear.route("req-1", "router-core").model in WEIGHTS
    reader = r._store
    assert isinstance(reader, Reader) and reader.cost_reads == 1  # cached for cost_ttl_s


def test_the_logged_propensity_is_the_probability_the_request_had() -> None:
    clock = Clock()
    r = router(clock, cooldownMs=600_000, allowedFails=1)
    first = next(c for i in range(100) if (c := r.route(f"w-{i}", "router-core")).model == "gpt-5")
    r.next(first, "failure")  # gpt-5 cools: the others share its traffic
    n = 6000
    calls = [r.route(f"p-{i}", "router-core") for i in range(n)]
    seen = Counter(c.model for c in calls)
    logged = {c.model: c.model_propensity for c in calls}
    assert logged == {"gemini": pytest.approx(0.6), "claude": pytest.approx(0.4)}
    for model, p in logged.items():
        assert abs(seen[model] / n - (p or 0)) < 0.025  # ~4 standard errors


def test_a_stored_version_with_bad_settings_still_routes_by_its_weights(caplog: pytest.LogCaptureFixture) -> None:
    r = router(fallbackOn=["overloaded"], cooldownMs=-5)  # written around the schema (e.g. by hand)
    call = r.route("req-1", "router-core")
    assert call.model in WEIGHTS and r.next(call, "timeout") is None
    assert "bad router settings" in caplog.text and "routing by its weights alone" in caplog.text


def test_a_success_while_cooling_does_not_end_the_cooldown() -> None:
    cooldowns = Cooldowns()
    for t in (0.0, 1.0, 2.0):
        cooldowns.record("gpt-5", False, t, allowed_fails=3, cooldown_ms=30_000)
    cooldowns.record("gpt-5", True, 5.0, allowed_fails=3, cooldown_ms=30_000)  # a call that was in flight
    assert cooldowns.cooling(6.0) == {"gpt-5": 30_002.0}
    assert cooldowns.health("gpt-5", 6.0).recent_failures == 0
    cooldowns.record("gpt-5", True, 30_003.0, allowed_fails=3, cooldown_ms=30_000)  # the probe succeeds
    assert cooldowns.health("gpt-5", 30_004.0).state == "ok"
