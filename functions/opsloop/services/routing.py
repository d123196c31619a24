"""The library components import to route requests: which policy version, and which model.

    router = Router()                                   # one per process
    call = router.route(request_id, "router-core")      # arm, version, propensity, model, model propensity
    ... call the model ...
    record_observation(component=f"router:{call.model}", policyVersion=call.policy_version,
                       arm=call.arm, propensity=call.model_propensity, ...)

Policy heads and versions are cached for ``ttl_s`` (default 5 minutes) and refreshed lazily, so routing
costs no Firestore read on the hot path. Assignment is deterministic (SHA-256 of the request id), so a
retried request keeps its arm and its model across processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..domain import routing
from ..domain.errors import FailedPrecondition, NotFound
from ..domain.policy import Head
from ..store.firestore_store import FirestoreStore


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


class Router:
    def __init__(self, store: FirestoreStore | None = None, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if store is None:
            from ..store.client import get_db

            store = FirestoreStore(get_db())
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._heads: dict[str, tuple[float, Head]] = {}
        self._params: dict[str, dict[str, Any]] = {}  # versions never change params: cached for good
        self.reads = 0

    def _head(self, policy_id: str) -> Head:
        now = self._clock()
        with self._lock:
            cached = self._heads.get(policy_id)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        head = self._store.head(policy_id)
        self.reads += 1
        if head.active is None:
            raise NotFound(f"policy {policy_id} has no active version", {"id": policy_id})
        with self._lock:
            self._heads[policy_id] = (now, head)
        return head

    def params(self, policy_id: str, version: str) -> dict[str, Any]:
        key = f"{policy_id}@{version}"
        with self._lock:
            if key in self._params:
                return self._params[key]
        doc = self._store.policy(policy_id, version)
        self.reads += 1
        if doc is None:
            raise NotFound(f"policy {key} does not exist", {"id": policy_id, "version": version})
        params = dict(doc.get("params") or {})
        with self._lock:
            self._params[key] = params
        return params

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

    def route(self, request_id: str, policy_id: str) -> RoutedCall:
        """The arm and, for policies with ``modelWeights``, the model for this request."""
        arm = self.choose_arm(request_id, policy_id)
        weights = self.params(policy_id, arm.version).get("modelWeights")
        model = model_p = None
        if isinstance(weights, dict) and weights:
            model, model_p = routing.pick_weighted(request_id, f"{policy_id}@{arm.version}",
                                                   {m: float(w) for m, w in weights.items()})
        return RoutedCall(arm.arm, arm.version, arm.propensity, model, model_p, policy_id)
