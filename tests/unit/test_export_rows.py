"""Export rows: the column types hold whatever a document written around validation contains."""

from __future__ import annotations

import datetime as dt
import math

from opsloop.services.export import COLUMNS, parse_time, row


def test_rows_coerce_odd_values_to_their_column_or_none() -> None:
    obs = {"ts": 1_700_000_000_000.7, "component": "c", "outcome": "success", "durationMs": 5,
           "tokensIn": math.nan, "tokensOut": True, "costUsd": "0.1", "weight": math.inf,
           "meta": {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "b": b"x"},
           "receivedAt": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
    r = row("o1", obs, {"score": 0.5, "rewardVersion": "1.0.0", "details": {"latencyPenalty": 0.01}})
    assert list(r) == [name for name, _ in COLUMNS]
    assert r["ts"] == 1_700_000_000_000 and r["durationMs"] == 5.0
    assert r["tokensIn"] is None and r["tokensOut"] is None and r["costUsd"] is None  # NaN, bool, text
    assert r["weight"] == math.inf and r["scored"] is True and r["reward"] == 0.5
    assert '"at":"2026-01-01 00:00:00+00:00"' in r["meta"] and r["receivedAt"] == 1_767_225_600_000
    unscored = row("o2", {"ts": 1, "component": "c"}, None)
    assert unscored["scored"] is False and unscored["reward"] is None and unscored["rewardInvalid"] is False


def test_parse_time_accepts_iso_dates_times_and_ms() -> None:
    assert parse_time("2026-11-01", "since") == 1_793_491_200_000
    assert parse_time("2026-11-01T12:00Z", "since") == 1_793_491_200_000 + 12 * 3_600_000
    assert parse_time("2026-11-01T12:00+02:00", "since") == 1_793_491_200_000 + 10 * 3_600_000
    assert parse_time(" 1234 ", "since") == 1234
