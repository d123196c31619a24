"""The loop's Firestore: one repository per aggregate, each satisfying its ``services.ports`` Protocol.

Services take a ``ports.Store`` and reach each aggregate by name (``store.policies``, ``store.buckets``);
unit tests hand them the in-memory fake in ``tests/fakes.py`` instead.
"""

from __future__ import annotations

from google.cloud import firestore

from .alerts import FirestoreAlertRepo
from .audit import FirestoreAuditRepo
from .buckets import FirestoreBucketRepo
from .config import FirestoreConfigRepo
from .drift import FirestoreDriftRepo
from .events import FirestoreEventRepo
from .experiments import FirestoreExperimentRepo
from .feedback import FirestoreFeedbackRepo
from .generations import FirestoreGenerationRepo
from .learning import FirestoreLearningRepo
from .observations import FirestoreObservationRepo
from .policies import FirestorePolicyRepo
from .rollouts import FirestoreRolloutRepo
from .runs import FirestoreRunRepo
from .stats import FirestoreCardRepo, FirestoreStatsRepo


class FirestoreStore:
    """All Firestore access of the loop. One instance per process is enough."""

    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self.configs = FirestoreConfigRepo(db)
        self.alerts = FirestoreAlertRepo(db)
        self.observations = FirestoreObservationRepo(db)
        self.buckets = FirestoreBucketRepo(db)
        self.stats = FirestoreStatsRepo(db)
        self.cards = FirestoreCardRepo(db)
        self.policies = FirestorePolicyRepo(db)
        self.rollouts = FirestoreRolloutRepo(db)
        self.experiments = FirestoreExperimentRepo(db)
        self.audit = FirestoreAuditRepo(db)
        self.runs = FirestoreRunRepo(db)
        self.drift = FirestoreDriftRepo(db)
        self.feedback = FirestoreFeedbackRepo(db)
        self.generations = FirestoreGenerationRepo(db)
        self.learning = FirestoreLearningRepo(db)
        self.events = FirestoreEventRepo(db)

    def count(self, collection: str) -> int:
        """How many documents a collection holds (one aggregation query; for diagnostics and tests)."""
        result = self.db.collection(collection).count().get()  # type: ignore[no-untyped-call]
        return int(result[0][0].value)
