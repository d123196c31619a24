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

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .domain import routing
from .domain.cooldown import Cooldowns
from .domain.errors import FailedPrecondition, InvalidArgument, NotFound
from .domain.kinds import router as router_kind
from .domain.policy import Head
from .services.reporter import HttpSink, Reporter

__all__ = ["Assignment", "CostReader", "HttpSink", "ModelStatus", "PolicyClient", "PolicyReader", "Reporter",
           "RoutedCall", "Router"]

logger = logging.getLogger("opsloop.client")
POLL_RETRY_S = 10.0  # after a failed poll, the cached head is used this long before reading again


class PolicyReader(Protocol):
    """Where heads and versions come from (Firestore by default; a store's ``policies`` repository also fits)."""

    def head(self, policy_id: str) -> Head: ...

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None: ...


class HeadWatch(Protocol):
    """A running listener on one policy head (a Firestore ``Watch``)."""

    @property
    def is_active(self) -> bool: ...

    def unsubscribe(self) -> None: ...


class HeadWatcher(Protocol):
    """A reader that can also push head changes (``FirestorePolicyReader``)."""

    def watch_head(self, policy_id: str, on_head: Callable[[Head], None]) -> HeadWatch: ...


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


@dataclass
class ListenerStats:
    """How the live heads fared: pushed updates, listeners that dropped, heads a poll found newer."""

    updates: int = 0
    drops: int = 0
    stale: int = 0  # a poll found a newer head than the listener had delivered: it had gone quiet
    restarts: int = 0
    poll_failures: int = 0  # a poll failed (Firestore unreachable): the cached head was kept


