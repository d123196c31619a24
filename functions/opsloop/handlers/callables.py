"""Callables for admins: activate / roll back, and the rollout stages."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from firebase_functions import https_fn, logger, options
from flask import Request, Response
from flask_cors import cross_origin

from .. import telemetry
from ..domain import audit as audit_domain
from ..domain.errors import InvalidArgument
from ..services import flags, policies, rollouts, whatif
from . import auth, deps
from .errors import json_response, to_https_error
from .http import parse_json

Handler = Callable[[https_fn.CallableRequest[Any]], Any]
Endpoint = Callable[[Request], Response]


def on_call(**kwargs: Any) -> Callable[[Handler], Endpoint]:
    """``https_fn.on_call(**kwargs)`` whose request body is checked before firebase_functions reads it.

    firebase_functions answers a body that is not JSON (or not an object) with 500 INTERNAL, and one
    without ``data`` with a bare "Bad Request"; here each is INVALID_ARGUMENT with a message and
    ``details.code``, in the wire format and with the CORS headers firebase_functions gives its own errors.
    Other methods (the CORS preflight) go straight to firebase_functions.
    """
    opts = options.HttpsOptions(**kwargs)
    origins: Any = "*" if opts.cors is None or opts.cors.cors_origins is None else opts.cors.cors_origins

    @cross_origin(methods="POST", origins=origins)
    def refuse(exc: InvalidArgument) -> Response:
        return json_response(400, {"error": {"status": "INVALID_ARGUMENT", "message": exc.message,
                                             "details": {**exc.details, "code": exc.code}}})

    def decorate(func: Handler) -> Endpoint:
        # on_call is annotated as returning a handler like func; it returns the Flask view that serves it
        endpoint: Endpoint = https_fn.on_call(**kwargs)(func)  # type: ignore[assignment]

        @functools.wraps(endpoint)  # keeps __firebase_endpoint__, which `firebase deploy` looks for
        def checked(request: Request) -> Response:
            if request.method == "POST":
                try:
                    check_callable_body(request)
                except InvalidArgument as exc:
                    logger.warn("callable body refused", function=func.__name__, error=exc.message)
                    return refuse(exc)
            try:
                return endpoint(request)
            finally:  # the instance may be frozen after the response (telemetry: best effort, bounded wait)
                telemetry.flush_if_due()

        return checked

    return decorate


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "an array"))
    return next((name for t, name in kinds if isinstance(value, t)), type(value).__name__)


def check_callable_body(request: Request) -> None:
    """InvalidArgument unless the body is what the callable protocol sends: JSON ``{"data": ...}``."""
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
    if content_type.lower() != "application/json":  # as firebase_functions compares it
        raise InvalidArgument(f"Content-Type must be application/json, got {content_type!r}",
                              {"field": "Content-Type"})
    body = parse_json(request.get_data(cache=True))  # cached: firebase_functions reads the same bytes
    if not isinstance(body, dict):
        raise InvalidArgument(f'body must be a JSON object {{"data": ...}}, got {_json_kind(body)}',
                              {"field": "body"})
    if "data" not in body:
        raise InvalidArgument('body must have a "data" field: {"data": <the argument>}', {"field": "data"})
    extra = sorted(k for k in body if k != "data")
    if extra:
        raise InvalidArgument(f'body may hold only "data"; got also {extra}', {"field": extra[0]})


def _claims(req: https_fn.CallableRequest[Any]) -> dict[str, Any] | None:
    return None if req.auth is None else {"uid": req.auth.uid, **(req.auth.token or {})}


VIA = re.compile(r"[a-z][a-z0-9-]{0,31}")


def _via(data: Any) -> tuple[str, Any]:
    """The client that sent the call (``"via": "admin-ui"`` in the arguments, taken out of them); "callable"
    when it does not say."""
    if not isinstance(data, dict) or "via" not in data:
        return "callable", data
    via = data["via"]
    if not isinstance(via, str) or not VIA.fullmatch(via):
        raise InvalidArgument("'via' names the client: lowercase letters, digits and '-', at most 32 (e.g. "
                              "\"admin-ui\")", {"field": "via"})
    return via, {k: v for k, v in data.items() if k != "via"}


def _admin(req: https_fn.CallableRequest[Any], name: str, work: Callable[[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Authorise an admin, run ``work(actor, data)``, map every error to its callable code. Audit entries
    written meanwhile name the admin's email and the client (``via``)."""
    try:
        claims = _claims(req)
        actor = auth.require_role(claims, auth.ADMIN_ROLES)
        via, data = _via(req.data)
        email = (claims or {}).get("email")
        with audit_domain.provenance(via=via, actorEmail=email if isinstance(email, str) else None):
            result = work(actor, data)
    except Exception as exc:
        raise to_https_error(exc) from None
    logger.info(f"{name} done", actor=actor, result=result)
    return result


def _ref(data: Any, extra: tuple[str, ...] = ()) -> tuple[str, str]:
    policy_id, version = policies.parse_ref(data, version_required=True, extra=extra)
    assert version is not None
    return policy_id, version


def activate_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data)
        return policies.activate(deps.store(), policy_id, version, actor=actor).to_dict()

    return _admin(req, "activatePolicy", work)


def rollback_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = policies.parse_ref(data, version_required=False)
        return policies.rollback(deps.store(), policy_id, version, actor=actor).to_dict()

    return _admin(req, "rollbackPolicy", work)


def start_shadow(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data)
        return rollouts.start_shadow(deps.store(), policy_id, version, actor).to_dict()

    return _admin(req, "startShadow", work)


def start_canary(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data, extra=("split",))
        if "split" not in data:
            raise InvalidArgument("'split' is required: a number in (0, 0.5] or canary5/canary10/canary20/ab",
                                  {"field": "split"})
        return rollouts.start_canary(deps.store(), policy_id, version, data["split"], actor).to_dict()

    return _admin(req, "startCanary", work)


def promote_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data)
        return rollouts.promote(deps.store(), policy_id, version, actor).to_dict()

    return _admin(req, "promotePolicy", work)


def reject_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data, extra=("reason",))
        return rollouts.reject(deps.store(), policy_id, version, data.get("reason"), actor).to_dict()

    return _admin(req, "rejectPolicy", work)


def set_learning_flags(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return _admin(req, "setLearningFlags",
                  lambda actor, data: flags.set_learning_flags(deps.store(), data, actor).to_dict())


def preview_reward_config(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    """``{"config": {...}, "days"?: 7}``: the what-if of a proposed reward config; nothing is written."""

    def work(actor: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or "config" not in data:
            raise InvalidArgument("arguments must be an object like {\"config\": {...}, \"days\": 7}",
                                  {"field": "config"})
        unknown = sorted(set(data) - {"config", "days"})
        if unknown:
            raise InvalidArgument(f"unexpected argument {unknown[0]!r}", {"field": unknown[0]})
        return whatif.what_if(deps.store(), data["config"], days=data.get("days", 7)).to_dict()

    return _admin(req, "previewRewardConfig", work)
