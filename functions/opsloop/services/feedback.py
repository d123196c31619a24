"""Late feedback (``recordFeedback``): quality that is known only after the observation was recorded.

Its metrics are merged into the observation at once, so a scorer that has not reached the observation
yet scores them like any other. One it had already scored is corrected by the next ``scoreObservations``
(``scoring.apply_feedback``): the reward recomputed, the old contribution taken out of the buckets and the
new one added, exactly once. A retried feedback ``id`` changes nothing.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..domain.errors import Conflict, InvalidArgument, NotFound
from ..domain.observation import InvalidBatch, parse_feedback
from .ports import Store

E_EXPIRED = "E_LEARN_FEEDBACK_EXPIRED"


@dataclass(frozen=True)
class FeedbackResult:
    ids: list[str]
    created: list[str]
    duplicates: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "created": len(self.created), "duplicates": self.duplicates}


def record_feedback(store: Store, payload: Any, now_ms: int | None = None) -> FeedbackResult:
    """Validate ``payload`` (one item or ``{"feedback": [...]}``) and store it all or nothing.

    Unknown observation: NotFound (``E_LEARN_NOT_FOUND``); an observation past its retention window (its
    reward and buckets may be gone): Conflict with ``E_LEARN_FEEDBACK_EXPIRED``. Nothing is written then.
    """
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    try:
        items = parse_feedback(payload)
    except InvalidBatch as exc:
        raise InvalidArgument(str(exc), {"errors": [e.model_dump() for e in exc.errors]}) from None
    found = store.feedback.observations([f.observationId for f in items])
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    for f in items:
        obs = found.get(f.observationId)
        if obs is None:
            raise NotFound(f"unknown observation {f.observationId!r}",
                           {"field": "observationId", "observationId": f.observationId})
        expire = obs.get("expireAt")
        if isinstance(expire, dt.datetime) and expire <= now:
            raise Conflict(f"observation {f.observationId!r} is past its retention window; feedback can no "
                           "longer change its reward", {"code": E_EXPIRED, "observationId": f.observationId})
    docs = [(f.id or uuid.uuid4().hex, {"observationId": f.observationId, "metrics": dict(f.metrics),
                                        "component": found[f.observationId].get("component")}) for f in items]
    duplicates = set(store.feedback.record(docs))
    ids = [fid for fid, _ in docs]
    return FeedbackResult(ids, [i for i in ids if i not in duplicates], sorted(duplicates))
