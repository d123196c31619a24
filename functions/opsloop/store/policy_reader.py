"""Reading policy heads and versions: all a component needs from Firestore to get its assignment.

Kept apart from ``FirestoreStore`` so the client (``opsloop.client``) imports nothing but
google-cloud-firestore and the pure policy model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.watch import Watch

from ..domain import policy as policy_domain
from . import paths

logger = logging.getLogger("opsloop.client")


def read_head(db: firestore.Client, policy_id: str) -> policy_domain.Head:
    """The policy's head (active version, history, running rollout), outside any transaction; a policy
    seeded without a head document reads as its newest ``active`` version."""
    snap = db.collection(paths.POLICY_HEADS).document(policy_id).get()
    if snap.exists:
        return policy_domain.Head.from_doc(policy_id, snap.to_dict())
    q = (
        db.collection(paths.POLICIES)
        .where(filter=FieldFilter("id", "==", policy_id))
        .where(filter=FieldFilter("status", "==", "active"))
    )
    actives = sorted(str((s.to_dict() or {}).get("version")) for s in q.stream())
    return policy_domain.Head(policy_id, actives[-1] if actives else None)


def read_version(db: firestore.Client, policy_id: str, version: str) -> dict[str, Any] | None:
    snap = db.collection(paths.POLICIES).document(f"{policy_id}@{version}").get()
    return snap.to_dict() if snap.exists else None


COST_WINDOWS = ("1h", "24h")  # a model's expected cost: its last hour's mean, else its last day's


def read_expected_costs(db: firestore.Client, models: list[str]) -> dict[str, float]:
    """Model -> mean cost per call from the ``router:<model>`` stats (models without stats left out)."""
    refs = [db.collection(paths.STATS).document(paths.stats_id(f"router:{m}", w)) for m in models for w in COST_WINDOWS]
    found = {s.id: s.to_dict() or {} for s in db.get_all(refs) if s.exists}
    out: dict[str, float] = {}
    for m in models:
        for w in COST_WINDOWS:
            cost = found.get(paths.stats_id(f"router:{m}", w), {}).get("avgCostUsd")
            if isinstance(cost, int | float) and not isinstance(cost, bool):
                out[m] = float(cost)
                break
    return out


class FirestorePolicyReader:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def head(self, policy_id: str) -> policy_domain.Head:
        return read_head(self.db, policy_id)

    def policy(self, policy_id: str, version: str) -> dict[str, Any] | None:
        return read_version(self.db, policy_id, version)

    def expected_costs(self, models: list[str]) -> dict[str, float]:
        return read_expected_costs(self.db, models)

    def watch_head(self, policy_id: str, on_head: Callable[[policy_domain.Head], None]) -> Watch:
        """Listen to the policy's head document: ``on_head`` gets every version of it as it commits (on the
        listener's thread). A policy without a head document pushes nothing; polling reads it."""
        ref = self.db.collection(paths.POLICY_HEADS).document(policy_id)

        def changed(docs: list[Any], _changes: Any, _read_time: Any) -> None:
            for snap in docs:
                if snap.exists:
                    try:
                        on_head(policy_domain.Head.from_doc(policy_id, snap.to_dict()))
                    except Exception:  # a bad head must not kill the listener: the poll reports it
                        logger.exception("policy head %s could not be read from its listener", policy_id)

        return ref.on_snapshot(changed)
