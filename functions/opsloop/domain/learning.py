"""Is the loop learning? What each change to a policy did, and how the loop's decisions fare.

A *change* is an audit entry that changed a policy's active version: ``activate``, ``promote`` or
``rollback``. Its effect is the policy's reward (every observation reported with one of its versions) in
matched windows: the same length before and after, on 5-minute buckets, leaving out the bucket the change
fell in (it mixes both versions). The length is ``window_ms``, shortened to the gap to the previous and to
the next change so that a window never spans another change. The difference after - before has a 95 %
Welch interval (t with Welch-Satterthwaite degrees of freedom). An effect is *final* once its after
window has ended; until then it is provisional and recomputed.

*Time to fix*: from the last change detected in one of the policy's components — by the drift check
(``changedAt``) or by the tuner's change test (the start of its shift, ``tunerShift.start``) — to the
change that followed it (and came after the previous change of the policy).

Rates over ``period_ms`` of audit history:

* ``rollbackRate``: rollbacks (by hand, or of a canary by its guardrails) per version that went live or to
  canary (activations, promotions, canaries started);
* ``draftsPerDay``: drafts the loop wrote per day of the period;
* ``autoActivationRate``: the share of activations and promotions the loop made itself;
* ``manualOverrides``: activations and rollbacks an admin made by hand (anyone but the loop's actors).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scipy.special import stdtrit  # Student t quantile, without importing scipy.stats

from . import windows
from .stats import Summary

LIVE_ACTIONS = ("activate", "promote", "rollback")
STEP_MS = windows.LEVELS["5m"]
DEFAULT_WINDOW_MS = windows.HOUR_MS
MAX_CHANGES = 50  # per policy, newest kept


@dataclass(frozen=True)
class Change:
    audit_id: str  # chain and seq, unique per policy
    ts: int
    action: str
    actor: str
    auto: bool  # made by the loop itself
    from_version: str | None
    to_version: str | None


@dataclass(frozen=True)
class Windows:
    before: tuple[int, int]
    after: tuple[int, int]

    @property
    def length_ms(self) -> int:
        return self.before[1] - self.before[0]


@dataclass(frozen=True)
class Effect:
    before_n: int
    before_mean: float | None
    after_n: int
    after_mean: float | None
    diff: float | None
    ci: tuple[float, float] | None  # 95 %
    final: bool

    def to_doc(self) -> dict[str, Any]:
        return {"beforeN": self.before_n, "beforeMean": _r(self.before_mean), "afterN": self.after_n,
                "afterMean": _r(self.after_mean), "diff": _r(self.diff),
                "ciLow": None if self.ci is None else _r(self.ci[0]),
                "ciHigh": None if self.ci is None else _r(self.ci[1]), "final": self.final}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def changes(entries: Iterable[Mapping[str, Any]], loop_actors: Iterable[str]) -> list[Change]:
    """The live changes among a policy's audit entries, oldest first."""
    loop = set(loop_actors)
    out = [
        Change(audit_id=f"{e.get('chain')}#{e.get('seq')}", ts=int(e["ts"]), action=str(e["action"]),
               actor=str(e.get("actor")), auto=str(e.get("actor")) in loop,
               from_version=None if e.get("from") is None else str(e.get("from")),
               to_version=None if e.get("to") is None else str(e.get("to")))
        for e in entries if e.get("action") in LIVE_ACTIONS and isinstance(e.get("ts"), int)
    ]
    return sorted(out, key=lambda c: (c.ts, c.audit_id))


def matched_windows(ts: int, window_ms: int, previous_ts: int | None, next_ts: int | None) -> Windows | None:
    """Equal windows before and after the change at ``ts`` on 5-minute buckets, the change's own bucket
    left out, neither reaching another change; None when there is not one whole bucket each side."""
    start = windows.bucket_start(ts, "5m")
    after_start = start + STEP_MS
    length = window_ms
    if previous_ts is not None:  # the before window starts after the previous change's bucket
        length = min(length, start - (windows.bucket_start(previous_ts, "5m") + STEP_MS))
    if next_ts is not None:  # the after window ends before the next change's bucket
        length = min(length, windows.bucket_start(next_ts, "5m") - after_start)
    length = length // STEP_MS * STEP_MS
    if length < STEP_MS:
        return None
    return Windows((start - length, start), (after_start, after_start + length))


def effect(before: Summary, after: Summary, final: bool) -> Effect:
    """after - before with a 95 % Welch interval (None below two observations a side)."""
    mb, ma = before.mean_reward, after.mean_reward
    diff = None if mb is None or ma is None else ma - mb
    ci = None
    vb, va = before.reward_variance, after.reward_variance
    if diff is not None and vb is not None and va is not None:
        qb, qa = vb / before.n, va / after.n
        se = math.sqrt(qb + qa)
        if se == 0:
            ci = (diff, diff)
        else:
            df = (qb + qa) ** 2 / ((qb * qb / (before.n - 1)) + (qa * qa / (after.n - 1)))
            half = float(stdtrit(df, 0.975)) * se
            ci = (diff - half, diff + half)
    return Effect(before.n, mb, after.n, ma, diff, ci, final)


def time_to_fix(change: Change, previous_ts: int | None, detections: Iterable[int]) -> int | None:
    """Milliseconds from the newest detection between the previous change and this one to this one."""
    inside = [d for d in detections if d <= change.ts and (previous_ts is None or d > previous_ts)]
    return change.ts - max(inside) if inside else None


def rates(entries: Iterable[Mapping[str, Any]], loop_actors: Iterable[str], now_ms: int,
          period_ms: int) -> dict[str, Any]:
    """The loop's decision rates over the ``period_ms`` of audit history before ``now_ms``."""
    loop = set(loop_actors)
    since = now_ms - period_ms
    recent = [e for e in entries if isinstance(e.get("ts"), int) and since <= int(e["ts"]) <= now_ms]
    count = {a: sum(1 for e in recent if e.get("action") == a)
             for a in ("draft", "activate", "promote", "rollback", "canary", "canary_rollback", "reject")}
    went_live = count["activate"] + count["promote"] + count["canary"]
    rolled_back = count["rollback"] + count["canary_rollback"]
    activations = [e for e in recent if e.get("action") in ("activate", "promote")]
    first = min((int(e["ts"]) for e in recent), default=now_ms)
    days = max(now_ms - first, windows.HOUR_MS) / windows.DAY_MS  # a young policy is not rated per full day
    drafts = sum(1 for e in recent if e.get("action") == "draft" and str(e.get("actor")) in loop)
    return {
        "periodDays": round(min(days, period_ms / windows.DAY_MS), 3),
        "counts": count,
        "rollbackRate": round(rolled_back / went_live, 4) if went_live else None,
        "draftsPerDay": round(drafts / min(days, period_ms / windows.DAY_MS), 3),
        "autoActivationRate": (round(sum(1 for e in activations if str(e.get("actor")) in loop) / len(activations), 4)
                               if activations else None),
        "manualOverrides": sum(1 for e in recent if e.get("action") in ("activate", "rollback")
                               and str(e.get("actor")) not in loop),
    }
