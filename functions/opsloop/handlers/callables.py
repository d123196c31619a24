"""Callables for admins: activate / roll back, and the rollout stages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firebase_functions import https_fn, logger

from ..domain.errors import InvalidArgument
from ..services import flags, policies, rollouts
from . import auth, deps
from .errors import to_https_error


def _claims(req: https_fn.CallableRequest[Any]) -> dict[str, Any] | None:
    return None if req.auth is None else {"uid": req.auth.uid, **(req.auth.token or {})}


def _admin(req: https_fn.CallableRequest[Any], name: str, work: Callable[[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Authorise an admin, run ``work(actor, data)``, map every error to its callable code."""
    try:
        actor = auth.require_role(_claims(req), auth.ADMIN_ROLES)
        result = work(actor, req.data)
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
        return rollouts.start_shadow(deps.store(), policy_id, version, actor)

    return _admin(req, "startShadow", work)


def start_canary(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data, extra=("split",))
        if "split" not in data:
            raise InvalidArgument("'split' is required: a number in (0, 0.5] or canary5/canary10/canary20/ab",
                                  {"field": "split"})
        return rollouts.start_canary(deps.store(), policy_id, version, data["split"], actor)

    return _admin(req, "startCanary", work)


def promote_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data)
        return rollouts.promote(deps.store(), policy_id, version, actor)

    return _admin(req, "promotePolicy", work)


def reject_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    def work(actor: str, data: Any) -> dict[str, Any]:
        policy_id, version = _ref(data, extra=("reason",))
        return rollouts.reject(deps.store(), policy_id, version, data.get("reason"), actor)

    return _admin(req, "rejectPolicy", work)


def set_learning_flags(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return _admin(req, "setLearningFlags", lambda actor, data: flags.set_learning_flags(deps.store(), data, actor))
