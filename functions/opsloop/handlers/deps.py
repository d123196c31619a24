"""The store the handlers use, created on first use."""

from __future__ import annotations

import functools

from ..client import PolicyClient
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
    instance's background threads are throttled between requests."""
    return PolicyClient(store().policies, live=False)
