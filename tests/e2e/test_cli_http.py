"""``opsloop activate/rollback --url``: the same change through the served callables, with ID tokens."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from opsloop import cli
from tests.emulator.test_cli import add_draft
from tests.helpers import bearer, emulator_token

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

ADMIN = emulator_token("alice", role="admin")
SERVICE = emulator_token("router-svc", role="service")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_activate_and_rollback_through_the_callables(server: str, seeded: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    add_draft(seeded, "1.0.1", {"gpt-5": 0.3, "gemini": 0.55, "claude": 0.15})
    code, out, err = run(capsys, "activate", "router-core@1.0.1", "--url", server, "--token", ADMIN)
    assert code == 0, err
    assert "active 1.0.0 -> 1.0.1" in out
    audit = seeded.audit.log(policy_id="router-core")
    assert (audit[0]["action"], audit[0]["actor"]) == ("activate", "alice")  # the token's user, not the CLI's

    code, _, err = run(capsys, "rollback", "router-core", "--url", server, "--token", SERVICE)
    assert code == cli.EXIT_REFUSED and "PERMISSION_DENIED" in err and "[E_LEARN_PERMISSION_DENIED]" in err
    code, _, err = run(capsys, "activate", "router-core@7.7.7", "--url", server, "--token", ADMIN)
    assert code == cli.EXIT_USAGE and "[E_LEARN_NOT_FOUND]" in err
    code, out, _ = run(capsys, "rollback", "router-core", "--url", server, "--token", ADMIN, "--json")
    assert code == 0 and '"active": "1.0.0"' in out
    code, _, err = run(capsys, "rollback", "router-core", "--url", server, "--token", ADMIN)
    assert code == cli.EXIT_REFUSED and "[E_LEARN_NOTHING_TO_ROLL_BACK]" in err
    code, _, err = run(capsys, "activate", "router-core@1.0.1", "--url", "http://127.0.0.1:9", "--token", ADMIN)
    assert code == cli.EXIT_ENVIRONMENT and "cannot reach the functions" in err


def test_every_callable_error_carries_a_documented_code(server: str, seeded: Any) -> None:
    from opsloop.domain.errors import CODES

    cases = [("activatePolicy", {"id": "router-core"}, ADMIN, "E_LEARN_INVALID_ARGUMENT"),
             ("activatePolicy", {"id": "router-core", "version": "1.0.0"}, None, "E_LEARN_UNAUTHENTICATED"),
             ("activatePolicy", {"id": "router-core", "version": "1.0.0"}, SERVICE, "E_LEARN_PERMISSION_DENIED"),
             ("promotePolicy", {"id": "router-core", "version": "1.0.0"}, ADMIN, "E_LEARN_PRECONDITION")]
    for name, data, token, code in cases:
        r = requests.post(f"{server}/{name}", json={"data": data}, headers=bearer(token), timeout=60)
        err = r.json()["error"]
        assert err["details"]["code"] == code, (name, data, err)
        assert code in CODES
