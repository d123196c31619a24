"""Session fixtures: one Firestore emulator (with firestore.rules loaded) and the functions server."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import emulator as emu_mod
from tests.helpers import PROJECT

ROOT = Path(__file__).resolve().parent.parent
AUTH_EMULATOR = "127.0.0.1:9099"  # only its presence matters: firebase_admin then accepts unsigned tokens


@pytest.fixture(scope="session")
def emulator() -> Iterator[emu_mod.Emulator]:
    existing = os.environ.get("OPSLOOP_TEST_EMULATOR")  # reuse a running emulator: HOST:PORT
    if existing:
        host, port = existing.split(":")
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        emu = emu_mod.Emulator(host, int(port), PROJECT, proc, Path("/dev/null"))
    else:
        try:
            emu = emu_mod.start(PROJECT, rules=ROOT / "firestore.rules", log_dir=ROOT / ".emulator-logs")
        except emu_mod.EmulatorNotInstalled as exc:
            pytest.exit(f"Firestore emulator missing: {exc}", returncode=3)
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.address
    os.environ["GCLOUD_PROJECT"] = PROJECT
    os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = AUTH_EMULATOR
    from opsloop.store import client

    client.reset_for_tests()
    yield emu
    if not existing:
        emu.stop()


@pytest.fixture()
def store(emulator: emu_mod.Emulator):  # type: ignore[no-untyped-def]
    """A FirestoreStore on an emptied emulator."""
    from opsloop.store.client import get_db
    from opsloop.store.firestore_store import FirestoreStore

    emulator.clear()
    return FirestoreStore(get_db())


@pytest.fixture()
def seeded(store):  # type: ignore[no-untyped-def]
    from opsloop.services.seed import load_seed

    load_seed(store, ROOT / "seed")
    store.configs.set("scoring", {"safetyMarginMs": 0})
    return store


@pytest.fixture(scope="session")
def server(emulator: emu_mod.Emulator) -> Iterator[str]:
    """The functions served over HTTP by scripts/serve.py; yields the base URL."""
    port = emu_mod.free_port()
    # OPSLOOP_CONFIG_CACHE_S=0: ingestion reads config/scoring afresh, so a test's config change is seen at once
    # and OPSLOOP_COST_CACHE_S=0: assignPolicy reads the models' expected costs afresh
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions"), "OPSLOOP_CONFIG_CACHE_S": "0",
           "OPSLOOP_COST_CACHE_S": "0"}
    log = open(ROOT / ".emulator-logs" / f"functions-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        emu_mod.wait_http(f"{base}/", timeout=60, proc=proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False
