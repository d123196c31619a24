"""Transactions that survive contention.

The client's own retry reuses the aborted transaction's id and never backs off; under contention the
emulator then answers "Transaction lock timeout" again and again. We retry ABORTED ourselves with a
fresh transaction and random, growing jitter, a bounded number of times.

Where many writers are known to meet on one document (admins and the rollout controller changing one
policy), a turnstile in front of the transaction lets them in one at a time. Contending transactions on
the emulator do not fail fast: each waits for the other's lock until a ~2 s timeout, and a crowd keeps
re-forming. A claimed turnstile turns that into short polls. It is advisory: correctness still comes
from the transaction, a holder that dies frees it after its TTL, and a writer that waits too long goes
ahead unclaimed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def turnstile(
    ref: firestore.DocumentReference,
    ttl_s: float = 30.0,
    wait_s: float = 60.0,
    rng: random.Random | None = None,
) -> Iterator[bool]:
    """Hold the claim document ``ref`` while the block runs; yields whether it was claimed.

    The claim is created only if absent (one write), deleted afterwards only if it is still ours (one
    write). A claim past its ``expiresAt`` is taken over; after ``wait_s`` the block runs unclaimed.
    """
    rng = rng or random.Random()
    deadline = time.monotonic() + wait_s
    owner = uuid.uuid4().hex
    claimed_at = None
    while claimed_at is None:
        now = dt.datetime.now(dt.UTC)
        try:
            claimed_at = ref.create({"owner": owner, "expiresAt": now + dt.timedelta(seconds=ttl_s),
                                     "takenAt": now}).update_time
            break
        except gexc.Conflict:  # AlreadyExists (someone holds it), or ABORTED under contention: poll again
            pass
        snap = ref.get()
        expires = (snap.to_dict() or {}).get("expiresAt") if snap.exists else None
        if snap.exists and expires is not None and expires <= now:
            _delete_if_unchanged(ref, snap.update_time)  # a dead holder's claim
            continue
        if time.monotonic() >= deadline:
            break
        time.sleep(rng.uniform(0.01, 0.08))
    try:
        yield claimed_at is not None
    finally:
        if claimed_at is not None:
            # the block's work is done (or failed) either way; a claim left behind expires after its TTL
            with contextlib.suppress(gexc.GoogleAPICallError):
                _delete_if_unchanged(ref, claimed_at)


def _delete_if_unchanged(ref: firestore.DocumentReference, update_time: object) -> None:
    with contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):  # taken over or gone: not ours
        ref.delete(option=firestore.Client.write_option(last_update_time=update_time))
