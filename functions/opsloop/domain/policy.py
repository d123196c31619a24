"""The lifecycle of policy versions, and what each transition changes.

    draft -> shadow -> canary -> active -> archived          (plus rejected and rolled_back)

Per policy id a *head* records the active version, the stack of versions that were active before it,
and the rollout in progress (at most one shadow or canary at a time). Every transition is planned here,
purely, from the head and the statuses of the versions it touches; the store then writes the head, the
versions, the rollout document and the audit entry in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import FailedPrecondition, InvalidArgument, NotFound

Action = Literal["activate", "rollback", "shadow", "canary", "promote", "reject", "canary_rollback", "conclude"]
Stage = Literal["shadow", "canary"]
STATUSES = ("draft", "shadow", "canary", "active", "archived", "rejected", "rolled_back")
HISTORY_LIMIT = 50
StatusOf = Callable[[str], str | None]  # version -> its status, None when it does not exist


@dataclass(frozen=True)
class Rollout:
    rollout_id: str
    version: str  # the challenger
    champion: str
    stage: Stage
    split: float
    started_at: int
    canary_started_at: int | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "rolloutId": self.rollout_id, "version": self.version, "champion": self.champion,
            "stage": self.stage, "split": self.split, "startedAt": self.started_at,
            "canaryStartedAt": self.canary_started_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Rollout | None:
        if not doc:
            return None
        return cls(
            rollout_id=str(doc["rolloutId"]), version=str(doc["version"]), champion=str(doc["champion"]),
            stage=doc["stage"], split=float(doc.get("split", 0.0)), started_at=int(doc["startedAt"]),
            canary_started_at=None if doc.get("canaryStartedAt") is None else int(doc["canaryStartedAt"]),
        )


@dataclass(frozen=True)
class Head:
    policy_id: str
    active: str | None = None
    history: tuple[str, ...] = ()
    seq: int = 0
    rollout: Rollout | None = None

    @classmethod
    def from_doc(cls, policy_id: str, doc: dict[str, Any] | None) -> Head:
        if not doc:
            return cls(policy_id)
        return cls(
            policy_id=policy_id,
            active=doc.get("active"),
            history=tuple(doc.get("history") or ()),
            seq=int(doc.get("seq", 0)),
            rollout=Rollout.from_doc(doc.get("rollout")),
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.policy_id, "active": self.active, "history": list(self.history), "seq": self.seq,
            "rollout": None if self.rollout is None else self.rollout.to_doc(),
        }


@dataclass(frozen=True)
class Transition:
    action: Action
    policy_id: str
    from_version: str | None
    to_version: str
    head: Head
    statuses: dict[str, str] = field(default_factory=dict)  # version -> its new status
    rollout: Rollout | None = None  # the rollout this transition starts, changes or ends
    rollout_status: str | None = None  # running | promoted | rejected | rolled_back | inconclusive

    def version_updates(self, now_ms: int, actor: str) -> dict[str, dict[str, Any]]:
        """What each version it touches gets: its new status, when and by whom (and when it became active)."""
        out: dict[str, dict[str, Any]] = {}
        for version, status in self.statuses.items():
            fields: dict[str, Any] = {"status": status, "statusChangedAt": now_ms, "statusChangedBy": actor}
            if status == "active":
                fields.update(activatedAt=now_ms, activatedBy=actor)
            out[version] = fields
        return out

    def rollout_doc(self, now_ms: int, actor: str) -> dict[str, Any] | None:
        """The rollout document it writes (merged into the stored one); None when no rollout changes."""
        if self.rollout is None or self.rollout_status is None:
            return None
        doc: dict[str, Any] = {**self.rollout.to_doc(), "id": self.policy_id, "status": self.rollout_status,
                               "updatedAt": now_ms}
        if self.rollout_status != "running":
            doc.update(endedAt=now_ms, endedBy=actor)
        return doc

    def audit_entry(self, now_ms: int, actor: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The audit entry that records it (sealed into the policy's chain by the store)."""
        entry: dict[str, Any] = {"ts": now_ms, "actor": actor, "action": self.action, "id": self.policy_id,
                                 "from": self.from_version, "to": self.to_version, **(extra or {})}
        if self.rollout is not None:
            entry["rolloutId"] = self.rollout.rollout_id
        return entry


LIFECYCLE_FIELDS = ("status", "id", "version")


