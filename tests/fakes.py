"""An in-memory ``ports.Store``: services run on it in unit tests, without the emulator.

Each repository keeps plain dicts behind one lock and hands out deep copies, so a caller that mutates
what it read changes nothing stored (as with Firestore). ``tests/emulator/test_repo_contract.py`` runs
the same checks against this fake and against ``FirestoreStore``, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opsloop.domain import audit as audit_domain
from opsloop.domain import config as config_domain
from opsloop.domain import drift as drift_domain
from opsloop.domain import feedback as feedback_domain
from opsloop.domain import generations as gen_domain
from opsloop.domain import policy as policy_domain
from opsloop.domain import shards
from opsloop.domain.ingest import SCORED_FIELDS, Cursor, StoredObservation
from opsloop.domain.presence import Presence, Pruning
from opsloop.domain.stats import Deltas, Summary, total
from opsloop.domain.windows import Segment, keeps_newer
from opsloop.services import ports
from opsloop.store import paths
from opsloop.store.util import int_or_none, now_ms


class AlreadyExists(Exception):
    """What Firestore raises for a create over an existing document (``google.api_core`` AlreadyExists)."""


class NotFound(Exception):
    """What Firestore raises for an update of a missing document (``google.api_core`` NotFound)."""


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``set(..., merge=True)``: nested maps merge, everything else is replaced (an empty map too: Firestore
    writes ``{}`` as a value, it has no fields to merge)."""
    out = dict(base)
    for key, value in update.items():
        merge = isinstance(value, dict) and value and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if merge else value
    return out


