"""Validation of reported observations (domain/observation.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from opsloop.domain.observation import (
    MAX_BATCH,
    MAX_FUTURE_SKEW_MS,
    MAX_META_BYTES,
    InvalidBatch,
    ObservationIn,
    parse_batch,
)

NOW = 1_717_200_000_000


def obs(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"component": "router:gpt-5", "outcome": "success", "durationMs": 812, "costUsd": 0.004}
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def errors_of(payload: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidBatch) as info:
        parse_batch(payload, NOW)
    assert info.value.errors, "InvalidBatch without errors"
    return [(e.field, e.message) for e in info.value.errors]


def fields_of(payload: Any) -> list[str]:
    return [f for f, _ in errors_of(payload)]


# --- valid -----------------------------------------------------------------------------------------------


def test_valid_single() -> None:
    [o] = parse_batch(obs(), NOW)
    assert isinstance(o, ObservationIn)
    assert (o.component, o.outcome, o.durationMs, o.costUsd) == ("router:gpt-5", "success", 812.0, 0.004)
    assert isinstance(o.durationMs, float)
    assert (o.id, o.ts, o.tokensIn, o.tokensOut, o.policyVersion, o.arm, o.meta) == (None, None, 0, 0, None,
                                                                                       None, None)


def test_valid_full_single() -> None:
    [o] = parse_batch(
        obs(id="req-1:a.b", ts=NOW - 1000, tokensIn=120, tokensOut=40, policyVersion="router-core@1.0.10",
            arm="challenger", errorCode="E_X", meta={"route": {"region": "eu", "tries": [1, 2]}}),
        NOW,
    )
    assert o.id == "req-1:a.b"
    assert o.policyVersion == "router-core@1.0.10"
    assert o.meta == {"route": {"region": "eu", "tries": [1, 2]}}


def test_valid_batch_keeps_order() -> None:
    items = [obs(id=f"o-{i}", durationMs=i, outcome=oc)
             for i, oc in enumerate(["success", "failure", "timeout", "rate_limit"])]
    parsed = parse_batch({"observations": items}, NOW)
    assert [o.id for o in parsed] == ["o-0", "o-1", "o-2", "o-3"]
    assert [o.outcome for o in parsed] == ["success", "failure", "timeout", "rate_limit"]


def test_batch_limits() -> None:
    assert len(parse_batch({"observations": [obs()] * MAX_BATCH}, NOW)) == 500
    assert MAX_BATCH == 500
    [(field, message)] = errors_of({"observations": [obs()] * (MAX_BATCH + 1)})
    assert field == "observations"
    assert "501" in message
    assert fields_of({"observations": []}) == ["observations"]
    assert fields_of({"observations": obs()}) == ["observations"]


def test_bad_envelopes() -> None:
    assert fields_of([obs()]) == [""]
    assert fields_of("hello") == [""]
    assert fields_of(None) == [""]
    assert fields_of({"observations": [obs()], "extra": 1}) == ["extra"]
    assert fields_of({"observations": [obs(), 5]}) == ["observations.1"]


# --- field errors -----------------------------------------------------------------------------------------


def test_errors_name_the_item_and_field() -> None:
    items = [obs(), obs(), obs(), obs(durationMs=-1)]
    assert fields_of({"observations": items}) == ["observations.3.durationMs"]
    assert fields_of(obs(durationMs=-1)) == ["durationMs"]


def test_every_error_of_every_item_is_reported() -> None:
    items = [obs(durationMs="x"), obs(), obs(outcome="ok", costUsd=-1.0), obs(component=...)]
    assert sorted(fields_of({"observations": items})) == [
        "observations.0.durationMs", "observations.2.costUsd", "observations.2.outcome",
        "observations.3.component",
    ]


@pytest.mark.parametrize("field", ["durationMs", "costUsd"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1, -0.001, True, False, "5", None, [1], {}])
def test_bad_numbers_rejected(field: str, bad: Any) -> None:
    assert fields_of(obs(**{field: bad})) == [field]


@pytest.mark.parametrize(("field", "bad"), [("durationMs", 86_400_001), ("costUsd", 1_000_001)])
def test_numbers_above_the_caps_rejected(field: str, bad: float) -> None:
    assert fields_of(obs(**{field: bad})) == [field]


@pytest.mark.parametrize("field", ["tokensIn", "tokensOut", "ts"])
@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_bad_integers_rejected(field: str, bad: Any) -> None:
    assert fields_of(obs(**{field: bad})) == [field]


def test_integer_numbers_are_accepted_as_floats() -> None:
    [o] = parse_batch(obs(durationMs=0, costUsd=1), NOW)
    assert (o.durationMs, o.costUsd) == (0.0, 1.0)


@pytest.mark.parametrize("bad", ["ok", "SUCCESS", "", "error", None, 1])
def test_unknown_outcome(bad: Any) -> None:
    assert fields_of(obs(outcome=bad)) == ["outcome"]


def test_missing_required_fields() -> None:
    assert sorted(fields_of({})) == ["component", "durationMs", "outcome"]


@pytest.mark.parametrize("extra", ["model", "duration_ms", "reward"])
def test_extra_field_rejected(extra: str) -> None:
    assert fields_of(obs(**{extra: 1})) == [extra]
    assert fields_of({"observations": [obs(), obs(**{extra: 1})]}) == [f"observations.1.{extra}"]


def test_arm_values() -> None:
    assert parse_batch(obs(arm="champion"), NOW)[0].arm == "champion"
    assert fields_of(obs(arm="control")) == ["arm"]


def test_error_code_length() -> None:
    assert parse_batch(obs(errorCode="E" * 128), NOW)[0].errorCode == "E" * 128
    assert fields_of(obs(errorCode="E" * 129)) == ["errorCode"]


# --- meta ------------------------------------------------------------------------------------------------


def test_meta_size_limit() -> None:
    overhead = len('{"k":""}')
    at_limit = {"k": "x" * (MAX_META_BYTES - overhead)}
    assert parse_batch(obs(meta=at_limit), NOW)[0].meta == at_limit
    [(field, message)] = errors_of(obs(meta={"k": "x" * (MAX_META_BYTES - overhead + 1)}))
    assert field == "meta"
    assert "4096" in message


def test_meta_size_is_measured_as_utf8_json() -> None:
    # UTF-8 bytes, not ASCII escapes: "é" is 2 bytes (it was counted as the 6 of "\\u00e9", so non-Latin
    # text got a third of the limit)
    assert parse_batch(obs(meta={"k": "é" * 2000}), NOW)[0].meta == {"k": "é" * 2000}  # 4000 + 8 bytes
    assert fields_of(obs(meta={"k": "é" * 2045})) == ["meta"]  # 4090 + 8 bytes
    assert parse_batch(obs(meta={"k": "日" * 1360}), NOW)  # 3 bytes each: 4080 + 8
    assert fields_of(obs(meta={"k": "日" * 1363})) == ["meta"]
    assert fields_of(obs(meta={"k": "a" * 4089})) == ["meta"]  # 4089 + 8 = 4097
    assert parse_batch(obs(meta={"k": "a" * 4088}), NOW)


def test_meta_depth_and_json() -> None:
    # a scalar leaf counts as a level: three nested containers with values are the deepest allowed
    assert parse_batch(obs(meta={"a": {"b": {"c": 1}}}), NOW)
    assert fields_of(obs(meta={"a": {"b": {"c": [1]}}})) == ["meta"]
    assert fields_of(obs(meta={"a": {"b": {"c": {"d": 1}}}})) == ["meta"]
    assert fields_of(obs(meta={"a": math.nan})) == ["meta"]
    assert fields_of(obs(meta={"a": {1, 2}})) == ["meta"]
    assert fields_of(obs(meta=[1, 2])) == ["meta"]


# --- time, ids and patterns ---------------------------------------------------------------------------


def test_future_timestamps() -> None:
    assert parse_batch(obs(ts=NOW + MAX_FUTURE_SKEW_MS), NOW)[0].ts == NOW + MAX_FUTURE_SKEW_MS
    assert parse_batch(obs(ts=0), NOW)[0].ts == 0
    [(field, message)] = errors_of(obs(ts=NOW + MAX_FUTURE_SKEW_MS + 1))
    assert field == "ts"
    assert "future" in message
    items = [obs(), obs(), obs(ts=NOW + 10 * 60_000)]
    assert fields_of({"observations": items}) == ["observations.2.ts"]


def test_duplicate_ids_in_a_batch_rejected() -> None:
    items = [obs(id="a"), obs(id="b"), obs(id="a"), obs(), obs()]
    [(field, message)] = errors_of({"observations": items})
    assert field == "observations"
    assert "'a'" in message
    # items without an id never collide
    assert len(parse_batch({"observations": [obs(), obs()]}, NOW)) == 2


@pytest.mark.parametrize("good", ["a", "router:gpt-5", "svc.worker_1", "A-b", "x" * 128])
def test_component_accepted(good: str) -> None:
    assert parse_batch(obs(component=good), NOW)[0].component == good


@pytest.mark.parametrize("bad", ["", "-router", ":x", "has space", "a/b", "x" * 129, "é", 5, None])
def test_component_rejected(bad: Any) -> None:
    assert fields_of(obs(component=bad)) == ["component"]


@pytest.mark.parametrize("bad", ["", "__reserved", "_x", "a/b", "a b", "x" * 129])
def test_id_rejected(bad: str) -> None:
    assert fields_of(obs(id=bad)) == ["id"]


@pytest.mark.parametrize("good", ["router-core@1.0.0", "r@0.0.0", "router_core@10.2.33"])
def test_policy_version_accepted(good: str) -> None:
    assert parse_batch(obs(policyVersion=good), NOW)[0].policyVersion == good


@pytest.mark.parametrize(
    "bad", ["router-core", "router-core@1.0", "router-core@01.0.0", "Router@1.0.0", "@1.0.0", "router-core@v1.0.0",
            "router core@1.0.0", "router-core@1.0.0-rc1"],
)
def test_policy_version_rejected(bad: str) -> None:
    assert fields_of(obs(policyVersion=bad)) == ["policyVersion"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("component", "router:gpt-5\n"), ("id", "req-1\n"), ("policyVersion", "router-core@1.0.0\n")],
)
def test_trailing_newline_rejected(field: str, value: str) -> None:
    # BUG: the patterns end in `$`, which also matches just before a trailing "\n"
    assert fields_of(obs(**{field: value})) == [field]


def test_invalid_batch_message_names_first_error() -> None:
    with pytest.raises(InvalidBatch, match=r"1 invalid field\(s\), first: durationMs"):
        parse_batch(obs(durationMs=-5), NOW)
    assert issubclass(InvalidBatch, ValueError)