def check_non_lifecycle(fields: dict[str, Any]) -> None:
    """Refuse a plain update that would change a version's identity or status (only transitions do)."""
    if any(f in fields for f in LIFECYCLE_FIELDS):
        raise ValueError(f"lifecycle fields change only through transitions, got {sorted(fields)!r}")


def _require(status_of: StatusOf, policy_id: str, version: str) -> str:
    status = status_of(version)
    if status is None:
        raise NotFound(f"policy {policy_id}@{version} does not exist", {"id": policy_id, "version": version})
    return status


def _activation(head: Head, version: str, action: Action, statuses: dict[str, str]) -> Transition:
    history = head.history
    if head.active is not None:
        history = (*history, head.active)[-HISTORY_LIMIT:]
        statuses = {head.active: "archived", **statuses}
    new_head = replace(head, active=version, history=history, seq=head.seq + 1, rollout=None)
    return Transition(action, head.policy_id, head.active, version, new_head, {**statuses, version: "active"})


def plan_activate(head: Head, version: str, status_of: StatusOf, action: Action = "activate") -> Transition | None:
    """Make ``version`` the active one; None when it already is (nothing changes, nothing audited)."""
    _require(status_of, head.policy_id, version)
    if head.active == version:
        return None
    rollout = head.rollout
    if rollout is not None and rollout.version != version:
        raise FailedPrecondition(
            f"a {rollout.stage} of {head.policy_id}@{rollout.version} is running; promote or reject it first",
            {"id": head.policy_id, "rollout": rollout.to_doc()}, code="E_LEARN_ROLLOUT_RUNNING",
        )
    t = _activation(head, version, action, {})
    if rollout is not None:  # activating the challenger by hand ends its rollout as a promotion
        return replace(t, rollout=rollout, rollout_status="promoted")
    return t


def plan_rollback(head: Head, version: str | None, status_of: StatusOf) -> Transition | None:
    """Re-activate ``version``, or without one the version active before the current one."""
    if version is not None:
        return plan_activate(head, version, status_of, action="rollback")
    if not head.history:
        raise FailedPrecondition(
            f"policy {head.policy_id} has no earlier active version to roll back to",
            {"id": head.policy_id, "active": head.active}, code="E_LEARN_NOTHING_TO_ROLL_BACK",
        )
    if head.rollout is not None:
        raise FailedPrecondition(
            f"a {head.rollout.stage} of {head.policy_id}@{head.rollout.version} is running; reject it first",
            {"id": head.policy_id, "rollout": head.rollout.to_doc()}, code="E_LEARN_ROLLOUT_RUNNING",
        )
    previous = head.history[-1]
    _require(status_of, head.policy_id, previous)
    statuses = {previous: "active"}
    if head.active is not None:
        statuses[head.active] = "archived"
    new_head = replace(head, active=previous, history=head.history[:-1], seq=head.seq + 1)
    return Transition("rollback", head.policy_id, head.active, previous, new_head, statuses)


def _startable_draft(head: Head, version: str, status_of: StatusOf, what: str) -> str:
    """The active version a draft's first rollout compares against; refused while another rollout runs,
    for anything but a draft, and without an active version."""
    status = _require(status_of, head.policy_id, version)
    if head.rollout is not None:
        raise FailedPrecondition(
            f"a {head.rollout.stage} of {head.policy_id}@{head.rollout.version} is already running",
            {"id": head.policy_id, "rollout": head.rollout.to_doc()}, code="E_LEARN_ROLLOUT_RUNNING",
        )
    if status != "draft":
        raise FailedPrecondition(f"only a draft can {what}; {head.policy_id}@{version} is {status}",
                                 {"id": head.policy_id, "version": version, "status": status})
    if head.active is None:
        raise FailedPrecondition(f"policy {head.policy_id} has no active version to compare against",
                                 {"id": head.policy_id})
    return head.active


def plan_start_shadow(head: Head, version: str, status_of: StatusOf, rollout_id: str, now_ms: int) -> Transition:
    """Put a draft in shadow: evaluated on logged data only, live traffic keeps the champion."""
    champion = _startable_draft(head, version, status_of, "enter shadow")
    rollout = Rollout(rollout_id, version, champion, "shadow", 0.0, now_ms)
    new_head = replace(head, seq=head.seq + 1, rollout=rollout)
    return Transition("shadow", head.policy_id, head.active, version, new_head, {version: "shadow"}, rollout,
                      "running")


def _split(split: float) -> float:
    if isinstance(split, bool) or not isinstance(split, int | float) or not math.isfinite(split) or not (
        0.0 < split <= 0.5
    ):
        raise InvalidArgument(f"'split' must be a number in (0, 0.5], got {split!r}", {"field": "split"})
    return float(split)


