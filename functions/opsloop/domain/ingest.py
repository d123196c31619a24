"""Where the scorer stands in the ingestion order, and what it reads of an observation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cursor:
    """Position of the scorer in the ingestion order (receivedAt, document id)."""

    received_at: dt.datetime | None = None
    doc_id: str = ""
    # component -> newest observation ts in the chunk ending here (kept in ops_components, not on the cursor:
    # a map of every component ever seen outgrew the document's 1 MiB)
    components: dict[str, int] | None = None

    def same_position(self, other: Cursor) -> bool:
        return self.received_at == other.received_at and self.doc_id == other.doc_id


@dataclass(frozen=True)
class StoredObservation:
    doc_id: str
    data: dict[str, Any]
    received_at: dt.datetime


# What scoring reads of an observation: a projection, so meta, tokens and ids are neither sent nor decoded
# (the client deep-copies every document twice; on the scoring path that was a fifth of a run's time).
SCORED_FIELDS = ("ts", "component", "outcome", "durationMs", "costUsd", "propensity", "weight", "policyVersion",
                 "arm", "errorCode", "receivedAt", "expireAt", "tokensIn", "tokensOut", "metrics", "shard")
