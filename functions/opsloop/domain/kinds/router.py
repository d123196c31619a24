"""The ``router`` kind: an LLM router's ``modelWeights`` (a policy without ``kind`` is one).

Tuned from the rolling stats of ``router:<model>`` components; gated by an off-policy estimate from the
model propensities the champion logged. Other params (``latencyTargetMs``, ``fallbackOn``…) are the
component's own business and pass through unchecked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgument
from ..observation import COMPONENT_PATTERN
from .base import PolicyKind

_COMPONENT = re.compile(COMPONENT_PATTERN)
MAX_MODELS = 64


def validate(doc: Mapping[str, Any]) -> None:
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
