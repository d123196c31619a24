"""Helpers shared by the tests."""

import datetime as dt

from scripts.tokens import PROJECT, bearer, emulator_token

FIVE_MINUTES_MS = 300_000

__all__ = ["PROJECT", "bearer", "emulator_token", "just_now_ms"]


def just_now_ms() -> int:
    """A second ago, but never before the current 5-minute bucket.

    Traffic sent right after a canary starts must land in a bucket the canary's evaluation reads (it
    starts at the 5-minute bucket of the canary's start); "one second ago" crossed that boundary about
    once in 300 runs.
    """
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return max(now_ms - 1000, now_ms - now_ms % FIVE_MINUTES_MS)
