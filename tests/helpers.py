"""Helpers shared by the tests."""

import datetime as dt
from typing import Any

from scripts.tokens import PROJECT, bearer, emulator_token

FIVE_MINUTES_MS = 300_000

__all__ = ["AUTOSCALER", "PROJECT", "bearer", "emulator_token", "just_now_ms", "success_rate"]

# The autoscaler policy of issue 17, and the simulated service the experiment tests run it against.
AUTOSCALER: dict[str, Any] = {
    "id": "autoscaler-core", "version": "1.0.0", "kind": "params", "status": "active", "createdBy": "test",
    "params": {"targetCpu": 0.6, "minInstances": 2, "cooldownS": 60},
    "search": {"targetCpu": {"min": 0.3, "max": 0.9}, "minInstances": {"min": 1, "max": 10, "int": True},
               "cooldownS": {"choices": [30, 60, 120]}},
}


def success_rate(params: dict[str, Any]) -> float:
    """The simulated service: best at targetCpu 0.75 with 4+ instances."""
    return max(0.05, 0.95 - 1.5 * abs(params["targetCpu"] - 0.75) - 0.04 * max(0, 4 - params["minInstances"]))


def just_now_ms() -> int:
    """A second ago, but never before the current 5-minute bucket.

    Traffic sent right after a canary starts must land in a bucket the canary's evaluation reads (it
    starts at the 5-minute bucket of the canary's start); "one second ago" crossed that boundary about
    once in 300 runs.
    """
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return max(now_ms - 1000, now_ms - now_ms % FIVE_MINUTES_MS)
