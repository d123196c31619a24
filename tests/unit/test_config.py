"""Config gets one home: strict parsing, defaults in one place, seeds equal to them, kill switch never open."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain import config, observation, tuning, windows
from opsloop.domain.config import ConfigInvalid, Flags
from opsloop.domain.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", config.NAMES)
def test_each_seed_file_is_the_default(name: str) -> None:
    seed = json.loads((ROOT / "seed" / "config" / f"{name}.json").read_text())
    assert config.parse(name, seed) == config.defaults(name)
    assert seed == config.default_doc(name)  # every key, with the default's value


def test_closed_value_sets_match_the_domain() -> None:
    assert set(config.TuningDoc.model_fields["method"].annotation.__args__) == set(tuning.METHODS)  # type: ignore[union-attr]
    assert set(config.DriftDoc.model_fields["latest"].annotation.__args__) == set(windows.WINDOWS)  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "doc", "field"), [
    ("flags", {"learning": {"enabled": "false"}}, "learning.enabled"),
    ("flags", {"learning": "off"}, "learning"),
    ("flags", {"learning": {"autoActivatePolicies": 1}}, "learning.autoActivatePolicies"),
    ("scoring", {"safetyMarginMs": 1e12}, "safetyMarginMs"),
    ("scoring", {"retentionDays": 0}, "retentionDays"),
    ("scoring", {"chunkSize": 10.5}, "chunkSize"),
    ("scoring", {"chunkSize": True}, "chunkSize"),
    ("drift", {"latest": "2h"}, "latest"),
    ("rollout", {"shadowWindow": "48h"}, "shadowWindow"),
    ("rollout", {"denyCanaryIfShadowWorse": "no"}, "denyCanaryIfShadowWorse"),
    ("tuning", {"window": 24}, "window"),
    ("tuning", {"explorationFloor": float("nan")}, "explorationFloor"),
    ("reward_config", {"weights": {"success": "0.6"}}, "weights.success"),
    ("reward_config", {"version": ""}, "version"),
    ("skill_cards", {"topFailures": -1}, "topFailures"),
    ("tuning", {"minSamlpes": 10}, "minSamlpes"),  # a typo is an error, not silently the default
])
def test_a_bad_document_names_its_path_and_field(name: str, doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigInvalid) as info:
        config.parse(name, doc)
    assert info.value.code == "E_LEARN_CONFIG_INVALID"
    assert info.value.details["path"] == f"config/{name}"
    assert info.value.details["field"] == field


def test_integral_floats_are_whole_numbers_and_missing_documents_are_defaults() -> None:
    assert config.parse("scoring", {"chunkSize": 30.0}).chunk_size == 30
    assert config.parse("scoring", None) == config.defaults("scoring")
    assert config.parse("flags", {"learning": {"enabled": False}}) == Flags(enabled=False, auto_activate=False)
    with pytest.raises(ConfigInvalid):
        config.parse("flags", ["not", "a", "map"])


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                      st.text(max_size=8), st.sampled_from(["false", "true", "off", "1h", "24h", "48h", ""]))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def type_confused(name: str) -> st.SearchStrategy[Any]:
    """Documents with the right keys holding anything, and anything at all."""
    keys = sorted(config.default_doc(name))
    right_keys = st.dictionaries(st.sampled_from(keys), json_value, max_size=len(keys))
    nested = st.fixed_dictionaries({"learning": st.dictionaries(
        st.sampled_from(["enabled", "autoActivatePolicies", "other"]), json_value, max_size=3)})
    return st.one_of(right_keys, nested, json_value)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), name=st.sampled_from(config.NAMES))
def test_any_document_parses_or_is_refused_cleanly(data: st.DataObject, name: str) -> None:
    doc = data.draw(type_confused(name))
    try:
        config.parse(name, doc)
    except ConfigInvalid as exc:
        assert exc.details["path"] == f"config/{name}"


@settings(max_examples=300, deadline=None)
@given(doc=type_confused("flags"))
def test_the_kill_switch_is_on_only_for_real_booleans(doc: Any) -> None:
    try:
        flags = config.parse("flags", doc)
    except ConfigInvalid:
        return  # the loader then uses FLAGS_OFF
    learning = doc.get("learning", {}) if isinstance(doc, dict) else {}
    assert flags.enabled is learning.get("enabled", True)
    assert isinstance(learning.get("enabled", True), bool)


def test_schedule_times_are_bounded_against_the_clock() -> None:
    now = 1_800_000_000_000
    windows.check_schedule_time(now + windows.MAX_SCHEDULE_SKEW_MS, now)
    with pytest.raises(InvalidArgument, match="ahead of the clock"):
        windows.check_schedule_time(now + windows.MAX_SCHEDULE_SKEW_MS + 1, now)
    with pytest.raises(InvalidArgument, match="before 2000"):
        windows.check_schedule_time(1_800_000_000, now)  # seconds mistaken for milliseconds


def test_the_rules_use_the_same_id_patterns_and_bounds_as_the_api() -> None:
    rules = (ROOT / "firestore.rules").read_text()
    for field, pattern in (("id", observation.ID_PATTERN), ("component", observation.COMPONENT_PATTERN),
                           ("policyVersion", observation.POLICY_REF_PATTERN)):
        assert re.search(rf"d\.{field}\.matches\('{re.escape(pattern)}'\)", rules), field
    assert f"d.propensity >= {observation.MIN_PROPENSITY:f}".rstrip("0") in rules


def test_the_rules_hold_the_api_s_numeric_bounds() -> None:
    rules = (ROOT / "firestore.rules").read_text()
    for bound in ("d.durationMs <= 86400000", "d.costUsd <= 1000000", "d.tokensIn <= 100000000",
                  "d.tokensOut <= 100000000", "d.weight >= 1 && d.weight <= 1000000", "d.propensity <= 1",
                  "d.errorCode.size() <= 128", "d.ts <= request.time.toMillis() + 300000"):
        assert bound in rules, bound
    fields = observation.ObservationIn.model_fields
    assert fields["durationMs"].metadata[-1].le == 86_400_000 and fields["costUsd"].metadata[-1].le == 1_000_000
    assert fields["weight"].metadata[-1].le == 1_000_000 and fields["tokensIn"].metadata[-1].le == 100_000_000
    assert observation.MAX_FUTURE_SKEW_MS == 300_000


stored_fields = st.dictionaries(
    st.sampled_from(["ts", "component", "policyVersion", "arm", "durationMs", "costUsd", "propensity", "weight",
                     "outcome", "errorCode"]),
    st.one_of(json_value, st.sampled_from([1e-300, 1e308, -1.0, 0.0, 1e6, 1e-6, "router-core@1.0.0", "champion",
                                           "success", "router:gpt-5", 1_800_000_000_000])))


@settings(max_examples=600, deadline=None)
@given(stored_fields)
def test_any_stored_observation_scores_or_is_recorded_invalid(doc: dict[str, Any]) -> None:
    """What the scorer does with whatever a document holds: a finite summary, or an invalid reward."""
    import datetime as dt

    from opsloop.domain.generations import Generations
    from opsloop.domain.ingest import StoredObservation
    from opsloop.services.reward_docs import reward_doc

    obs = StoredObservation("x", doc, dt.datetime.now(dt.UTC))
    reward, scored = reward_doc(obs, Generations(), dt.datetime.now(dt.UTC))
    if scored is None:
        assert reward["invalid"] and reward["error"]
    else:
        assert scored[1].finite() and 0.0 <= reward["score"] <= 1.0 and reward["scores"] == {"g1": reward["score"]}
        assert observation.stored_problem(doc, 1_800_000_000_000 + 10**12) is None


def test_change_flags_merges_and_repairs_an_unreadable_document() -> None:
    from opsloop.domain.config import change_flags

    same = change_flags({"learning": {"enabled": True, "autoActivatePolicies": False}}, {"enabled": True})
    assert same.doc is None and same.old == same.new == {"enabled": True, "autoActivatePolicies": False}
    on = change_flags({"learning": {"enabled": True}}, {"autoActivatePolicies": True})
    assert on.doc == {"learning": {"enabled": True, "autoActivatePolicies": True}}
    assert on.old == {"enabled": True, "autoActivatePolicies": False}
    broken = change_flags({"learning": "yes", "note": "x"}, {})  # unreadable: off, and rewritten whole
    assert broken.old == broken.new == {"enabled": False, "autoActivatePolicies": False}
    assert broken.doc == {"learning": {"enabled": False, "autoActivatePolicies": False}}
