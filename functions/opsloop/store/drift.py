"""``ops_drift``: per component, the latest drift tests and open episodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.cloud import firestore

from ..domain import drift as drift_domain
from . import paths
from .tx import run_transaction
from .util import snap_dict

Advance = Callable[[dict[str, Any]], drift_domain.EpisodeUpdate]


class FirestoreDriftRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def get(self, component: str) -> dict[str, Any]:
        return snap_dict(self.db.collection(paths.DRIFT).document(component).get())

    def get_many(self, components: list[str]) -> dict[str, dict[str, Any]]:
        refs = [self.db.collection(paths.DRIFT).document(c) for c in components]
        return {s.id: s.to_dict() or {} for s in self.db.get_all(refs) if s.exists}

    def update(self, component: str, advance: Advance) -> list[str]:
        """Replace the component's state by ``advance(stored state)`` and create the alerts it raises,
        in one transaction; returns the metrics that raised an alert."""
        ref = self.db.collection(paths.DRIFT).document(component)
        alerts = self.db.collection(paths.ALERTS)

        def work(txn: firestore.Transaction) -> list[str]:
            update = advance(snap_dict(ref.get(transaction=txn)))
            for alert_id, alert in update.alerts.items():
                txn.create(alerts.document(alert_id), alert)
            txn.set(ref, update.state)
            return update.raised

        return run_transaction(self.db, work)
