"""Recording observations: the one validation and write path for HTTP and in-process callers.

Each batch is counted in ``learn_observations_total`` (``telemetry.observations``): its observations per
component as created or duplicate, or, when the batch is refused, all of them as invalid under component
``unknown`` (what a refused item names is not trusted as a label: it could be anything, of any number).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .. import telemetry
from ..domain import config as config_domain
from ..domain import shards
from ..domain.config import ScoringSettings
from ..domain.errors import InvalidArgument
from ..domain.observation import InvalidBatch, ObservationIn, parse_batch
from ..domain.pii import scrub_value
from . import config as config_service
from .ports import Store


@dataclass(frozen=True)
class RecordResult:
    ids: list[str]
    created: list[str]
    duplicates: list[str]


INVALID_COMPONENT = "unknown"


def _given(payload: Any) -> int:
    """How many observations a refused body held: the items of its list, else one."""
    if isinstance(payload, dict) and isinstance(payload.get("observations"), list):
        return len(payload["observations"])
    return 1


def _doc(obs: ObservationIn, now_ms: int) -> dict[str, Any]:
    """The stored shape: free text (``meta``, ``errorCode``) scrubbed of PII, redactions counted."""
    data = obs.model_dump(exclude_none=True)
    data.pop("id", None)
    data["ts"] = obs.ts if obs.ts is not None else now_ms
    redactions: dict[str, int] = {}
    for key in ("meta", "errorCode"):
        if key in data:
            data[key], found = scrub_value(data[key])
            for kind, count in found.items():
                redactions[kind] = redactions.get(kind, 0) + count
    if redactions:
        data["redactions"] = redactions
    return data


def record_batch(store: Store, payload: Any, now_ms: int | None = None) -> RecordResult:
    """Validate ``payload`` (one observation or ``{"observations": [...]}``) and store it all or nothing."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    try:
        items = parse_batch(payload, now_ms)
    except InvalidBatch as exc:
        telemetry.observations({(INVALID_COMPONENT, "invalid"): _given(payload)})
        raise InvalidArgument(str(exc), {"errors": [e.model_dump() for e in exc.errors]}) from None
    settings: ScoringSettings = config_service.cached(store, config_domain.SCORING)
    expire_at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC) + dt.timedelta(days=settings.retention_days)
    docs = []
    for obs in items:
        doc_id = obs.id or uuid.uuid4().hex
        data = {"id": doc_id, **_doc(obs, now_ms), "expireAt": expire_at}
        data["shard"] = shards.shard_of(doc_id, settings.shards)
        docs.append((doc_id, data, obs.id is not None))
    duplicates = store.observations.insert(docs)
    ids = [d[0] for d in docs]
    dup = set(duplicates)
    telemetry.observations(Counter((str(doc["component"]), "duplicate" if doc_id in dup else "created")
                                   for doc_id, doc, _ in docs))
    return RecordResult(ids=ids, created=[i for i in ids if i not in dup], duplicates=sorted(dup))


def record_observation(store: Store | None = None, **fields: Any) -> str:
    """Record one observation from in-process code; returns its id. Raises InvalidArgument when bad.

    >>> record_observation(component="router:gpt-5", outcome="success", durationMs=234, costUsd=0.02)
    """
    if store is None:
        from ..store.client import get_db
        from ..store.firestore_store import FirestoreStore

        store = FirestoreStore(get_db())
    return record_batch(store, fields).ids[0]
