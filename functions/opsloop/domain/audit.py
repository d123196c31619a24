"""Tamper-evident audit entries: every entry is sealed with the hash of the one before it in its chain.

    hash = SHA-256(canonical JSON of the entry without ``hash``)      (sorted keys, no spaces, UTF-8)

An entry holds ``chain`` (one chain per policy, ``policy:<id>``, and ``config:flags``), ``seq``
(1, 2, 3, ... within the chain), ``prevHash`` (the previous entry's hash, 64 zeros for the first) and
``hash``. The chain's head document keeps the last ``seq`` and ``hash``, so a removed tail is noticed too.
Changing, removing or reordering any entry breaks every link after it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    """The one byte encoding that is hashed: JSON with sorted keys, no whitespace, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def policy_chain(policy_id: str) -> str:
    return f"policy:{policy_id}"


FLAGS_CHAIN = "config:flags"


@dataclass(frozen=True)
class ChainHead:
    seq: int = 0
    hash: str = GENESIS

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> ChainHead:
        if not doc:
            return cls()
        return cls(int(doc.get("seq", 0)), str(doc.get("hash", GENESIS)))


_PROVENANCE: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("audit_provenance",
                                                                                   default=None)


@contextlib.contextmanager
def provenance(**fields: Any) -> Iterator[None]:
    """Every entry sealed inside the block also names where the change came from (e.g. ``via``,
    ``actorEmail``): a callable sets it once for the whole request instead of threading it through."""
    token = _PROVENANCE.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _PROVENANCE.reset(token)


def seal(entry: dict[str, Any], chain: str, head: ChainHead) -> tuple[dict[str, Any], ChainHead]:
    """The entry as stored (with chain, seq, prevHash and hash) and the chain's new head."""
    if "hash" in entry:
        raise ValueError(f"an entry to seal must not carry a hash yet, got {entry['hash']!r}")
    body = {**(_PROVENANCE.get() or {}), **entry, "chain": chain, "seq": head.seq + 1, "prevHash": head.hash}
    sealed = {**body, "hash": digest(body)}
    return sealed, ChainHead(head.seq + 1, sealed["hash"])


@dataclass(frozen=True)
class Break:
    """The first broken link of a chain."""

    chain: str
    seq: int | None
    doc_id: str | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, "seq": self.seq, "docId": self.doc_id, "problem": self.problem}


def verify(chain: str, entries: Iterable[tuple[str, dict[str, Any]]], head: ChainHead | None) -> Break | None:
    """Check (doc id, entry) pairs in ``seq`` order against each other and the chain head."""
    expected_seq, prev = 1, GENESIS
    for doc_id, entry in entries:
        seq = entry.get("seq")
        if seq != expected_seq:
            return Break(chain, seq if isinstance(seq, int) else None, doc_id,
                         f"expected seq {expected_seq}, found {seq!r}: an entry is missing or out of order")
        if entry.get("prevHash") != prev:
            return Break(chain, seq, doc_id, "prevHash does not match the previous entry's hash")
        body = {k: v for k, v in entry.items() if k != "hash"}
        try:
            actual = digest(body)
        except (TypeError, ValueError) as exc:
            return Break(chain, seq, doc_id, f"entry cannot be encoded canonically: {exc}")
        if entry.get("hash") != actual:
            return Break(chain, seq, doc_id, "hash does not match the entry's content: it was changed")
        expected_seq, prev = expected_seq + 1, actual
    if head is None:
        return Break(chain, None, None, "the chain has entries but no head document")
    if head.seq != expected_seq - 1 or head.hash != prev:
        return Break(chain, head.seq, None,
                     f"head says seq {head.seq}, entries end at {expected_seq - 1}: entries were removed")
    return None
