"""The CLI's edge: unexpected failures still end in one line and a documented exit code."""

from __future__ import annotations

import argparse

import pytest

from opsloop import cli


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
