"""The store the handlers use, created on first use."""

from __future__ import annotations

import functools
import os

from ..client import PolicyClient
from ..services.ports import Store
from ..store.client import get_db
from ..store.firestore_store import FirestoreStore


@functools.cache
def store() -> Store:
    return FirestoreStore(get_db())


@functools.cache
def policy_client() -> PolicyClient:
    """Heads cached for ``OPSLOOP_ASSIGN_CACHE_S`` seconds (default 30): a started canary reaches every
    instance within that; versions never change, so they stay cached."""
    return PolicyClient(store().policies, ttl_s=float(os.environ.get("OPSLOOP_ASSIGN_CACHE_S", "30")))
