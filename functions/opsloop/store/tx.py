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
from typing import Any, TypeVar

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


def try_claim(ref: firestore.DocumentReference, owner: str, ttl_s: float) -> Any | None:
    """Take the claim document ``ref`` for ``owner`` until ``ttl_s`` from now; None if another live owner
    holds it. Returns the claim's update time (what ``release_claim`` checks).

    Created if absent; taken over when expired, renewed when already ``owner``'s, each conditional on the
    document being unchanged since it was read. No transaction: nothing here waits on a lock.
    """
    now = dt.datetime.now(dt.UTC)
    doc = {"owner": owner, "expiresAt": now + dt.timedelta(seconds=ttl_s), "takenAt": now}
    try:
        return ref.create(doc).update_time
    except gexc.Conflict:  # AlreadyExists (someone holds it), or ABORTED under contention
        pass
    snap = ref.get()
    held = (snap.to_dict() or {}) if snap.exists else None
    if held is None:
        return None  # released just now: the caller may try again
    expires = held.get("expiresAt")
    if held.get("owner") not in (None, owner) and (expires is None or expires > now):
        return None
    with contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):  # someone else got there first
        return ref.update(doc, option=firestore.Client.write_option(last_update_time=snap.update_time)).update_time
    return None


def release_claim(ref: firestore.DocumentReference, owner: str, update_time: Any | None = None) -> None:
    """Delete ``owner``'s claim unless it was taken over meanwhile (by ``update_time`` when known)."""
    if update_time is None:
        snap = ref.get()
        if not snap.exists or (snap.to_dict() or {}).get("owner") != owner:
            return
        update_time = snap.update_time
    with contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):  # taken over or gone: not ours
        ref.delete(option=firestore.Client.write_option(last_update_time=update_time))


@contextmanager
def turnstile(
    ref: firestore.DocumentReference,
    ttl_s: float = 30.0,
    wait_s: float = 60.0,
    rng: random.Random | None = None,
) -> Iterator[bool]:
    """Hold the claim ``ref`` (``try_claim``) while the block runs; yields whether it was claimed.

    Polls with jitter while another live owner holds it; after ``wait_s`` the block runs unclaimed.
    """
    rng = rng or random.Random()
    deadline = time.monotonic() + wait_s
    owner = uuid.uuid4().hex
    claimed_at = try_claim(ref, owner, ttl_s)
    while claimed_at is None and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.01, 0.08))
        claimed_at = try_claim(ref, owner, ttl_s)
    try:
        yield claimed_at is not None
    finally:
        if claimed_at is not None:
            # the block's work is done (or failed) either way; a claim left behind expires after its TTL
            with contextlib.suppress(gexc.GoogleAPICallError):
                release_claim(ref, owner, claimed_at)
