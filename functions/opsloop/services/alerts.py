"""``ops_alerts`` for items a scheduled batch had to skip: one entry per distinct failure, counted."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

from ..domain.errors import OpsError
from ..store.firestore_store import FirestoreStore, ms

log = logging.getLogger("opsloop.alerts")


def describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, OpsError) else str(exc)
    return f"{type(exc).__name__}: {message}"[:1000]


def item_failed(store: FirestoreStore, job: str, item: str, exc: BaseException) -> str:
    """Record that ``job`` skipped ``item`` because of ``exc``; returns the text recorded.

    The same failure of the same item on every run refreshes one alert (``count``, ``ts``) rather than
    adding one per run. Raising the alert never fails the batch: a store error here is only logged.
    """
    error = describe(exc)
    log.error("%s skipped %s: %s", job, item, error)
    key = hashlib.sha256(f"{job}\n{item}\n{type(exc).__name__}".encode()).hexdigest()[:20]
    try:
        store.note_alert(f"failure~{key}", {
            "kind": "item_failed", "job": job, "item": item[:500], "error": error,
            "code": exc.code if isinstance(exc, OpsError) else None, "ts": ms(dt.datetime.now(dt.UTC)),
        })
    except Exception as alert_exc:
        log.error("could not record the alert for %s: %r", item, alert_exc)
    return error