class _Shared:
    """State several repositories write in one atomic step (a transition writes a rollout and an audit entry)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: dict[str, dict[str, Any]] = {}
        self.good: dict[str, Any] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.audit: dict[str, dict[str, Any]] = {}
        self.chains: dict[str, audit_domain.ChainHead] = {}
        self.rollouts: dict[str, dict[str, Any]] = {}
        self.evaluations: dict[str, dict[str, dict[str, Any]]] = {}
        self.deltas: dict[str, tuple[int, dict[str, tuple[dict[str, Any], Summary]]]] = {}
        self.buckets: dict[str, tuple[dict[str, Any], Summary]] = {}
        self.generations: dict[str, Any] | None = None  # ops_runs/reward-generations

    def live_generations(self) -> tuple[Any, ...]:
        state = self.generations or {}
        read, write = state.get("read"), state.get("write")
        return (read,) if read == write else (read, write)

    def append_audit(self, chain: str, entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        sealed, head = audit_domain.seal(entry, chain, self.chains.get(chain, audit_domain.ChainHead.from_doc(None)))
        doc_id = uuid.uuid4().hex
        self.audit[doc_id] = sealed
        self.chains[chain] = head
        return doc_id, copy.deepcopy(sealed)

    def create_alert(self, alert_id: str, doc: dict[str, Any]) -> None:
        if alert_id in self.alerts:
            raise AlreadyExists(alert_id)
        self.alerts[alert_id] = copy.deepcopy(doc)


class MemoryConfigRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared

    def get(self, name: str) -> dict[str, Any]:
        with self._s.lock:
            return copy.deepcopy(self._s.config.get(name, {}))

    def get_many(self, names: Iterable[str]) -> dict[str, Any]:
        with self._s.lock:
            docs = {n: copy.deepcopy(self._s.config[n]) for n in names if n in self._s.config}
            return {"docs": docs, "good": copy.deepcopy(self._s.good)}

    def save_good(self, name: str, data: dict[str, Any]) -> None:
        with self._s.lock:
            self._s.good[name] = copy.deepcopy(data)

    def set(self, name: str, data: dict[str, Any], merge: bool = True) -> None:
        with self._s.lock:
            stored = self._s.config.get(name, {}) if merge else {}
            self._s.config[name] = _merge(stored, copy.deepcopy(data))

    def set_flags(self, learning: dict[str, bool], actor: str) -> config_domain.FlagsChange:
        with self._s.lock:
            change = config_domain.change_flags(copy.deepcopy(self._s.config.get(paths.FLAGS_DOC, {})), learning)
            if change.doc is not None:
                self._s.config[paths.FLAGS_DOC] = copy.deepcopy(change.doc)
                self._s.append_audit(audit_domain.FLAGS_CHAIN, {
                    "ts": now_ms(), "actor": actor, "action": "set_flags", "id": "config/flags",
                    "from": change.old, "to": change.new})
            return change


def _since(rows: dict[str, dict[str, Any]], ts: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
    found = [(i, copy.deepcopy(d)) for i, d in rows.items() if isinstance(d.get("ts"), int) and d["ts"] >= ts]
    return sorted(found, key=lambda row: (row[1]["ts"], row[0]))[:limit]


class MemoryAlertRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared

    def since(self, ts: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with self._s.lock:
            return _since(self._s.alerts, ts, limit)

    def raise_once(self, alert_id: str, doc: dict[str, Any]) -> bool:
        with self._s.lock:
            try:
                self._s.create_alert(alert_id, doc)
            except AlreadyExists:
                return False
            return True

    def note(self, alert_id: str, doc: dict[str, Any]) -> None:
        with self._s.lock:
            stored = self._s.alerts.get(alert_id, {})
            self._s.alerts[alert_id] = {**_merge(stored, copy.deepcopy(doc)), "count": int(stored.get("count", 0)) + 1}

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._s.lock:
            docs = [d for d in self._s.alerts.values() if "ts" in d]
            return copy.deepcopy(sorted(docs, key=lambda d: d["ts"], reverse=True)[:limit])


class MemoryObservationRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.docs: dict[str, dict[str, Any]] = {}
        self.rewards: dict[str, dict[str, Any]] = {}
        self.components: dict[str, int] = {}
        self.changed: dict[str, dt.datetime] = {}  # component -> changedAt
        self.due: dict[str, int] = {}  # component -> statsDueAt
        self._cursors: dict[str | None, Cursor] = {}
        self._clock = dt.datetime.now(dt.UTC)

    def _received(self) -> dt.datetime:
        # strictly increasing, as the order of receivedAt must be total for the scorer's cursor
        self._clock = max(self._clock + dt.timedelta(microseconds=1), dt.datetime.now(dt.UTC))
        return self._clock

    def insert(self, docs: list[tuple[str, dict[str, Any], bool]]) -> list[str]:
        with self._s.lock:
            existing = sorted(doc_id for doc_id, _, _ in docs if doc_id in self.docs)
            at = self._received()
            for doc_id, data, _ in docs:
                if doc_id not in self.docs:
                    self.docs[doc_id] = {**copy.deepcopy(data), "receivedAt": at}
            return existing

    def cursor(self, shard: str | None = None) -> Cursor:
        with self._s.lock:
            return copy.deepcopy(self._cursors.get(shard, Cursor(components={})))

    def active_components(self, since_ts: int) -> dict[str, int]:
        with self._s.lock:
            return {c: ts for c, ts in self.components.items() if ts >= since_ts}

    def changed_components(self, since: dt.datetime) -> set[str]:
        with self._s.lock:
            return {c for c, at in self.changed.items() if at >= since}

    def due_components(self, by_ms: int) -> set[str]:
        with self._s.lock:
            return {c for c, at in self.due.items() if at <= by_ms}

    def set_stats_due(self, due: dict[str, int | None]) -> None:
        with self._s.lock:
            for comp, at in due.items():
                if at is None:
                    self.due.pop(comp, None)
                else:
                    self.due[comp] = at

    def migrate_legacy_components(self) -> int:
        return 0  # the fake never had the legacy map on its cursor

    def _ordered(self, shard: str | None = None) -> list[tuple[dt.datetime, str]]:
        return sorted((d["receivedAt"], doc_id) for doc_id, d in self.docs.items()
                      if shard is None or d.get("shard") == shard)

    def after(self, cursor: Cursor, upper: dt.datetime, limit: int,
              shard: str | None = None) -> list[StoredObservation]:
        with self._s.lock:
            out = []
            for received, doc_id in self._ordered(shard):
                if received > upper or (cursor.received_at is not None
                                        and (received, doc_id) <= (cursor.received_at, cursor.doc_id)):
                    continue
                data = {k: v for k, v in self.docs[doc_id].items() if k in SCORED_FIELDS}
                out.append(StoredObservation(doc_id, copy.deepcopy(data), received))
                if len(out) == limit:
                    break
            return out

    def backlog(self, cursor: Cursor, upper: dt.datetime, shard: str | None = None) -> int:
        with self._s.lock:
            return sum(1 for received, _ in self._ordered(shard)
                       if received <= upper and (cursor.received_at is None or received > cursor.received_at))

    def pages(self, since_ms: int, until_ms: int, component: str | None = None, page_size: int = 1000,
              keys: list[str] | None = None) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        with self._s.lock:
            rows = sorted((d["ts"], doc_id) for doc_id, d in self.docs.items()
                          if since_ms <= d["ts"] < until_ms and (component is None or d.get("component") == component)
                          and (keys is None or d.get("shard") in keys))
            found = [(doc_id, copy.deepcopy(self.docs[doc_id])) for _, doc_id in rows]
        for i in range(0, len(found), page_size):
            yield found[i : i + page_size]

    def stamp_unkeyed(self, after: str | None, limit: int, key: str,
                      scored_through: Cursor | None = None) -> shards.StampPage:
        with self._s.lock:
            ids = sorted(i for i in self.docs if after is None or i > after)[:limit]
            seen = {layout for i in ids if (layout := shards.layout_of(self.docs[i].get("shard"))) is not None}
            unkeyed = [i for i in ids if shards.layout_of(self.docs[i].get("shard")) is None]
            late = sum(1 for i in unkeyed if scored_through is not None and (
                scored_through.received_at is None
                or (self.docs[i]["receivedAt"], i) > (scored_through.received_at, scored_through.doc_id)))
            for i in unkeyed:
                self.docs[i]["shard"] = key
            return shards.StampPage(ids[-1] if ids else after, len(unkeyed), frozenset(seen), len(ids) < limit, late)

    def rewards_for(self, obs_ids: list[str]) -> dict[str, dict[str, Any]]:
        with self._s.lock:
            return {i: copy.deepcopy(self.rewards[i]) for i in obs_ids if i in self.rewards}

    def commit_chunk(self, expected: Cursor, new_cursor: Cursor, rewards: list[tuple[str, dict[str, Any]]],
                     deltas: Deltas, delta_id: str | None = None,
                     live: tuple[int, ...] | None = None, shard: str | None = None) -> bool:
        with self._s.lock:
            if not self._cursors.get(shard, Cursor()).same_position(expected):
                return False
            if live is not None and live != self._s.live_generations():
                return False
            if deltas:
                self._s.deltas[delta_id or uuid.uuid4().hex] = (now_ms(), copy.deepcopy(deltas))
            for obs_id, data in rewards:
                self.rewards[obs_id] = copy.deepcopy(data)
            for comp, ts in (new_cursor.components or {}).items():
                self.components[comp] = max(ts, self.components.get(comp, ts))
                self.changed[comp] = dt.datetime.now(dt.UTC)
            self._cursors[shard] = Cursor(new_cursor.received_at, new_cursor.doc_id, {})
            return True


class MemoryBucketRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared

    def _add(self, parts: ports.Parts) -> None:
        for bid, (ident, added) in parts.items():
            base = self._s.buckets.get(bid, (ident, Summary()))[1]
            self._s.buckets[bid] = (dict(ident), total([base, *added]))

    def fold_pending(self, max_docs: int = 40, max_buckets: int = 400) -> tuple[int, int]:
        with self._s.lock:
            taken = sorted(self._s.deltas.items(), key=lambda kv: kv[1][0])[:max_docs]
            parts: ports.Parts = {}
            for _, (_, entries) in taken:
                for bid, (ident, summary) in entries.items():
                    parts.setdefault(bid, (ident, []))[1].append(summary)
            self._add(parts)
            for delta_id, _ in taken:
                del self._s.deltas[delta_id]
            return len(taken), len(parts)

    def fold_own(self, delta_ids: list[str], parts: ports.Parts) -> bool:
        with self._s.lock:
            if any(d not in self._s.deltas for d in delta_ids):
                return False
            self._add(parts)
            for d in delta_ids:
                del self._s.deltas[d]
            return True

    def pending(self) -> int:
        with self._s.lock:
            return len(self._s.deltas)

    def load_segments(self, component: str, segments: Iterable[Segment]) -> list[Summary]:
        return [s for seg in segments for _, s in self.series(component, seg.level, seg.start, seg.end)]

    def first_start(self, component: str, level: str, start: int, end: int) -> int | None:
        found = self.series(component, level, start, end)
        return found[0][0] if found else None

    def series(self, component: str, level: str, start: int, end: int) -> list[tuple[int, Summary]]:
        with self._s.lock:
            found = [(int(ident["start"]), copy.deepcopy(summary)) for ident, summary in self._s.buckets.values()
                     if ident["component"] == component and ident["level"] == level and start <= ident["start"] < end]
            return sorted(found, key=lambda item: item[0])

    def get_many(self, ids: list[str]) -> dict[str, Summary]:
        with self._s.lock:
            return {i: copy.deepcopy(self._s.buckets[i][1]) for i in ids if i in self._s.buckets}

    # the record of the buckets holding data: here always complete, read off the buckets themselves
    def index_state(self, now: int) -> dict[str, Any]:
        return {"since": now, "complete": True, "built": {}}

    def mark_built(self, generation: int, valid_from: int) -> None:
        pass

    def presence(self, keys: list[str]) -> dict[str, Presence]:
        with self._s.lock:
            return {key: Presence.of([int(ident["start"]) for ident, _ in self._s.buckets.values()
                                      if ident["component"] == key and ident["level"] == "5m"], 0) for key in keys}

    def index_key(self, component: str, generation: int, valid_from: int) -> int:
        return 0

    def forget(self, pruning: dict[str, Pruning]) -> None:
        pass


class MemoryStatsRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.docs: dict[str, dict[str, Any]] = {}

    def write(self, docs: dict[str, dict[str, Any]], schedule_ms: int, now: int | None = None) -> int:
        clock = now_ms() if now is None else now
        with self._s.lock:
            written = 0
            for sid, data in docs.items():
                if keeps_newer(int_or_none(self.docs.get(sid, {}).get("ts")), schedule_ms, clock):
                    continue
                self.docs[sid] = copy.deepcopy(data)
                written += 1
            return written

    def all(self, component: str | None = None) -> list[dict[str, Any]]:
        with self._s.lock:
            return [copy.deepcopy(d) for d in self.docs.values()
                    if component is None or d.get("component") == component]

    def for_window(self, components: list[str], window: str) -> dict[str, dict[str, Any]]:
        with self._s.lock:
            found = (self.docs.get(paths.stats_id(c, window)) for c in components)
            return {str(d.get("component")): copy.deepcopy(d) for d in found if d is not None}


class MemoryCardRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.docs: dict[str, dict[str, Any]] = {}
        self.marker: int | None = None

    def refreshed_for(self) -> int | None:
        return self.marker

    def write(self, cards: dict[str, dict[str, Any]], schedule_ms: int) -> int:
        with self._s.lock:
            self.docs.update(copy.deepcopy(cards))
            self.marker = schedule_ms
            return len(cards)

    def get(self, card_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self.docs.get(card_id))

    def all(self) -> list[dict[str, Any]]:
        with self._s.lock:
            return copy.deepcopy(list(self.docs.values()))


class MemoryPolicyRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.docs: dict[str, dict[str, Any]] = {}  # "id@version" -> document
        self.heads: dict[str, dict[str, Any]] = {}

    def _require_learning(self) -> None:
        config_domain.require_learning(copy.deepcopy(self._s.config.get(paths.FLAGS_DOC)))

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self.docs.get(f"{policy_id}@{version}"))

    def head(self, policy_id: str) -> policy_domain.Head:
        with self._s.lock:
            if policy_id in self.heads:
                return policy_domain.Head.from_doc(policy_id, copy.deepcopy(self.heads[policy_id]))
            actives = sorted(str(d["version"]) for d in self.docs.values()
                             if d.get("id") == policy_id and d.get("status") == "active")
            return policy_domain.Head(policy_id, actives[-1] if actives else None)

    def versions(self, policy_id: str) -> list[dict[str, Any]]:
        with self._s.lock:
            return [copy.deepcopy(d) for d in self.docs.values() if d.get("id") == policy_id]

    def with_status(self, status: str) -> list[dict[str, Any]]:
        with self._s.lock:
            return [copy.deepcopy(d) for d in self.docs.values() if d.get("status") == status]

    def all(self) -> list[dict[str, Any]]:
        with self._s.lock:
            return copy.deepcopy(list(self.docs.values()))

    def create_version(self, doc: dict[str, Any], audit: dict[str, Any], require_learning: bool = False) -> bool:
        with self._s.lock:
            if require_learning:
                self._require_learning()
            key = f"{doc['id']}@{doc['version']}"
            if key in self.docs:
                return False
            now = now_ms()
            params_hash = audit_domain.digest(doc.get("params") or {})
            audit_id, sealed = self._s.append_audit(audit_domain.policy_chain(str(doc["id"])),
                                                    {**audit, "ts": now, "paramsHash": params_hash})
            self.docs[key] = {**copy.deepcopy(doc), "createdAt": doc.get("createdAt") or now,
                              "paramsHash": params_hash, "createdByAudit": {"id": audit_id, "hash": sealed["hash"]}}
            return True

    def apply_transition(self, policy_id: str, plan: ports.Plan, actor: str,
                         extra_audit: dict[str, Any] | None = None, require_learning: bool = False,
                         ) -> tuple[policy_domain.Transition | None, dict[str, Any] | None]:
        with self._s.lock:
            if require_learning:
                self._require_learning()

            def status_of(version: str) -> str | None:
                doc = self.docs.get(f"{policy_id}@{version}")
                return None if doc is None else str(doc.get("status"))

            transition = plan(self.head(policy_id), status_of)
            if transition is None:
                return None, None
            now = now_ms()
            updates = transition.version_updates(now, actor)
            for version in updates:  # Firestore's update() of a missing document fails the whole transaction
                if f"{policy_id}@{version}" not in self.docs:
                    raise NotFound(f"no document to update: {policy_id}@{version}")
            for version, fields in updates.items():
                key = f"{policy_id}@{version}"
                self.docs[key] = {**self.docs[key], **fields}
            self.heads[policy_id] = {**transition.head.to_doc(), "updatedAt": now}
            rollout_doc = transition.rollout_doc(now, actor)
            if transition.rollout is not None and rollout_doc is not None:
                rid = transition.rollout.rollout_id
                self._s.rollouts[rid] = _merge(self._s.rollouts.get(rid, {}), rollout_doc)
            _, sealed = self._s.append_audit(audit_domain.policy_chain(policy_id),
                                             transition.audit_entry(now, actor, extra_audit))
            return transition, sealed

    def update(self, policy_id: str, version: str, fields: dict[str, Any]) -> None:
        policy_domain.check_non_lifecycle(fields)
        with self._s.lock:
            if f"{policy_id}@{version}" not in self.docs:
                raise NotFound(f"no document to update: {policy_id}@{version}")
            self.docs[f"{policy_id}@{version}"].update(copy.deepcopy(fields))


class MemoryRolloutRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._s.lock:
            rows = [{**copy.deepcopy(d), "rolloutId": rid} for rid, d in self._s.rollouts.items() if "startedAt" in d]
            return sorted(rows, key=lambda d: d.get("startedAt") or 0, reverse=True)[:limit]

    def running(self) -> list[dict[str, Any]]:
        with self._s.lock:
            return [copy.deepcopy(d) for d in self._s.rollouts.values() if d.get("status") == "running"]

    def get(self, rollout_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self._s.rollouts.get(rollout_id))

    def ended_canaries(self, policy_id: str | None = None) -> list[dict[str, Any]]:
        with self._s.lock:
            return [{**copy.deepcopy(d), "rolloutId": rid} for rid, d in self._s.rollouts.items()
                    if d.get("stage") == "canary" and d.get("status") not in (None, "running")
                    and (policy_id is None or d.get("id") == policy_id)]

    def record_evaluation(self, rollout_id: str, evaluation: dict[str, Any], summary: dict[str, Any]) -> None:
        with self._s.lock:
            self._s.evaluations.setdefault(rollout_id, {})[str(evaluation["ts"])] = copy.deepcopy(evaluation)
            self._s.rollouts[rollout_id] = _merge(self._s.rollouts.get(rollout_id, {}), copy.deepcopy(summary))

    def evaluations(self, rollout_id: str) -> list[dict[str, Any]]:
        with self._s.lock:
            return copy.deepcopy(sorted(self._s.evaluations.get(rollout_id, {}).values(), key=lambda e: e["ts"]))


class MemoryExperimentRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.docs: dict[str, dict[str, Any]] = {}

    def ids(self, policy_id: str | None = None) -> set[str]:
        with self._s.lock:
            return {i for i, d in self.docs.items() if policy_id is None or d.get("id") == policy_id}

    def create(self, doc: dict[str, Any]) -> bool:
        with self._s.lock:
            key = str(doc["experimentId"])
            if key in self.docs:
                return False
            self.docs[key] = copy.deepcopy(doc)
            return True

    def recent(self, policy_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        with self._s.lock:
            docs = [copy.deepcopy(d) for d in self.docs.values() if policy_id is None or d.get("id") == policy_id]
        return sorted(docs, key=lambda d: (d.get("endedAt") or 0, str(d.get("experimentId"))), reverse=True)[:limit]

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self.docs.get(experiment_id))


class MemoryAuditRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared

    def since(self, ts: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with self._s.lock:
            return _since(self._s.audit, ts, limit)

    def chains(self) -> dict[str, audit_domain.ChainHead]:
        with self._s.lock:
            return dict(self._s.chains)

    def entries(self, chain: str) -> list[tuple[str, dict[str, Any]]]:
        with self._s.lock:
            rows = [(i, copy.deepcopy(d)) for i, d in self._s.audit.items() if d.get("chain") == chain]
            return sorted(rows, key=lambda row: row[1]["seq"])

    def unchained(self, known: set[str]) -> list[tuple[str, dict[str, Any]]]:
        with self._s.lock:
            return [(i, copy.deepcopy(d)) for i, d in self._s.audit.items() if d.get("chain") not in known]

    def log(self, limit: int = 100, policy_id: str | None = None) -> list[dict[str, Any]]:
        with self._s.lock:
            rows = [copy.deepcopy(d) for d in self._s.audit.values() if policy_id is None or d.get("id") == policy_id]
            return sorted(rows, key=lambda d: d["ts"], reverse=True)[:limit]


class MemoryRunRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.leases: dict[str, tuple[str, float]] = {}  # name -> (owner, expires at, monotonic seconds)
        self.runs: dict[str, dict[str, Any]] = {}

    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        with self._s.lock:
            held = self.leases.get(name)
            if held is not None and held[0] != owner and held[1] > time.monotonic():
                return False
            self.leases[name] = (owner, time.monotonic() + ttl_s)
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._s.lock:
            if self.leases.get(name, ("", 0.0))[0] == owner:
                del self.leases[name]

    def record(self, run_id: str, data: dict[str, Any]) -> None:
        with self._s.lock:
            self.runs[run_id] = _merge(self.runs.get(run_id, {}), copy.deepcopy(data))

    def change(self, doc_id: str,
               fn: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any] | None:
        with self._s.lock:
            before = copy.deepcopy(self.runs.get(doc_id))
            after = fn(copy.deepcopy(before))
            if after is not None and after != before:
                self.runs[doc_id] = copy.deepcopy(after)
                return after
            return before

    def get(self, doc_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self.runs.get(doc_id))

    def stamp(self, doc_id: str) -> Any:
        at = dt.datetime.now(dt.UTC)
        self.record(doc_id, {"at": at})
        return at


class MemoryDriftRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.states: dict[str, dict[str, Any]] = {}

    def get(self, component: str) -> dict[str, Any]:
        with self._s.lock:
            return copy.deepcopy(self.states.get(component, {}))

    def get_many(self, components: list[str]) -> dict[str, dict[str, Any]]:
        with self._s.lock:
            return {c: copy.deepcopy(self.states[c]) for c in components if c in self.states}

    def update(self, component: str,
               advance: Callable[[dict[str, Any]], drift_domain.EpisodeUpdate]) -> list[str]:
        with self._s.lock:
            update = advance(copy.deepcopy(self.states.get(component, {})))
            for alert_id in update.alerts:  # all or nothing, as in the transaction
                if alert_id in self._s.alerts:
                    raise AlreadyExists(alert_id)
            for alert_id, alert in update.alerts.items():
                self._s.create_alert(alert_id, alert)
            self.states[component] = copy.deepcopy(update.state)
            return list(update.raised)


class MemoryFeedbackRepo:
    def __init__(self, shared: _Shared, observations: MemoryObservationRepo) -> None:
        self._s = shared
        self._obs = observations
        self.docs: dict[str, dict[str, Any]] = {}

    def record(self, items: list[tuple[str, dict[str, Any]]],
               plan: Callable[[feedback_domain.FeedbackRead, list[tuple[str, dict[str, Any]]]],
                              feedback_domain.FeedbackWrites]) -> feedback_domain.FeedbackWrites:
        with self._s.lock:
            obs_ids = sorted({d["observationId"] for _, d in items})
            rewards = {i: copy.deepcopy(self._obs.rewards[i]) for i in obs_ids if i in self._obs.rewards}
            observations = {i: {k: copy.deepcopy(v) for k, v in self._obs.docs[i].items() if k in SCORED_FIELDS}
                            for i in obs_ids
                            if i in self._obs.docs and feedback_domain.needs_observation(rewards.get(i))}
            existing = {fid for fid, d in items if d["observationId"] not in rewards and fid in self.docs}
            writes = plan(feedback_domain.FeedbackRead(copy.deepcopy(self._s.generations), rewards, observations,
                                                       existing), copy.deepcopy(items))
            for obs_id in writes.metrics:  # Firestore's update() of a missing document fails the transaction
                if obs_id not in self._obs.docs:
                    raise NotFound(f"no document to update: {obs_id}")
            for obs_id, doc in writes.rewards.items():
                self._obs.rewards[obs_id] = copy.deepcopy(doc)
            for obs_id, metrics in writes.metrics.items():
                obs = self._obs.docs[obs_id]
                obs["metrics"] = {**(obs.get("metrics") or {}), **copy.deepcopy(metrics)}
            for fid, doc in writes.pending:
                self.docs[fid] = {**copy.deepcopy(doc), "status": "pending", "receivedAt": now_ms()}
            batch_id = uuid.uuid4().hex
            for side, parts in (("out", writes.minus), ("in", writes.plus)):
                for i, part in enumerate(parts):
                    self._s.deltas[f"fb-{batch_id}-{side}-{i}"] = (now_ms(), copy.deepcopy(part))
            if writes.plus:
                for doc in writes.rewards.values():
                    self._obs.changed[str(doc.get("component"))] = dt.datetime.now(dt.UTC)
            return writes

    def pending(self, limit: int = 500) -> list[tuple[str, dict[str, Any]]]:
        with self._s.lock:
            rows = [(i, copy.deepcopy(d)) for i, d in self.docs.items() if d.get("status") == "pending"]
            return sorted(rows, key=lambda row: row[1]["receivedAt"])[:limit]

    def apply(self, feedback_id: str, correct: ports.Correction) -> str:
        with self._s.lock:
            fb = self.docs.get(feedback_id)
            if fb is None:
                return "gone"
            if fb.get("status") != "pending":
                return "done"
            obs_id = str(fb["observationId"])
            if obs_id not in self._obs.docs:
                fb.update(status="gone", appliedAt=now_ms())
                return "gone"
            if obs_id not in self._obs.rewards:
                return "waiting"
            fix = correct(copy.deepcopy(self._obs.docs[obs_id]), copy.deepcopy(self._obs.rewards[obs_id]))
            now = now_ms()
            if fix is not None:
                new_reward, minus, plus = fix
                self._obs.rewards[obs_id] = copy.deepcopy(new_reward)
                if minus:
                    self._s.deltas[f"fb-{feedback_id}-out"] = (now, copy.deepcopy(minus))
                    self._s.deltas[f"fb-{feedback_id}-in"] = (now, copy.deepcopy(plus))
                    self._obs.changed[str(self._obs.docs[obs_id].get("component"))] = dt.datetime.now(dt.UTC)
            fb.update(status="applied", appliedAt=now, corrected=fix is not None)
            return "applied"


class MemoryGenerationRepo:
    def __init__(self, shared: _Shared, observations: MemoryObservationRepo) -> None:
        self._s = shared
        self._obs = observations

    def get(self) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self._s.generations)

    def adopt(self, plan: Callable[[dict[str, Any] | None, Cursor], dict[str, Any] | None],
              shard: str | None = None) -> dict[str, Any] | None:
        with self._s.lock:
            new = plan(copy.deepcopy(self._s.generations), self._obs.cursor(shard))
            if new is not None:
                self._s.generations = copy.deepcopy(new)
            return copy.deepcopy(self._s.generations)

    def backfill_chunk(self, limit: int, build: gen_domain.Build) -> gen_domain.BackfillChunk | None:
        with self._s.lock:
            state = self._s.generations
            boundary = (state or {}).get("boundary")
            if state is None or state.get("read") == state.get("write") or not isinstance(boundary, dict):
                return None
            position = state.get("position")
            if isinstance(position, dict) and not state.get("byName"):  # begun in ingestion order: start over
                state, position = {**state, "position": None, "checkRewards": True}, None
            after = str(position.get("docId") or "") if isinstance(position, dict) else ""
            ids = sorted(i for i in self._obs.docs if i > after)[:limit]  # document id order, as Firestore's
            page = [StoredObservation(i, {k: v for k, v in copy.deepcopy(self._obs.docs[i]).items()
                                          if k in SCORED_FIELDS}, self._obs.docs[i]["receivedAt"]) for i in ids]
            stored = ({o.doc_id: copy.deepcopy(self._obs.rewards[o.doc_id]) for o in page
                       if o.doc_id in self._obs.rewards} if state.get("checkRewards") else None)
            chunk = build(copy.deepcopy(state), page, len(page) < limit, stored)
            if chunk is None:
                return None
            for obs_id, data in chunk.rewards:
                scores = {**(self._obs.rewards.get(obs_id) or {}).get("scores", {}), **data.get("scores", {})}
                self._obs.rewards[obs_id] = {**self._obs.rewards.get(obs_id, {}), **copy.deepcopy(data),
                                             "scores": scores}
            if chunk.deltas:
                self._s.deltas[chunk.delta_id] = (now_ms(), copy.deepcopy(chunk.deltas))
            self._s.generations = {**copy.deepcopy(chunk.state), "byName": True}
            return chunk

    def remaining(self, position: Cursor | None, boundary: Cursor) -> int:
        with self._s.lock:
            after = "" if position is None else position.doc_id
            return sum(1 for i in self._obs.docs if i > after)


class MemoryLearningRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.docs: dict[str, dict[str, Any]] = {}

    def get(self, policy_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self.docs.get(policy_id))

    def all(self) -> list[dict[str, Any]]:
        with self._s.lock:
            return copy.deepcopy(list(self.docs.values()))

    def write(self, policy_id: str, doc: dict[str, Any]) -> None:
        with self._s.lock:
            self.docs[policy_id] = copy.deepcopy(doc)


class MemoryEventRepo:
    def __init__(self, shared: _Shared) -> None:
        self._s = shared
        self.docs: dict[str, dict[str, Any]] = {}
        self._cursor: dict[str, Any] = {}

    def cursor(self) -> dict[str, Any]:
        with self._s.lock:
            return copy.deepcopy(self._cursor)

    def save_cursor(self, cursor: dict[str, Any]) -> None:
        with self._s.lock:
            self._cursor = _merge(self._cursor, copy.deepcopy(cursor))

    def add(self, docs: list[dict[str, Any]]) -> list[str]:
        with self._s.lock:
            created = [str(d["id"]) for d in docs if d["id"] not in self.docs]
            for d in docs:
                self.docs.setdefault(str(d["id"]), copy.deepcopy(d))
            return created

    def due(self, now_ms: int, limit: int) -> list[dict[str, Any]]:
        with self._s.lock:
            rows = [copy.deepcopy(d) for d in self.docs.values()
                    if d.get("status") == "pending" and d.get("nextAttemptAt", 0) <= now_ms]
            return sorted(rows, key=lambda d: d["nextAttemptAt"])[:limit]

    def update(self, event_id: str, fields: dict[str, Any]) -> None:
        with self._s.lock:
            self.docs[event_id] = {**self.docs[event_id], **copy.deepcopy(fields)}

    def get(self, event_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            return copy.deepcopy(self.docs.get(event_id))


class MemoryStore:
    """Every repository in memory; satisfies ``ports.Store``."""

    def __init__(self) -> None:
        shared = _Shared()
        self.shared = shared
        self.configs = MemoryConfigRepo(shared)
        self.alerts = MemoryAlertRepo(shared)
        self.observations = MemoryObservationRepo(shared)
        self.buckets = MemoryBucketRepo(shared)
        self.stats = MemoryStatsRepo(shared)
        self.cards = MemoryCardRepo(shared)
        self.policies = MemoryPolicyRepo(shared)
        self.rollouts = MemoryRolloutRepo(shared)
        self.experiments = MemoryExperimentRepo(shared)
        self.audit = MemoryAuditRepo(shared)
        self.runs = MemoryRunRepo(shared)
        self.drift = MemoryDriftRepo(shared)
        self.feedback = MemoryFeedbackRepo(shared, self.observations)
        self.generations = MemoryGenerationRepo(shared, self.observations)
        self.learning = MemoryLearningRepo(shared)
        self.events = MemoryEventRepo(shared)


def seeded_memory_store() -> MemoryStore:
    """A MemoryStore with seed/ loaded and no wait behind ingestion (what the service tests start from)."""
    from pathlib import Path

    from opsloop.services.seed import load_seed

    s = MemoryStore()
    load_seed(s, Path(__file__).resolve().parents[1] / "seed")
    s.configs.set("scoring", {"safetyMarginMs": 0})
    return s


def _typed(store: MemoryStore) -> ports.Store:
    return store  # mypy checks here that the fake satisfies the Protocol
