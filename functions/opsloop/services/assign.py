"""``assignPolicy``: a request's version, arm and params, for components in any language.

    POST {"policyId": "autoscaler-core", "requestId": "r-123"}
      -> {"policyId", "version", "arm", "params", "propensity"}
    POST {"requests": [{"policyId": ..., "requestId": ...}, ...]}         (at most 500)
      -> {"assignments": [...]}                                          (in the same order)

The same deterministic SHA-256 bucketing as ``opsloop.client``; a router version's answer also carries
the ``model`` its weights pick and that model's ``modelPropensity`` (what the component reports). With a
``Router`` (as served) the pick leaves out models whose expected cost is above the version's
``maxCostUsd`` unless nothing else is left, as the library does; cooldowns are a component's own record
of its outcomes, which this function never sees.
"""

from __future__ import annotations

from typing import Any

from ..client import PolicyClient, Router, pick_model
from ..domain import semver
from ..domain.errors import InvalidArgument, NotFound

MAX_REQUESTS = 500
MAX_REQUEST_ID = 256


def _one(item: Any, where: str) -> tuple[str, str]:
    prefix = f"{where}." if where else ""
    if not isinstance(item, dict):
        raise InvalidArgument(f"'{where or 'body'}' must be an object like "
                              '{"policyId": "autoscaler-core", "requestId": "r-123"}', {"field": where or "body"})
    unknown = sorted(set(item) - {"policyId", "requestId"})
    if unknown:
        raise InvalidArgument(f"unexpected field '{prefix}{unknown[0]}'", {"field": f"{prefix}{unknown[0]}"})
    raw_id, request_id = item.get("policyId"), item.get("requestId")
    try:
        if not isinstance(raw_id, str):
            raise ValueError(f"policy id must be a string, got {_short(raw_id)}")
        policy_id = semver.validate_policy_id(raw_id)
    except ValueError as exc:
        raise InvalidArgument(f"'{prefix}policyId': {exc}", {"field": f"{prefix}policyId"}) from None
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument(f"'{prefix}requestId' must be a non-empty string of at most {MAX_REQUEST_ID} "
                              f"characters, got {_short(request_id)}", {"field": f"{prefix}requestId"})
    return policy_id, request_id


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}... ({len(text)} characters)"


def parse(body: Any) -> tuple[list[tuple[str, str]], bool]:
    """The (policy id, request id) pairs of a body, and whether it was a batch; nothing is read before."""
    if isinstance(body, dict) and "requests" in body:
        if set(body) != {"requests"}:
            extra = sorted(set(body) - {"requests"})[0]
            raise InvalidArgument(f"unexpected field '{extra}' beside 'requests'", {"field": extra})
        items = body["requests"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_REQUESTS:
            raise InvalidArgument(f"'requests' must be a list of 1 to {MAX_REQUESTS} requests", {"field": "requests"})
        return [_one(item, f"requests.{i}") for i, item in enumerate(items)], True
    return [_one(body, "")], False


def answer(client: PolicyClient, policy_id: str, request_id: str) -> dict[str, Any]:
    a = client.assign(request_id, policy_id)
    out = a.to_dict()
    if a.kind == "router":
        if isinstance(client, Router):
            call = client.first_try(a, request_id)
            model, model_p = call.model, call.model_propensity
        else:
            model, model_p = pick_model(a, request_id)
        if model is not None:
            out.update(model=model, modelPropensity=model_p)
    return out


def assign(client: PolicyClient, body: Any) -> dict[str, Any]:
    """The answer to one call: every head it names is read afresh (once per call), versions come from cache."""
    pairs, batch = parse(body)
    client.forget_heads()
    answers = []
    for i, (policy_id, request_id) in enumerate(pairs):
        try:
            answers.append(answer(client, policy_id, request_id))
        except NotFound as exc:  # which item of a batch: the field names it
            where = f"requests.{i}.policyId" if batch else "policyId"
            raise NotFound(exc.message, {**exc.details, "field": where}) from None
    return {"assignments": answers} if batch else answers[0]
