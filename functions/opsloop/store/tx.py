"""Transactions that survive contention.

The client's own retry reuses the aborted transaction's id and never backs off; under contention the
emulator then answers "Transaction lock timeout" again and again. We retry ABORTED ourselves with a
fresh transaction and random, growing jitter, a bounded number of times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

T = TypeVar("T")


class TransactionExhausted(RuntimeError):
    """ABORTED on every attempt; nothing of the transaction was committed."""


def _is_aborted(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, gexc.Aborted):
            return True
        seen = seen.__cause__
    return False


def run_transaction(
    db: firestore.Client,
    fn: Callable[[firestore.Transaction], T],
    attempts: int = 12,
    base_delay: float = 0.05,
    max_delay: float = 2.0,
    rng: random.Random | None = None,
) -> T:
    """Run ``fn(transaction)`` atomically, retrying ABORTED with a fresh transaction and jitter."""
    rng = rng or random.Random()
    last: BaseException | None = None
    for attempt in range(attempts):
        txn = db.transaction(max_attempts=1)
        try:
            return firestore.transactional(fn)(txn)  # type: ignore[no-any-return]
        except (gexc.Aborted, ValueError) as exc:
            if not _is_aborted(exc):
                raise
            last = exc
        # full jitter: contenders that deadlocked on the same documents spread out instead of colliding again
        time.sleep(rng.uniform(0, min(max_delay, base_delay * (2**attempt))))
    raise TransactionExhausted(f"transaction aborted {attempts} times under contention") from last
