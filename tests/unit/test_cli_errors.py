"""The CLI's edge: unexpected failures still end in one line and a documented exit code."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsloop import cli
from opsloop.cli.render import when


def run_failing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: Exception) -> tuple[int, str]:
    def boom(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(cli, "_cmd_status", boom)
    code = cli.main(["status"])
    return code, capsys.readouterr().err


def test_an_unexpected_error_exits_6_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OPSLOOP_DEBUG", raising=False)
    code, err = run_failing(monkeypatch, capsys, RuntimeError("kaput"))
    assert code == cli.EXIT_INTERNAL == 6
    assert err.count("\n") == 1 and "unexpected RuntimeError: kaput" in err and "OPSLOOP_DEBUG=1" in err
    monkeypatch.setenv("OPSLOOP_DEBUG", "1")
    with pytest.raises(RuntimeError, match="kaput"):
        run_failing(monkeypatch, capsys, RuntimeError("kaput"))


def test_missing_extras_and_a_refusing_firestore_are_environment_errors(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from google.api_core import exceptions as gexc

    code, err = run_failing(monkeypatch, capsys, ImportError("No module named 'pyarrow'"))
    assert code == cli.EXIT_ENVIRONMENT and "pip install -e '.[cli]'" in err
    code, err = run_failing(monkeypatch, capsys, gexc.PermissionDenied("missing IAM role"))
    assert code == cli.EXIT_ENVIRONMENT and "Firestore refused: PermissionDenied" in err


# ------------------------------------------------------------------------------ time arguments
# Every time argument of every command, as argv before the value; the rest of each command is valid.
TIME_ARGS = [("score", "--at"), ("tune", "--at"), ("report", "--at"), ("export", "--since"),
             ("export --since 2026-11-01", "--until")]
EXTREMES = ["1e23", "1e20", "100000000000000000000000", "99999999999999999999", "9" * 5000, "-1", "-86400000",
            "nan", "NaN", "inf", "-inf", "Infinity", "1.5e12", "", " ", "²", "１２３", "\udcff",
            "0001-01-01T00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-01-01", "10000-01-01", "1969-12-31",
            "2026-13-01", "2026-11-31", "2026-11-01T25:00", "2026-11-01T12:00+25:00"]


@pytest.fixture()
def no_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Opening Firestore exits 99 instead: an argument that gets there got past the CLI's checks."""
    def reached() -> None:
        raise cli.CliError("store reached", 99)

    monkeypatch.setattr(cli, "_store", reached)
    monkeypatch.chdir(tmp_path)  # export's and report's default --out point here (nothing is written)


def run_time_arg(capsys: pytest.CaptureFixture[str], command: str, flag: str, value: str) -> tuple[int, str]:
    code = cli.main([*command.split(), f"{flag}={value}"])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, flag: str) -> None:
    assert code == cli.EXIT_USAGE, err
    assert err.count("\n") == 1 and err.startswith("error [E_LEARN_INVALID_ARGUMENT]: ") and flag in err, err


@pytest.mark.parametrize(("command", "flag"), TIME_ARGS)
@pytest.mark.parametrize("value", EXTREMES)
def test_extreme_times_are_bad_input_on_every_time_argument(no_store: None, capsys: pytest.CaptureFixture[str],
                                                           command: str, flag: str, value: str) -> None:
    code, err = run_time_arg(capsys, command, flag, value)
    assert_refused(code, err, flag)


@pytest.mark.parametrize(("command", "flag"), TIME_ARGS)
def test_valid_times_get_past_the_checks(no_store: None, capsys: pytest.CaptureFixture[str], command: str,
                                         flag: str) -> None:
    for value in ("2026-11-02", "2026-11-02T12:00Z", "1793491200001", "9998-12-31T23:59:59.999Z"):
        assert run_time_arg(capsys, command, flag, value)[0] == 99, value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arg=st.sampled_from(TIME_ARGS),
       value=st.one_of(st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
                       st.integers().map(str), st.floats().map(repr), st.sampled_from(EXTREMES),
                       st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(dt.datetime.isoformat)))
def test_any_time_text_is_refused_in_one_line_or_gets_past_the_checks(
        no_store: None, capsys: pytest.CaptureFixture[str], arg: tuple[str, str], value: str) -> None:
    """Never exit 6: a time argument is taken (the command goes on to Firestore) or refused as bad input."""
    command, flag = arg
    code, err = run_time_arg(capsys, command, flag, value)
    if code != 99:
        assert_refused(code, err, flag)


@pytest.mark.parametrize(("argv", "flag"), [
    (["report", "--hours", "nan"], "--hours"), (["report", "--hours", "1e3"], "--hours"),
    (["report", "--hours", "0"], "--hours"), (["report", "--hours", "2161"], "--hours"),
    (["report", "--hours", "99999999999999999999999"], "--hours"), (["report", "--hours=-1"], "--hours"),
    (["export", "--since", "0", "--page-size", "99999999999999999999"], "--page-size"),
    (["audit", "log", "--limit", "0"], "--limit"), (["report", "--at"], "--at"),
])
def test_argparse_errors_are_one_line_with_a_code(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                  flag: str) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    err = capsys.readouterr().err
    assert refused.value.code == cli.EXIT_USAGE
    assert err.count("\n") == 1 and err.startswith("error [E_LEARN_INVALID_ARGUMENT]: ") and flag in err, err


@pytest.mark.parametrize("command", ["export --since 0", "report"])
def test_out_naming_a_directory_is_refused_before_firestore(no_store: None, capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path, command: str) -> None:
    for out in (str(tmp_path), f"{tmp_path}/", "new-dir/", ".", "", " "):
        code = cli.main([*command.split(), f"--out={out}"])
        err = capsys.readouterr().err
        assert code == cli.EXIT_USAGE and err.startswith("error [E_LEARN_INVALID_ARGUMENT]: --out "), (out, err)
        assert ("directory" if out.strip() else "is empty") in err and err.count("\n") == 1, (out, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("ms", "shown"), [
    (0, "1970-01-01 00:00"), (1_793_534_400_000, "2026-11-01 12:00"), (-1, "1969-12-31 23:59"),
    (9 * 10**18, "9000000000000000000 ms"), (-(10**20), "-100000000000000000000 ms"), (float("nan"), "nan ms"),
    (float("inf"), "inf ms"), (None, "-"), (True, "-"), ("2026-11-01", "-"),
])
def test_when_shows_any_stored_time_without_raising(ms: object, shown: str) -> None:
    assert when(ms) == shown
