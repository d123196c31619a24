"""The store the handlers use, created on first use."""

from __future__ import annotations

import functools

from ..store.client import get_db
from ..store.firestore_store import FirestoreStore


@functools.cache
def store() -> FirestoreStore:
    return FirestoreStore(get_db())