class PolicyClient:
    """Kind-neutral assignment: which version (and so which params) a request runs.

    Heads are kept fresh two ways. With ``live`` (the default on Firestore) a listener (``on_snapshot``)
    on each policy's head pushes every activation, rollback, promotion or canary start to this process as
    it commits, so the next assignment uses it (well under 2 s on the emulator: ``bench/propagation.py``).
    Underneath, the head is read again every ``ttl_s`` as before: that poll is all there is while a
    listener is down, and it is how a listener that went quiet without closing is found (the poll's head
    is newer than the listener's). A listener that drops or goes stale is logged, counted in
    ``listener`` and started again after ``relisten_s``; a component is never left on a stale version for
    longer than ``ttl_s``.
    """

    def __init__(self, store: PolicyReader | None = None, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, live: bool = True, relisten_s: float = 30.0) -> None:
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
        self._live = live and hasattr(store, "watch_head")
        self._relisten = relisten_s
        self._watches: dict[str, HeadWatch] = {}
        self._relisten_at: dict[str, float] = {}
        self._token_counter = itertools.count(1)
        self._tokens: dict[str, int] = {}  # the registered listener's token: its callbacks say which one spoke
        self._heard: set[int] = set()  # tokens of listeners that delivered a head: only they can be stale
        self.reads = 0
        self.listener = ListenerStats()

    def close(self) -> None:
        """Stop the listeners (polling goes on if the client is used again)."""
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
            self._live = False
        for watch in watches:
            watch.unsubscribe()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _head(self, policy_id: str) -> Head:
        head = self._cached_head(policy_id)
        if head.active is None:
            raise NotFound(f"policy {policy_id} has no active version", {"id": policy_id})
        return head

    def _on_head(self, policy_id: str, head: Head, watch_id: int) -> None:
        """A listener's push: kept unless the cache already holds a newer head (a poll that raced it)."""
        now = self._clock()
        with self._lock:
            self._heard.add(watch_id)
            cached = self._heads.get(policy_id)
            if cached is None or head.seq >= cached[1].seq:
                self._heads[policy_id] = (now, head)
            self.listener.updates += 1

    def _check_listener(self, policy_id: str, now: float) -> None:
        """Start the head's listener (again, after a drop, once ``relisten_s`` passed); count a drop."""
        if not self._live:
            return
        with self._lock:
            watch = self._watches.get(policy_id)
            if watch is not None and watch.is_active:
                return
            if watch is not None:
                del self._watches[policy_id]
                self._relisten_at[policy_id] = now + self._relisten
                self.listener.drops += 1
                logger.warning("policy client: the listener on %s dropped; polling its head every %.0f s, "
                               "listening again in %.0f s", policy_id, self._ttl, self._relisten)
                return
            if now < self._relisten_at.get(policy_id, 0.0):
                return
            restart = policy_id in self._relisten_at
        try:
            watcher: HeadWatcher = self._store  # type: ignore[assignment]
            token = next(self._token_counter)
            new = watcher.watch_head(policy_id, lambda head: self._on_head(policy_id, head, token))
        except Exception:  # polling goes on; try again later
            logger.warning("policy client: could not listen to %s; polling", policy_id, exc_info=True)
            with self._lock:
                self._relisten_at[policy_id] = now + self._relisten
            return
        with self._lock:
            lost = not self._live or policy_id in self._watches
            if not lost:
                self._watches[policy_id] = new
                self._tokens[policy_id] = token
                self._relisten_at.pop(policy_id, None)
        if lost:  # another thread registered one first (unsubscribed outside the lock: it joins a thread)
            new.unsubscribe()
            return
        with self._lock:
            if restart:
                self.listener.restarts += 1

    def _cached_head(self, policy_id: str) -> Head:
        now = self._clock()
        self._check_listener(policy_id, now)
        with self._lock:
            cached = self._heads.get(policy_id)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        try:
            head = self._store.head(policy_id)
        except Exception:
            if cached is None:
                raise
            with self._lock:  # keep routing on the head we have; try again in a little while, not every request
                self.listener.poll_failures += 1
                kept = self._heads.get(policy_id, cached)[1]  # a push may have come while the read failed
                self._heads[policy_id] = (now - max(0.0, self._ttl - POLL_RETRY_S), kept)
            logger.warning("policy client: could not read the head of %s; keeping seq %d, retrying in %.0f s",
                           policy_id, kept.seq, min(self._ttl, POLL_RETRY_S), exc_info=True)
            return kept
        self.reads += 1
        stale: HeadWatch | None = None
        with self._lock:  # an unknown policy is remembered too: asking again costs no read within ttl_s
            cached = self._heads.get(policy_id)
            if cached is not None and cached[1].seq > head.seq:
                head = cached[1]  # a listener delivered a newer head while this read was on its way
            elif (cached is not None and head.seq > cached[1].seq and policy_id in self._watches
                  and self._watches[policy_id].is_active and self._tokens.get(policy_id) in self._heard):
                self.listener.stale += 1  # the listener is up but missed this change: start it again
                stale = self._watches.pop(policy_id)
                self._relisten_at[policy_id] = now
                logger.warning("policy client: the listener on %s missed a change (seq %d, had %d); restarting it",
                               policy_id, head.seq, cached[1].seq)
            self._heads[policy_id] = (now, head)
        if stale is not None:  # outside the lock: closing waits for the listener's thread, which may want it
            stale.unsubscribe()
        return head

    def forget_heads(self) -> None:
        """Read every head afresh at its next use (``assignPolicy`` does, once per call)."""
        with self._lock:
            self._heads.clear()

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
    model_propensity: float | None  # probability this try had of this model (given the tries before it)
    policy_id: str
    request_id: str = ""
    attempt: int = 0  # 0 for the first try, 1.. for fallbacks
    tried: tuple[str, ...] = ()  # the models tried before this one, in order
    fallback_of: str | None = None  # the model whose outcome this try falls back from

    @property
    def policy_version(self) -> str:
        return f"{self.policy_id}@{self.version}"

    def observation(self, **fields: Any) -> dict[str, Any]:
        """The fields of this try's observation (``Reporter.report`` / ``recordObservation``); pass outcome,
        durationMs, costUsd... The first try logs its model propensity (what off-policy estimates weigh
        by). A fallback try is not the policy's choice for the request, so it logs no ``propensity``:
        ``meta.fallbackOf``, ``meta.attempt`` and ``meta.fallbackPropensity`` say what it was."""
        out: dict[str, Any] = {"policyVersion": self.policy_version, **fields}
        if self.model is not None:
            out.setdefault("component", f"router:{self.model}")
        if self.arm is not None:
            out["arm"] = self.arm
        if self.fallback_of is None:
            if self.model_propensity is not None:
                out["propensity"] = self.model_propensity
        else:
            out["meta"] = {**(fields.get("meta") or {}), "fallbackOf": self.fallback_of, "attempt": self.attempt,
                           "fallbackPropensity": self.model_propensity}
        return out


