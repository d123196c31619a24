"""Policy kinds (domain/kinds): the registry, the router kind's and the params kind's schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from opsloop.domain import kinds
from opsloop.domain.errors import InvalidArgument
from opsloop.domain.kinds import params as params_kind

ROOT = Path(__file__).resolve().parents[2]

AUTOSCALER: dict[str, Any] = {
    "id": "autoscaler-core", "version": "1.0.0", "kind": "params", "status": "active",
    "params": {"targetCpu": 0.6, "minInstances": 2, "cooldownS": 60},
    "search": {"targetCpu": {"min": 0.3, "max": 0.9},
               "minInstances": {"min": 1, "max": 10, "int": True},
               "cooldownS": {"choices": [30, 60, 120]}},
}


def test_the_issue_s_document_shape_is_a_params_policy() -> None:
    kind = kinds.validate(AUTOSCALER)
    assert kind.name == "params" and kind.tuning == "experiment" and kind.gate == "none"
    space = params_kind.parse(AUTOSCALER)
    assert set(space.search) == {"targetCpu", "minInstances", "cooldownS"}
    assert isinstance(space.search["cooldownS"], params_kind.Choices)


def test_a_policy_without_kind_is_a_router_policy_and_the_seed_one_validates() -> None:
    seed = json.loads((ROOT / "seed" / "ops_policies" / "router-core@1.0.0.json").read_text())
    assert "kind" not in seed
    kind = kinds.validate(seed)
    assert kind.name == "router" and kind.tuning == "weights" and kind.gate == "off_policy"
    assert kinds.validate({"id": "x", "version": "1.0.0", "params": {}}).name == "router"  # reports only


def _changed(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(AUTOSCALER)
    change(doc)
    return doc


BAD_PARAMS: list[tuple[str, Any, str]] = [
    ("unknown search key", lambda d: d["search"].update(maxInstances={"min": 1, "max": 5}), "search.maxInstances"),
    ("value outside its range", lambda d: d["params"].update(targetCpu=0.95), "params.targetCpu"),
    ("min > max", lambda d: d["search"]["targetCpu"].update(min=0.95), "search.targetCpu"),
    ("empty choices", lambda d: d["search"].update(cooldownS={"choices": []}), "search.cooldownS.choices"),
    ("not one of the choices", lambda d: d["params"].update(cooldownS=45), "params.cooldownS"),
    ("a fraction for an int", lambda d: d["params"].update(minInstances=2.5), "params.minInstances"),
    ("an int range with fractional bounds", lambda d: d["search"]["minInstances"].update(max=9.5),
     "search.minInstances"),
    ("a log range from 0", lambda d: d["search"]["targetCpu"].update(min=0, log=True), "search.targetCpu"),
    ("an unknown range key", lambda d: d["search"]["targetCpu"].update(step=0.1), "search.targetCpu.step"),
    ("an infinite bound", lambda d: d["search"]["targetCpu"].update(max=float("inf")), "search.targetCpu.max"),
    ("a string bound", lambda d: d["search"]["targetCpu"].update(max="0.9"), "search.targetCpu.max"),
    ("duplicate choices", lambda d: d["search"].update(cooldownS={"choices": [30, 30]}), "search.cooldownS"),
    ("a list param", lambda d: d["params"].update(zones=["a"]), "params.zones"),
    ("a NaN param", lambda d: d["params"].update(x=float("nan")), "params.x"),
    ("a bad param name", lambda d: d["params"].update({"target cpu": 1}), "params"),
    ("params not a map", lambda d: d.update(params=[1]), "params"),
    ("search not a map", lambda d: d.update(search="all"), "search"),
    ("a dimension not a map", lambda d: d["search"].update(targetCpu=[0.3, 0.9]), "search.targetCpu"),
    ("a NaN choice", lambda d: d["search"].update(cooldownS={"choices": [30, float("nan")]}),
     "search.cooldownS.choices"),
    ("an infinite choice", lambda d: d["search"].update(cooldownS={"choices": [30, float("inf")]}),
     "search.cooldownS.choices"),
    ("1 and true as two choices", lambda d: d["search"].update(cooldownS={"choices": [60, 1, True]}),
     "search.cooldownS"),
    ("1 and 1.0 as two choices", lambda d: d["search"].update(cooldownS={"choices": [60, 1, 1.0]}),
     "search.cooldownS"),
    ("an int beyond 64 bits", lambda d: d["params"].update(big=2**70), "params.big"),
    ("a bound beyond a double", lambda d: d["search"]["minInstances"].update(max=10**400), "search.minInstances.max"),
    ("a bound beyond 64 bits", lambda d: d["search"]["minInstances"].update(max=2**70), "search.minInstances.max"),
    ("a choice beyond 64 bits", lambda d: d["search"].update(cooldownS={"choices": [60, 2**64]}),
     "search.cooldownS.choices"),
    ("an unknown kind", lambda d: d.update(kind="autoscaler"), "kind"),
    ("a kind that is not a string", lambda d: d.update(kind=3), "kind"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_params_are_refused_with_the_field_named(case: str, change: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        kinds.validate(_changed(change))
    assert err.value.details["field"] == field and err.value.code == "E_LEARN_INVALID_ARGUMENT"
    assert field.split(".")[0] in err.value.message


def test_a_params_policy_may_fix_params_outside_its_search() -> None:
    doc = _changed(lambda d: d["params"].update(region="eu", dryRun=False))
    assert kinds.validate(doc).name == "params"
    assert kinds.validate(_changed(lambda d: d.update(search={}))).name == "params"  # nothing to tune


@pytest.mark.parametrize(("weights", "field"), [
    ({}, "params.modelWeights"),
    ({"gpt-5": -1}, "params.modelWeights.gpt-5"),
    ({"gpt-5": float("nan")}, "params.modelWeights.gpt-5"),
    ({"gpt-5": "0.5"}, "params.modelWeights.gpt-5"),
    ({"gpt-5": True}, "params.modelWeights.gpt-5"),
    ({"gpt 5": 1.0}, "params.modelWeights.gpt 5"),
    ({"gpt-5": 0.0, "claude": 0.0}, "params.modelWeights"),
    ([0.5], "params.modelWeights"),
])
def test_router_model_weights_are_checked(weights: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        kinds.validate({"id": "r", "version": "1.0.0", "params": {"modelWeights": weights}})
    assert err.value.details["field"] == field


def test_a_router_policy_has_no_search_space() -> None:
    with pytest.raises(InvalidArgument) as err:
        kinds.validate({"id": "r", "version": "1.0.0", "params": {}, "search": {}})
    assert err.value.details["field"] == "search"


def test_every_registered_kind_declares_its_tuning_and_gate() -> None:
    assert set(kinds.KINDS) == {"router", "params"}
    for name, kind in kinds.KINDS.items():
        assert kind.name == name and kind.tuning in ("weights", "experiment") and kind.gate in ("off_policy", "none")
        assert kind.learns_from
