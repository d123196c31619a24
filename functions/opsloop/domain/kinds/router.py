"""The ``router`` kind: an LLM router's ``modelWeights`` (a policy without ``kind`` is one), and the
settings the ``Router`` (``opsloop.client``) acts on for every request:

    {"modelWeights": {"gpt-5": 0.6, "gemini": 0.25, "claude": 0.15},
     "fallbackOn": ["timeout", "rate_limit"],   # on these outcomes the Router offers the next model
     "maxFallbacks": 2,                         # at most this many further tries (default: every model)
     "cooldownMs": 30000, "allowedFails": 3,    # a model failing 3 times in a minute is skipped for 30 s
     "maxCostUsd": 0.09,                        # models expected to cost more are chosen only when nothing else is left
     "latencyTargetMs": 2500}                   # the tuner's latency target (see services/tuning)

Tuned from the rolling stats of ``router:<model>`` components; gated by an off-policy estimate from the
model propensities the champion logged. Keys the router does not know pass through unchecked (a
component's own business); the ones above are checked here, so a version that sets them wrongly is
refused with the field named before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from ..errors import InvalidArgument
from ..observation import COMPONENT_PATTERN
from .base import PolicyKind, field_error

_COMPONENT = re.compile(COMPONENT_PATTERN)
MAX_MODELS = 64
FAIL_WINDOW_MS = 60_000  # allowedFails counts the failures of the last minute
MAX_COOLDOWN_MS = 86_400_000

FallbackOutcome = Literal["failure", "timeout", "rate_limit"]  # every outcome but success
Positive = Annotated[StrictInt | StrictFloat, Field(gt=0, allow_inf_nan=False)]


class RouterSettings(BaseModel):
    """The router settings of a version's ``params`` (defaults: no fallback, no cooldown, no cost cap)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    fallbackOn: tuple[FallbackOutcome, ...] = ()  # noqa: N815
    maxFallbacks: Annotated[StrictInt, Field(ge=0, le=MAX_MODELS)] | None = None  # noqa: N815
    cooldownMs: Annotated[StrictInt | StrictFloat, Field(ge=0, le=MAX_COOLDOWN_MS, allow_inf_nan=False)] = 0  # noqa: N815
    allowedFails: Annotated[StrictInt, Field(ge=1, le=1000)] = 3  # noqa: N815
    maxCostUsd: Positive | None = None  # noqa: N815
    latencyTargetMs: Positive | None = None  # noqa: N815


def settings(params: Mapping[str, Any]) -> RouterSettings:
    """The router settings in ``params``; InvalidArgument naming the field when one is wrong."""
    fallback = params.get("fallbackOn")
    if fallback is not None and not isinstance(fallback, list | tuple):
        raise InvalidArgument("'params.fallbackOn' must be a list of outcomes (failure, timeout, rate_limit)",
                              {"field": "params.fallbackOn"})
    try:
        return RouterSettings.model_validate(dict(params))
    except ValidationError as exc:
        error = field_error(exc, "params")
        if error.details.get("field") == "params.fallbackOn":
            bad = [o for o in fallback or [] if o not in ("failure", "timeout", "rate_limit")]
            raise InvalidArgument(
                f"'params.fallbackOn': {bad[0]!r} is not an outcome to fall back on "
                "(one of failure, timeout, rate_limit)" if bad else str(error), {"field": "params.fallbackOn"}
            ) from None
        raise error from None


def validate(doc: Mapping[str, Any]) -> None:
    validate_tunable(doc)
    settings(doc["params"])


def validate_tunable(doc: Mapping[str, Any]) -> None:
    """What the tuner needs of a stored version: its ``params`` and ``modelWeights``. Its router settings
    are the ``Router``'s business: a version stored before they were checked still gets tuned (the
    ``Router`` routes it by its weights alone and logs why)."""
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise InvalidArgument("'params' must be an object", {"field": "params"})
    if "search" in doc:
        raise InvalidArgument("'search': a router policy has no search space (its modelWeights are tuned)",
                              {"field": "search"})
    weights = params.get("modelWeights")
    if weights is None:
        return  # reports only: the tuner skips it
    if not isinstance(weights, dict) or not weights or len(weights) > MAX_MODELS:
        raise InvalidArgument(f"'params.modelWeights' must map 1 to {MAX_MODELS} model names to weights",
                              {"field": "params.modelWeights"})
    for model, w in weights.items():
        path = f"params.modelWeights.{model}"
        if not isinstance(model, str) or _COMPONENT.fullmatch(f"router:{model}") is None:
            raise InvalidArgument(f"'{path}': not a model name (router:<model> must be a component id)",
                                  {"field": path})
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise InvalidArgument(f"'{path}' must be a finite number >= 0, got {w!r}", {"field": path})
    if not math.fsum(float(w) for w in weights.values()) > 0:
        raise InvalidArgument("'params.modelWeights' must have a positive total", {"field": "params.modelWeights"})


KIND = PolicyKind(
    name="router", tuning="weights", gate="off_policy", validate=validate,
    learns_from="the rolling stats of router:<model> for every model in params.modelWeights",
)
