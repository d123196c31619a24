"""Small helpers shared by the repositories."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from ..domain.windows import ms


def now_ms() -> int:
    """The clock, in the unit of every stored time (the domain reads no clock)."""
    return ms(dt.datetime.now(dt.UTC))


def int_or_none(value: Any) -> int | None:
    """A stored time as an int; None for anything else (a string, a bool, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def snap_dict(snap: Any) -> dict[str, Any]:
    """A snapshot's data, ``{}`` when the document does not exist."""
    return (snap.to_dict() or {}) if snap.exists else {}
