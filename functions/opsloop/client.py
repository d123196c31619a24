"""What a component imports: its assignment (``PolicyClient``, ``Router``) and its reporting (``Reporter``).

    client = PolicyClient()                                   # one per process
    a = client.assign(request_id, "autoscaler-core")          # version, arm, params, propensity
    ... act with a.params ...
    reporter.report(component="autoscaler:core", outcome="success", durationMs=812,
                    policyVersion=a.policy_version, arm=a.arm)

``Router`` is the router kind's convenience on top: the same assignment plus the model its weights pick.
Heads and versions are cached for ``ttl_s`` (default 5 minutes) and refreshed lazily, so assignment costs
no Firestore read on the hot path. Assignment is deterministic (SHA-256 of the request id salted with the
rollout id), so a retried request keeps its arm and its model across processes, and a component in another
language that hashes the same way — or asks ``assignPolicy`` over HTTP — agrees.

Installed on its own with ``pip install 'opsloop[client]'``: this module imports google-cloud-firestore,
pydantic and requests, nothing of the functions or the CLI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .domain import routing
from .domain.errors import FailedPrecondition, NotFound
from .domain.policy import Head
from .services.reporter import HttpSink, Reporter

__all__ = ["Assignment", "HttpSink", "PolicyClient", "PolicyReader", "Reporter", "RoutedCall", "Router"]


class PolicyReader(Protocol):
    """Where heads and versions come from (Firestore by default; a store's ``policies`` repository also fits)."""

    def head(self, policy_id: str) -> Head: ...

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Assignment:
    policy_id: str
    version: str
    arm: routing.ArmName | None  # None outside an experiment: such traffic is compared with nothing
    params: dict[str, Any]
    propensity: float  # probability of this arm
    kind: str = "router"

    @property
    def policy_version(self) -> str:
        return f"{self.policy_id}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"policyId": self.policy_id, "version": self.version, "arm": self.arm, "params": self.params,
                "propensity": self.propensity}


class PolicyClient:
    """Kind-neutral assignment: which version (and so which params) a request runs."""

    def __init__(self, store: PolicyReader | None = None, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if store is None:
            from .store.client import get_db
            from .store.policy_reader import FirestorePolicyReader

            store = FirestorePolicyReader(get_db())
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._heads: dict[str, tuple[float, Head]] = {}
        self._versions: dict[str, dict[str, Any]] = {}  # versions never change params: cached for good
        self.reads = 0

    def _head(self, policy_id: str) -> Head:
        head = self._cached_head(policy_id)
        if head.active is None:
            raise NotFound(f"policy {policy_id} has no active version", {"id": policy_id})
        return head

    def _cached_head(self, policy_id: str) -> Head:
        now = self._clock()
        with self._lock:
            cached = self._heads.get(policy_id)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        head = self._store.head(policy_id)
        self.reads += 1
        with self._lock:  # an unknown policy is remembered too: asking again costs no read within ttl_s
            self._heads[policy_id] = (now, head)
        return head

    def _version(self, policy_id: str, version: str) -> dict[str, Any]:
        key = f"{policy_id}@{version}"
        with self._lock:
            if key in self._versions:
                return self._versions[key]
        doc = self._store.policy(policy_id, version)
        self.reads += 1
        if doc is None:
            raise NotFound(f"policy {key} does not exist", {"id": policy_id, "version": version})
        kept = {"params": dict(doc.get("params") or {}), "kind": str(doc.get("kind") or "router")}
        with self._lock:
            self._versions[key] = kept
        return kept

    def params(self, policy_id: str, version: str) -> dict[str, Any]:
        return dict(self._version(policy_id, version)["params"])

    def choose_arm(self, request_id: str, policy_id: str) -> routing.ArmChoice:
        """The version ``request_id`` runs: the canary's challenger for its split share, else the champion.

        A shadow never receives live traffic.
        """
        head = self._head(policy_id)
        assert head.active is not None
        rollout = head.rollout
        if rollout is None or rollout.stage != "canary":
            return routing.ArmChoice(None, head.active, 1.0)
        if rollout.champion != head.active:
            raise FailedPrecondition(f"rollout of {policy_id} compares against {rollout.champion}, "
                                     f"but {head.active} is active", {"id": policy_id})
        return routing.assign(request_id, rollout.rollout_id, head.active, rollout.version, rollout.split)

    def assign(self, request_id: str, policy_id: str) -> Assignment:
        arm = self.choose_arm(request_id, policy_id)
        version = self._version(policy_id, arm.version)
        return Assignment(policy_id, arm.version, arm.arm, dict(version["params"]), arm.propensity, version["kind"])


@dataclass(frozen=True)
class RoutedCall:
    arm: routing.ArmName | None  # None outside a canary
    version: str
    propensity: float  # probability of this arm
    model: str | None
    model_propensity: float | None  # probability of this model under the chosen version
    policy_id: str

    @property
    def policy_version(self) -> str:
        return f"{self.policy_id}@{self.version}"


def pick_model(assignment: Assignment, request_id: str) -> tuple[str | None, float | None]:
    """The model a router version's ``modelWeights`` pick for ``request_id`` (None without weights)."""
    weights = assignment.params.get("modelWeights")
    if not isinstance(weights, dict) or not weights:
        return None, None
    return routing.pick_weighted(request_id, assignment.policy_version, {m: float(w) for m, w in weights.items()})


class Router(PolicyClient):
    """The router kind's convenience: the assignment plus the model its weights pick."""

    def route(self, request_id: str, policy_id: str) -> RoutedCall:
        """The arm and, for policies with ``modelWeights``, the model for this request."""
        a = self.assign(request_id, policy_id)
        model, model_p = pick_model(a, request_id)
        return RoutedCall(a.arm, a.version, a.propensity, model, model_p, policy_id)