def plan_start_canary(head: Head, version: str, status_of: StatusOf, split: float, now_ms: int) -> Transition:
    """Send a ``split`` share of live traffic to a version that has been in shadow."""
    split = _split(split)
    status = _require(status_of, head.policy_id, version)
    rollout = head.rollout
    if rollout is None or rollout.version != version:
        raise FailedPrecondition(
            f"{head.policy_id}@{version} is {status}, not in shadow; start a shadow first",
            {"id": head.policy_id, "version": version, "status": status},
        )
    if rollout.stage != "shadow":
        raise FailedPrecondition(f"{head.policy_id}@{version} is already in canary at split {rollout.split}",
                                 {"id": head.policy_id, "rollout": rollout.to_doc()})
    canary = replace(rollout, stage="canary", split=float(split), canary_started_at=now_ms)
    new_head = replace(head, seq=head.seq + 1, rollout=canary)
    return Transition("canary", head.policy_id, head.active, version, new_head, {version: "canary"}, canary,
                      "running")


def plan_start_experiment(head: Head, version: str, status_of: StatusOf, split: float, rollout_id: str,
                          now_ms: int) -> Transition:
    """Send a ``split`` share of live traffic to a draft straight away: a kind without an off-policy gate
    (``params``) has no shadow stage; its canary's safety thresholds are the gate."""
    split = _split(split)
    champion = _startable_draft(head, version, status_of, "start an experiment")
    rollout = Rollout(rollout_id, version, champion, "canary", split, now_ms, canary_started_at=now_ms)
    new_head = replace(head, seq=head.seq + 1, rollout=rollout)
    return Transition("canary", head.policy_id, head.active, version, new_head, {version: "canary"}, rollout,
                      "running")


def plan_conclude(head: Head, version: str, status_of: StatusOf) -> Transition:
    """End a canary that stayed inconclusive past its time: the challenger is set aside (``rejected``), all
    traffic returns to the champion, and the rollout ends ``inconclusive``."""
    _require(status_of, head.policy_id, version)
    rollout = _running(head, version, "canary")
    new_head = replace(head, seq=head.seq + 1, rollout=None)
    return Transition("conclude", head.policy_id, version, rollout.champion, new_head, {version: "rejected"},
                      rollout, "inconclusive")


def _running(head: Head, version: str, stage: Stage | None) -> Rollout:
    rollout = head.rollout
    if rollout is None or rollout.version != version or (stage is not None and rollout.stage != stage):
        want = stage or "rollout"
        raise FailedPrecondition(f"no {want} of {head.policy_id}@{version} is running",
                                 {"id": head.policy_id, "version": version,
                                  "rollout": None if rollout is None else rollout.to_doc()})
    return rollout


def plan_promote(head: Head, version: str, status_of: StatusOf) -> Transition:
    """The canary's challenger becomes the active version; the champion is archived."""
    _require(status_of, head.policy_id, version)
    rollout = _running(head, version, "canary")
    t = _activation(head, version, "promote", {})
    return replace(t, rollout=rollout, rollout_status="promoted")


def plan_reject(head: Head, version: str, status_of: StatusOf) -> Transition:
    """Turn down a draft, shadow or canary version; a running rollout of it ends."""
    status = _require(status_of, head.policy_id, version)
    if status not in ("draft", "shadow", "canary"):
        raise FailedPrecondition(f"only a draft, shadow or canary can be rejected; {head.policy_id}@{version} "
                                 f"is {status}", {"id": head.policy_id, "version": version, "status": status})
    rollout = head.rollout if head.rollout is not None and head.rollout.version == version else None
    new_head = replace(head, seq=head.seq + 1, rollout=None if rollout is not None else head.rollout)
    return Transition("reject", head.policy_id, version, head.active or version, new_head, {version: "rejected"},
                      rollout, "rejected" if rollout is not None else None)


def plan_canary_rollback(head: Head, version: str, status_of: StatusOf) -> Transition:
    """Stop a canary that hurts: the challenger is rolled back, all traffic returns to the champion."""
    _require(status_of, head.policy_id, version)
    rollout = _running(head, version, None)
    new_head = replace(head, seq=head.seq + 1, rollout=None)
    return Transition("canary_rollback", head.policy_id, version, rollout.champion, new_head,
                      {version: "rolled_back"}, rollout, "rolled_back")
