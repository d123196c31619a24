"""Which models a router process skips for now: LiteLLM's allowed-fails-then-cooldown, with a probe.

A model that fails ``allowed_fails`` times within a minute (``FAIL_WINDOW_MS``) cools down for
``cooldown_ms``: the ``Router`` skips it while another model is ready. When the cooldown ends it is
*probed*: it gets traffic again, a success resets its count, and a failure puts it straight back into
cooldown without waiting for ``allowed_fails`` more. A success while it cools (a call already in flight,
or one sent because every model was cooling) does not end the cooldown early. Every outcome other than
success counts as a failure. Times are milliseconds on the caller's clock; this module only keeps the record.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .kinds.router import FAIL_WINDOW_MS

State = Literal["ok", "cooling", "probing"]


@dataclass
class _Health:
    failures: deque[float] = field(default_factory=deque)  # times of the failures in the last minute
    until: float | None = None  # end of the current (or last) cooldown
    probing: bool = False  # a cooldown ended and no success came since


@dataclass(frozen=True)
class ModelHealth:
    state: State
    cooldown_until: float | None  # on the caller's clock, while cooling
    recent_failures: int  # failures in the last minute


class Cooldowns:
    """The failure record of one process's models (not thread-safe: the ``Router`` locks around it)."""

    def __init__(self) -> None:
        self._models: dict[str, _Health] = {}

    def record(self, model: str, ok: bool, now: float, allowed_fails: int, cooldown_ms: float) -> None:
        h = self._models.setdefault(model, _Health())
        if ok:
            if h.until is not None and now < h.until:
                h.failures.clear()  # an in-flight or forced call succeeded: the cooldown still runs its time
            else:
                self._models[model] = _Health()
            return
        while h.failures and h.failures[0] <= now - FAIL_WINDOW_MS:
            h.failures.popleft()
        h.failures.append(now)
        if cooldown_ms <= 0:
            return
        cooling = h.until is not None and now < h.until
        if cooling or h.probing or len(h.failures) >= allowed_fails:
            h.until = max(h.until or now, now + cooldown_ms) if cooling else now + cooldown_ms
            h.probing = True

    def cooling(self, now: float) -> dict[str, float]:
        """Model -> the end of its cooldown, for the models cooling at ``now``."""
        return {m: h.until for m, h in self._models.items() if h.until is not None and now < h.until}

    def health(self, model: str, now: float) -> ModelHealth:
        h = self._models.get(model)
        if h is None:
            return ModelHealth("ok", None, 0)
        recent = sum(1 for t in h.failures if t > now - FAIL_WINDOW_MS)
        if h.until is not None and now < h.until:
            return ModelHealth("cooling", h.until, recent)
        return ModelHealth("probing" if h.probing else "ok", None, recent)
