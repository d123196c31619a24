"""domain/learning: matched windows around a change, the effect's Welch interval, time to fix, rates."""

from __future__ import annotations

import random

import pytest
from scipy import stats as sps

from opsloop.domain import learning
from opsloop.domain.stats import Summary, total

M = 60_000
H = 60 * M
T = 1_000 * H + 7 * M + 30_000  # a change at 7.5 minutes past an hour


def summary(rewards: list[float]) -> Summary:
    return total([Summary.of(reward=r, success=True, cost_usd=0.0, duration_ms=1.0) for r in rewards])


def test_matched_windows_leave_out_the_change_s_bucket_and_are_equal() -> None:
    w = learning.matched_windows(T, H, None, None)
    assert w is not None
    assert w.before == (1_000 * H + 5 * M - H, 1_000 * H + 5 * M)
    assert w.after == (1_000 * H + 10 * M, 1_000 * H + 10 * M + H) and w.length_ms == H


def test_matched_windows_never_reach_a_neighbouring_change() -> None:
    w = learning.matched_windows(T, H, previous_ts=T - 22 * M, next_ts=T + 31 * M)
    assert w is not None
    # before: from the bucket after the previous change's (T-22m is in the bucket starting at :45 -> :50)
    # after: up to the next change's bucket (T+31m is in the bucket starting at :35), from :10 -> 25 min
    assert w.length_ms == 15 * M
    assert w.before == (1_000 * H + 5 * M - 15 * M, 1_000 * H + 5 * M)
    assert w.after == (1_000 * H + 10 * M, 1_000 * H + 25 * M)
    assert learning.matched_windows(T, H, previous_ts=T - 3 * M, next_ts=None) is None  # same 5-min bucket


def test_the_effect_interval_is_welch_s() -> None:
    rng = random.Random(5)
    before = [min(1.0, max(0.0, rng.gauss(0.5, 0.10))) for _ in range(80)]  # rewards lie in [0, 1]
    after = [min(1.0, max(0.0, rng.gauss(0.6, 0.25))) for _ in range(50)]
    e = learning.effect(summary(before), summary(after), final=True)
    ci = sps.ttest_ind(after, before, equal_var=False).confidence_interval(0.95)
    assert e.diff == pytest.approx(sum(after) / 50 - sum(before) / 80)
    assert e.ci is not None and e.ci[0] == pytest.approx(ci.low, rel=1e-6) and e.ci[1] == pytest.approx(ci.high,
                                                                                                        rel=1e-6)
    assert e.before_n == 80 and e.after_n == 50 and e.final
    empty = learning.effect(summary(before), Summary(), final=False)
    assert empty.diff is None and empty.ci is None and empty.to_doc()["afterN"] == 0


def test_changes_and_time_to_fix() -> None:
    entries = [
        {"ts": T, "action": "activate", "actor": "policy-updater", "from": "1.0.0", "to": "1.0.1", "chain": "c",
         "seq": 3},
        {"ts": T - H, "action": "draft", "actor": "policy-updater", "to": "1.0.1", "chain": "c", "seq": 2},
        {"ts": T + H, "action": "rollback", "actor": "alice", "from": "1.0.1", "to": "1.0.0", "chain": "c", "seq": 4},
    ]
    got = learning.changes(entries, ["policy-updater"])
    assert [(c.action, c.auto, c.audit_id) for c in got] == [("activate", True, "c#3"), ("rollback", False, "c#4")]
    assert learning.time_to_fix(got[0], None, [T - 40 * M, T - 90 * M, T + M]) == 40 * M
    assert learning.time_to_fix(got[1], got[0].ts, [T - 40 * M]) is None  # detected before the previous change


def test_rates() -> None:
    loop = ["policy-updater", "rollout-controller"]
    entries = [{"ts": T - k * H, "action": a, "actor": who} for k, (a, who) in enumerate([
        ("draft", "policy-updater"), ("activate", "policy-updater"), ("draft", "policy-updater"),
        ("canary", "alice"), ("canary_rollback", "rollout-controller"), ("activate", "bob"), ("rollback", "alice"),
        ("promote", "rollout-controller"),
    ])] + [{"ts": T - 40 * 24 * H, "action": "activate", "actor": "bob"}]  # outside the 30 days
    r = learning.rates(entries, loop, T, 30 * 24 * H)
    assert r["counts"]["activate"] == 2 and r["counts"]["canary"] == 1
    assert r["rollbackRate"] == pytest.approx(2 / 4)  # a rollback and a canary rollback per 2+1 live + 1 canary
    assert r["autoActivationRate"] == pytest.approx(2 / 3, abs=1e-4)  # policy-updater's activate and the promotion
    assert r["manualOverrides"] == 2  # bob's activation and alice's rollback
    assert r["periodDays"] == pytest.approx(7 / 24, abs=1e-3) and r["draftsPerDay"] == pytest.approx(2 / (7 / 24),
                                                                                                      rel=1e-2)