def pick_model(assignment: Assignment, request_id: str) -> tuple[str | None, float | None]:
    """The model a router version's ``modelWeights`` pick for ``request_id`` (None without weights)."""
    weights = assignment.params.get("modelWeights")
    if not isinstance(weights, dict) or not weights:
        return None, None
    return routing.pick_weighted(request_id, assignment.policy_version, {m: float(w) for m, w in weights.items()})


class CostReader(Protocol):
    def expected_costs(self, models: list[str]) -> dict[str, float]: ...


@dataclass(frozen=True)
class ModelStatus:
    model: str
    weight: float  # in the active version
    state: str  # ok | cooling | probing
    cooldown_ends_in_ms: float | None
    recent_failures: int  # in the last minute
    expected_cost_usd: float | None
    over_budget: bool  # expected cost above the version's maxCostUsd

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "weight": self.weight, "state": self.state,
                "cooldownEndsInMs": self.cooldown_ends_in_ms, "recentFailures": self.recent_failures,
                "expectedCostUsd": self.expected_cost_usd, "overBudget": self.over_budget}


class Router(PolicyClient):
    """The router kind's convenience: the assignment plus the model to call, and what to do after it.

        call = router.route(request_id, "router-core")
        while call is not None:
            outcome, ms = call_model(call.model)
            reporter.report(**call.observation(outcome=outcome, durationMs=ms))
            call = router.next(call, outcome)      # the fallback to try, or None

    The version's params steer it (``domain/kinds/router``): ``fallbackOn`` (on those outcomes ``next``
    offers the next model of the request's deterministic chain, at most ``maxFallbacks``),
    ``cooldownMs``/``allowedFails`` (a model failing that often in a minute is skipped for that long, then
    probed), ``maxCostUsd`` (models whose expected cost — the ``router:<model>`` stats, read every
    ``cost_ttl_s`` — is above it are chosen only when nothing else is left). The cooldowns are this
    process's own record of the outcomes ``next`` was told.
    """

    def __init__(self, store: PolicyReader | None = None, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, costs: CostReader | None = None,
                 cost_ttl_s: float = 300.0, live: bool = True, relisten_s: float = 30.0) -> None:
        super().__init__(store, ttl_s=ttl_s, clock=clock, live=live, relisten_s=relisten_s)
        if costs is None and hasattr(self._store, "expected_costs"):
            costs = self._store  # type: ignore[assignment]
        self._costs = costs
        self._cost_ttl = cost_ttl_s
        self._cost_cache: dict[tuple[str, ...], tuple[float, dict[str, float]]] = {}
        self._health = Cooldowns()
        self._settings_cache: dict[str, router_kind.RouterSettings] = {}

    def _settings(self, policy_version: str, params: dict[str, Any]) -> router_kind.RouterSettings:
        """The version's router settings, parsed once (versions never change); a stored version whose
        settings do not parse routes by its weights alone rather than failing requests (logged)."""
        cached = self._settings_cache.get(policy_version)
        if cached is not None:
            return cached
        try:
            cfg = router_kind.settings(params)
        except InvalidArgument as exc:
            logger.error("router: %s has bad router settings (%s); routing by its weights alone",
                         policy_version, exc.message)
            cfg = router_kind.RouterSettings()
        with self._lock:
            self._settings_cache[policy_version] = cfg
        return cfg

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    def _expected_costs(self, models: list[str]) -> dict[str, float]:
        if self._costs is None:
            return {}
        key = tuple(sorted(models))
        now = self._clock()
        with self._lock:
            cached = self._cost_cache.get(key)
            if cached is not None and now - cached[0] < self._cost_ttl:
                return cached[1]
        try:
            costs = self._costs.expected_costs(list(key))
        except Exception:  # the cost cap is advice: routing goes on without it
            logger.warning("router: expected costs unavailable; the cost cap is not applied", exc_info=True)
            costs = {}
        with self._lock:
            self._cost_cache[key] = (now, costs)
        return costs

    def _choose(self, a: Assignment, request_id: str, attempt: int, tried: tuple[str, ...],
                fallback_of: str | None) -> RoutedCall | None:
        weights = a.params.get("modelWeights")
        if not isinstance(weights, dict) or not weights:  # a version that reports only: no model to pick
            return None if attempt else RoutedCall(a.arm, a.version, a.propensity, None, None, a.policy_id, request_id)
        cfg = self._settings(a.policy_version, a.params)
        models = {m: float(w) for m, w in weights.items()}
        now = self._now_ms()
        with self._lock:
            cooling = self._health.cooling(now)
        costs = self._expected_costs(list(models)) if cfg.maxCostUsd is not None else {}
        picked = routing.choose_model(request_id, a.policy_version, models, attempt=attempt, tried=tried,
                                      cooling=cooling, costs=costs, max_cost=cfg.maxCostUsd)
        if picked is None:
            return None
        return RoutedCall(a.arm, a.version, a.propensity, picked[0], picked[1], a.policy_id, request_id,
                          attempt, tried, fallback_of)

    def route(self, request_id: str, policy_id: str) -> RoutedCall:
        """The arm and, for policies with ``modelWeights``, the model for this request's first try."""
        return self.first_try(self.assign(request_id, policy_id), request_id)

    def first_try(self, assignment: Assignment, request_id: str) -> RoutedCall:
        """The model of an assignment's first try (cooldowns and the cost cap applied)."""
        call = self._choose(assignment, request_id, 0, (), None)
        assert call is not None
        return call

    def next(self, call: RoutedCall, outcome: str) -> RoutedCall | None:
        """Record ``outcome`` of ``call``'s model (its cooldown count) and return the next try when the
        version falls back on that outcome and a model is left, else None."""
        if call.model is None:
            return None
        params = self.params(call.policy_id, call.version)
        cfg = self._settings(call.policy_version, params)
        with self._lock:
            self._health.record(call.model, outcome == "success", self._now_ms(), cfg.allowedFails,
                                float(cfg.cooldownMs))
        if outcome == "success" or outcome not in cfg.fallbackOn:
            return None
        if cfg.maxFallbacks is not None and call.attempt >= cfg.maxFallbacks:
            return None
        a = Assignment(call.policy_id, call.version, call.arm, params, call.propensity)
        return self._choose(a, call.request_id, call.attempt + 1, (*call.tried, call.model), call.model)

    def status(self, policy_id: str) -> list[ModelStatus]:
        """Each model of the active version: its weight, cooldown and recent failures, expected cost."""
        head = self._head(policy_id)
        assert head.active is not None
        params = self.params(policy_id, head.active)
        weights = params.get("modelWeights") or {}
        cfg = self._settings(f"{policy_id}@{head.active}", params)
        costs = self._expected_costs(list(weights)) if weights else {}
        now = self._now_ms()
        out = []
        for model in sorted(weights):
            with self._lock:
                h = self._health.health(model, now)
            cost = costs.get(model)
            out.append(ModelStatus(
                model, float(weights[model]), h.state,
                None if h.cooldown_until is None else round(h.cooldown_until - now, 1), h.recent_failures,
                cost, cost is not None and cfg.maxCostUsd is not None and cost > cfg.maxCostUsd))
        return out
