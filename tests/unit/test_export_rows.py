"""Export rows: the column types hold whatever a document written around validation contains."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain.errors import InvalidArgument
from opsloop.services.export import COLUMNS, EARLIEST_TIME_MS, LATEST_TIME_MS, check_out, parse_time, row


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


# ------------------------------------------------------------------------------ times out of range
EXTREME_TIMES = [
    "1e23", "1e20", "100000000000000000000000", "99999999999999999999", "9" * 5000, str(LATEST_TIME_MS),
    "-1", "-1e3", "nan", "NaN", "inf", "-inf", "Infinity", "1.5", "", " ", "²", "１２３", "\udcff",
    "0001-01-01T00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-01-01", "1969-12-31", "1969-12-31T23:59:59.999Z",
]


@pytest.mark.parametrize("text", EXTREME_TIMES)
def test_parse_time_refuses_extreme_and_malformed_times_naming_the_argument(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^--until ") as refused:
        parse_time(text, "until")
    assert refused.value.details == {"field": "until"}


def test_parse_time_takes_the_whole_range_and_floors_fractions() -> None:
    assert parse_time("0", "at") == parse_time("1970-01-01", "at") == parse_time("+000", "at") == EARLIEST_TIME_MS
    assert parse_time(str(LATEST_TIME_MS - 1), "at") == LATEST_TIME_MS - 1
    assert parse_time("9998-12-31T23:59:59.999Z", "at") == LATEST_TIME_MS - 1
    assert parse_time("2026-11-01T00:00:00.0009Z", "at") == 1_793_491_200_000


def _expected_ms(text: str) -> int | None:
    """The oracle: what parse_time must give for ``text``, by another route (None: refused)."""
    stripped = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", stripped):
        significant = stripped.lstrip("+-").lstrip("0")
        value = int(stripped) if len(significant) < 30 else LATEST_TIME_MS
    else:
        try:
            t = dt.datetime.fromisoformat(stripped.replace("Z", "+00:00"))
        except ValueError:
            return None
        t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
        delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        value = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return value if EARLIEST_TIME_MS <= value < LATEST_TIME_MS else None


digits = st.builds(lambda sign, zeros, n: f"{sign}{'0' * zeros}{n}", st.sampled_from(["", "+", "-"]),
                   st.integers(0, 3), st.integers(0, 10**30))
iso_times = st.builds(lambda t, sep, spec: t.isoformat(sep=sep, timespec=spec),
                      st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                                   timezones=st.one_of(st.none(), st.timezones(), st.just(dt.UTC))),
                      st.sampled_from(["T", " "]),
                      st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"]))
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(digits, iso_times, iso_times.map(lambda s: s.replace("+00:00", "Z")), any_text,
                      st.floats().map(repr), st.sampled_from(EXTREME_TIMES)),
       pad=st.sampled_from(["", " ", "\t", "\n "]))
def test_parse_time_gives_a_time_in_range_or_refuses_the_argument(text: str, pad: str) -> None:
    """Whatever the text: an int in [1970, 9999) equal to the oracle's, or InvalidArgument naming --at."""
    expected = _expected_ms(pad + text + pad)
    try:
        got = parse_time(pad + text + pad, "at")
    except InvalidArgument as exc:
        assert expected is None, f"{text!r} refused: {exc.message}"
        assert exc.message.startswith("--at ") and exc.details == {"field": "at"}
        return
    assert got == expected and isinstance(got, int)


# ------------------------------------------------------------------------------ --out
def test_out_must_name_a_file_in_a_directory_that_exists(tmp_path: Path) -> None:
    check_out(tmp_path / "ds.parquet")  # fine: nothing is written by the check
    (tmp_path / "taken.parquet.manifest.json").mkdir()
    (tmp_path / "file").write_text("x")
    for out, text in [(tmp_path, "is a directory"), (Path("."), "is a directory"),
                      (tmp_path / "taken.parquet", "is a directory"),
                      (tmp_path / "missing" / "ds.parquet", "does not exist (create it first)"),
                      (tmp_path / "file" / "ds.parquet", "is not a directory")]:
        with pytest.raises(InvalidArgument, match=re.escape(text)):
            check_out(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken.parquet.manifest.json"]
