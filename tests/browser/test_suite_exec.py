"""`firebase emulators:exec` through scripts/suite.py: the command runs against the suite's emulators and
its exit code is the suite's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts import suite as suite_mod

pytestmark = pytest.mark.browser

PROBE = """
import os, sys
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
assert os.environ["FIREBASE_AUTH_EMULATOR_HOST"] and os.environ["GCLOUD_PROJECT"] == "demo-opsloop"
db = firestore.Client(project="demo-opsloop", credentials=AnonymousCredentials())
db.collection("probe").document("p").set({"x": 1})
sys.exit(int(sys.argv[1]) if db.collection("probe").document("p").get().to_dict() == {"x": 1} else 9)
"""


def run(code: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(suite_mod.ROOT / "scripts" / "suite.py"), "exec", "--free-ports", "--",
                           sys.executable, "-c", PROBE, str(code)], capture_output=True, text=True, timeout=300,
                          cwd=suite_mod.ROOT)


def test_a_command_runs_against_the_suites_firestore_and_its_exit_code_comes_back() -> None:
    ok = run(0)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "Running script" in ok.stdout
    failed = run(4)
    assert failed.returncode != 0 and "exited with code 4" in failed.stdout + failed.stderr


def test_emulators_left_running_by_a_killed_cli_are_found_and_ended() -> None:
    import os
    import signal
    import socket
    import time

    s = suite_mod.start_suite(free=True)
    try:
        os.killpg(s.proc.pid, signal.SIGKILL)  # no clean shutdown: the detached Java emulators stay up
        s.proc.wait(timeout=10)

        def answers(port: int) -> bool:
            with socket.socket() as sock:
                sock.settimeout(1)
                return sock.connect_ex(("127.0.0.1", port)) == 0

        assert answers(s.ports["firestore"]) and answers(s.ports["pubsub"])
        assert len(suite_mod.end_orphans(s.ports)) == 2
        deadline = time.monotonic() + 10
        while (answers(s.ports["firestore"]) or answers(s.ports["pubsub"])) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not answers(s.ports["firestore"]) and not answers(s.ports["pubsub"])
    finally:
        s.stop()
