"""The store the handlers use, created on first use."""

from __future__ import annotations

import functools
import os

from ..client import PolicyClient, Router
from ..domain.config import EventsSettings
from ..services.events import Sink
from ..services.ports import Store
from ..store.client import get_db
from ..store.firestore_store import FirestoreStore


@functools.cache
def store() -> Store:
    return FirestoreStore(get_db())


@functools.cache
def policy_client() -> PolicyClient:
    """``assignPolicy``'s client: it reads each head afresh once per call (``services.assign``), so a change
    is seen by the next call; versions never change, so they stay cached. No listener: a function
    instance's background threads are throttled between requests. A ``Router``, so a router version's model
    respects ``maxCostUsd`` (the models' expected costs are read every ``OPSLOOP_COST_CACHE_S``, 300 s)."""
    from ..store.policy_reader import FirestorePolicyReader

    return Router(store().policies, live=False, costs=FirestorePolicyReader(get_db()),
                  cost_ttl_s=float(os.environ.get("OPSLOOP_COST_CACHE_S", "300")))


def event_sinks(cfg: EventsSettings) -> list[Sink]:
    """The sinks ``config/events`` names: the Pub/Sub topic in this project, the webhook."""
    from ..store.sinks import PubSubSink, WebhookSink

    sinks: list[Sink] = []
    if cfg.topic:
        project = os.environ.get("GCLOUD_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or get_db().project
        sinks.append(PubSubSink(project, cfg.topic))
    if cfg.webhook_url:
        sinks.append(WebhookSink(cfg.webhook_url, cfg.webhook_timeout_s))
    return sinks
