"""The ``params`` kind: any set of numeric, integer or categorical parameters with a declared search space.

    {"id": "autoscaler-core", "version": "1.0.0", "kind": "params", "status": "active",
     "params": {"targetCpu": 0.6, "minInstances": 2, "cooldownS": 60},
     "search": {"targetCpu": {"min": 0.3, "max": 0.9},
                "minInstances": {"min": 1, "max": 10, "int": true},
                "cooldownS": {"choices": [30, 60, 120]}}}

Improved by experiment: each candidate is a canary against the active version, and the outcomes of the
finished ones (``ops_experiments``) teach the optimiser where to look next. No off-policy gate: a params
policy has no logged propensities to estimate a candidate from, so a draft goes straight to canary (whose
safety thresholds stop real harm within a few hundred requests).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ..errors import InvalidArgument
from .base import PolicyKind, field_error

NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]{0,63}$"
MAX_PARAMS = 64
MAX_CHOICES = 64
# Firestore stores 64-bit integers and finite doubles: anything else would fail the write after validation
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
Float = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Value = StrictBool | Int64 | Float | Annotated[StrictStr, Field(max_length=200)]
Number = Int64 | Float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """A number in [min, max]; ``int`` for whole numbers, ``log`` to search it on a log scale."""

    min: Number
    max: Number
    int: StrictBool = False
    log: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.int and not (float(self.min).is_integer() and float(self.max).is_integer()):
            raise ValueError("an int range needs whole-number min and max")
        if self.log and self.min <= 0:
            raise ValueError("a log range needs min > 0")
        return self

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.int and not float(value).is_integer():
            return f"must be a whole number, got {value!r}"
        if not self.min <= value <= self.max:
            return f"{value!r} is outside its search range [{self.min}, {self.max}]"
        return None


class Choices(_Strict):
    """One of a list of values (numbers, strings or booleans)."""

    choices: Annotated[list[Value], Field(min_length=1, max_length=MAX_CHOICES)]

    @model_validator(mode="after")
    def _check(self) -> Choices:
        # 1, 1.0 and True are one choice to an optimiser that matches by equality (and so to Python's set)
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be distinct (1, 1.0 and true count as the same)")
        return self

    def problem(self, value: Any) -> str | None:
        if not any(type(value) is type(c) and value == c for c in self.choices):
            return f"{value!r} is not one of its choices {self.choices}"
        return None


Dimension = Range | Choices


@dataclass(frozen=True)
class ParamsPolicy:
    params: dict[str, Any]
    search: dict[str, Dimension]


_NAME = re.compile(NAME_PATTERN)
_VALUE: TypeAdapter[Any] = TypeAdapter(Value)


def _names(obj: Any, key: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"'{key}' must be an object", {"field": key})
    if len(obj) > MAX_PARAMS:
        raise InvalidArgument(f"'{key}' may hold at most {MAX_PARAMS} entries", {"field": key})
    for name in obj:
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise InvalidArgument(f"'{key}': {name!r} is not a parameter name ({NAME_PATTERN})", {"field": key})
    return obj


def _dimension(name: str, spec: Any) -> Dimension:
    path = f"search.{name}"
    if not isinstance(spec, dict):
        raise InvalidArgument(f"'{path}' must be an object like {{\"min\": 0, \"max\": 1}} or {{\"choices\": [...]}}",
                              {"field": path})
    stored = [(key, spec.get(key)) for key in ("min", "max")]
    stored += [("choices", v) for v in spec.get("choices") or [] if isinstance(spec.get("choices"), list)]
    for key, v in stored:  # as stored: pydantic would read a huge int as a float that fits
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
            raise InvalidArgument(f"'{path}.{key}' must fit in 64 bits (Firestore's integers)",
                                  {"field": f"{path}.{key}"})
    model: type[Range] | type[Choices] = Choices if "choices" in spec else Range
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        raise field_error(exc, path) from None


def parse(doc: Mapping[str, Any]) -> ParamsPolicy:
    """The params and search space of a ``params`` version; InvalidArgument naming the field otherwise."""
    params = _names(doc.get("params", {}), "params")
    for name, value in params.items():
        try:
            _VALUE.validate_python(value)
        except ValidationError:
            raise InvalidArgument(f"'params.{name}' must be a number, a string or a boolean, got {value!r}",
                                  {"field": f"params.{name}"}) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(f"'params.{name}' must be finite, got {value!r}", {"field": f"params.{name}"})
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise InvalidArgument(f"'params.{name}' must fit in 64 bits (Firestore's integers)",
                                  {"field": f"params.{name}"})
    search = {name: _dimension(name, spec) for name, spec in _names(doc.get("search", {}), "search").items()}
    for name, dim in search.items():
        if name not in params:
            raise InvalidArgument(f"'search.{name}': unknown key, not in params (search only what params sets)",
                                  {"field": f"search.{name}"})
        problem = dim.problem(params[name])
        if problem:
            raise InvalidArgument(f"'params.{name}' {problem}", {"field": f"params.{name}"})
    # a whole number given as 2.0 for an int dimension is the point 2 (the optimiser's, and a repeat's)
    ints = {k for k, dim in search.items() if isinstance(dim, Range) and dim.int}
    return ParamsPolicy({k: int(v) if k in ints else v for k, v in params.items()}, search)


def validate(doc: Mapping[str, Any]) -> None:
    parse(doc)


KIND = PolicyKind(
    name="params", tuning="experiment", gate="none", validate=validate,
    learns_from="its canaries: each experiment's champion and challenger arms (ops_experiments)",
)
