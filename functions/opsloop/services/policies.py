"""Activating and rolling back policy versions: the one code path for admins and the updater."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import telemetry
from ..domain import policy as policy_domain
from ..domain import semver
from ..domain.errors import InvalidArgument
from .ports import Store

UPDATER = "policy-updater"  # the actor of every automatic draft (autoTunePolicies)


@dataclass(frozen=True)
class ChangeResult:
    id: str
    active: str
    previous: str | None
    changed: bool
    audit: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "active": self.active, "previous": self.previous, "changed": self.changed}


def parse_ref(data: Any, version_required: bool, extra: tuple[str, ...] = ()) -> tuple[str, str | None]:
    """Validate ``{id, version}`` (plus the ``extra`` keys allowed); raise InvalidArgument naming the field."""
    if not isinstance(data, dict):
        raise InvalidArgument("arguments must be an object like {\"id\": \"router-core\", \"version\": \"1.0.1\"}")
    unknown = sorted(set(data) - {"id", "version", *extra})
    if unknown:
        raise InvalidArgument(f"unexpected argument {unknown[0]!r}", {"field": unknown[0]})
    policy_id = data.get("id")
    if policy_id is None or policy_id == "":
        raise InvalidArgument("'id' is required (e.g. \"router-core\")", {"field": "id"})
    try:
        semver.validate_policy_id(policy_id)
    except ValueError as exc:
        raise InvalidArgument(f"'id': {exc}", {"field": "id"}) from None
    version = data.get("version")
    if version is None:
        if version_required:
            raise InvalidArgument("'version' is required (e.g. \"1.0.1\")", {"field": "version"})
        return policy_id, None
    try:
        return policy_id, str(semver.Version.parse(version))
    except ValueError as exc:
        raise InvalidArgument(f"'version': {exc}", {"field": "version"}) from None


def _result(policy_id: str, transition: policy_domain.Transition | None, audit: dict[str, Any] | None,
            fallback: str) -> ChangeResult:
    if transition is None:
        return ChangeResult(policy_id, fallback, None, changed=False, audit=None)
    return ChangeResult(policy_id, transition.to_version, transition.from_version, changed=True, audit=audit)


def activate(store: Store, policy_id: str, version: str, actor: str) -> ChangeResult:
    """Make ``version`` the only active version of ``policy_id``; archive the previous one; audit it."""
    transition, audit = store.policies.apply_transition(
        policy_id, lambda head, status_of: policy_domain.plan_activate(head, version, status_of), actor
    )
    return _result(policy_id, transition, audit, version)


def rollback(store: Store, policy_id: str, version: str | None, actor: str) -> ChangeResult:
    """Re-activate ``version`` or, without one, the version active before the current one."""

    transition, audit = store.policies.apply_transition(
        policy_id, lambda head, status_of: policy_domain.plan_rollback(head, version, status_of), actor
    )
    if transition is not None:
        telemetry.rollback("manual")
    return _result(policy_id, transition, audit, version or "")
