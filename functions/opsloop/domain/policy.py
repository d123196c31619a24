"""Which version of a policy is active, and what an activation or rollback changes.

Per policy id a *head* records the active version and the stack of versions that were active before
it. Activating pushes the outgoing version; an unnamed rollback pops it back. Every transition names
its audit entry's ``from`` and ``to``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from .errors import FailedPrecondition, NotFound

Action = Literal["activate", "rollback"]
STATUSES = ("draft", "active", "archived")
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class Head:
    policy_id: str
    active: str | None = None
    history: tuple[str, ...] = ()
    seq: int = 0

    @classmethod
    def from_doc(cls, policy_id: str, doc: dict[str, Any] | None) -> Head:
        if not doc:
            return cls(policy_id)
        return cls(
            policy_id=policy_id,
            active=doc.get("active"),
            history=tuple(doc.get("history") or ()),
            seq=int(doc.get("seq", 0)),
        )

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.policy_id, "active": self.active, "history": list(self.history), "seq": self.seq}


@dataclass(frozen=True)
class Transition:
    action: Action
    policy_id: str
    from_version: str | None
    to_version: str
    head: Head


def plan_activate(head: Head, version: str, exists: bool, action: Action = "activate") -> Transition | None:
    """Make ``version`` the active one; None when it already is (nothing changes, nothing audited)."""
    if not exists:
        raise NotFound(f"policy {head.policy_id}@{version} does not exist",
                       {"id": head.policy_id, "version": version})
    if head.active == version:
        return None
    history = head.history
    if head.active is not None:
        history = (*history, head.active)[-HISTORY_LIMIT:]
    new_head = replace(head, active=version, history=history, seq=head.seq + 1)
    return Transition(action, head.policy_id, head.active, version, new_head)


def plan_rollback(head: Head, version: str | None, exists: bool) -> Transition | None:
    """Re-activate ``version``, or without one the version active before the current one."""
    if version is not None:
        return plan_activate(head, version, exists, action="rollback")
    if not head.history:
        raise FailedPrecondition(
            f"policy {head.policy_id} has no earlier active version to roll back to",
            {"id": head.policy_id, "active": head.active},
        )
    previous = head.history[-1]
    if not exists:
        raise NotFound(f"policy {head.policy_id}@{previous} no longer exists",
                       {"id": head.policy_id, "version": previous})
    new_head = replace(head, active=previous, history=head.history[:-1], seq=head.seq + 1)
    return Transition("rollback", head.policy_id, head.active, previous, new_head)
