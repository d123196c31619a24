"""``activatePolicy`` and ``rollbackPolicy``: callables for admins."""

from __future__ import annotations

from typing import Any

from firebase_functions import https_fn, logger

from ..services import policies
from . import auth, deps
from .errors import to_https_error


def _claims(req: https_fn.CallableRequest[Any]) -> dict[str, Any] | None:
    return None if req.auth is None else {"uid": req.auth.uid, **(req.auth.token or {})}


def activate_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    try:
        actor = auth.require_role(_claims(req), auth.ADMIN_ROLES)
        policy_id, version = policies.parse_ref(req.data, version_required=True)
        assert version is not None
        result = policies.activate(deps.store(), policy_id, version, actor=actor)
    except Exception as exc:
        raise to_https_error(exc) from None
    logger.info("policy activated", **result.to_dict(), actor=actor)
    return result.to_dict()


def rollback_policy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    try:
        actor = auth.require_role(_claims(req), auth.ADMIN_ROLES)
        policy_id, version = policies.parse_ref(req.data, version_required=False)
        result = policies.rollback(deps.store(), policy_id, version, actor=actor)
    except Exception as exc:
        raise to_https_error(exc) from None
    logger.info("policy rolled back", **result.to_dict(), actor=actor)
    return result.to_dict()
