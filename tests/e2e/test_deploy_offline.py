"""What `firebase deploy` would read, checked offline: the functions manifest as firebase-tools builds it,
firebase.json against firebase-tools' own schema, the indexes by its validator, the rules by the emulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from scripts import emulator as emu_mod

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

CALLABLES = ("activatePolicy", "rollbackPolicy", "startShadow", "startCanary", "promotePolicy", "rejectPolicy",
             "setLearningFlags", "previewRewardConfig")
# name -> (schedule, memory MB, timeout s)
SCHEDULED = {"scoreObservations": ("every 5 minutes", 1024, 540), "autoTunePolicies": ("every 60 minutes", None, 300),
             "evaluateRollouts": ("every 10 minutes", None, 300), "deliverEvents": ("every 1 minutes", None, 120)}
HTTPS = {"recordObservation": 512, "assignPolicy": None, "recordFeedback": None}


@pytest.fixture(scope="module")
def manifest() -> Iterator[dict[str, Any]]:
    """`/__/functions.yaml` of firebase_functions' serving module, run as firebase-tools runs it (from
    functions/, ADMIN_PORT set) to discover what to deploy."""
    import firebase_functions

    serving = Path(firebase_functions.__file__).parent / "private" / "serving.py"
    port = emu_mod.free_port()
    proc = subprocess.Popen([sys.executable, str(serving)], cwd=ROOT / "functions",
                            env={**os.environ, "ADMIN_PORT": str(port)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/__/functions.yaml", timeout=5) as r:
                    yield yaml.safe_load(r.read())
                    return
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise AssertionError(f"serving.py did not answer:\n{out[-3000:]}") from None
                time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_manifest_names_every_function_with_its_trigger_schedule_memory_and_timeout(
    manifest: dict[str, Any],
) -> None:
    from scripts.serve import FUNCTIONS

    endpoints = manifest["endpoints"]
    assert sorted(endpoints) == sorted(FUNCTIONS)
    for name, ep in endpoints.items():
        assert ep["entryPoint"] == name and ep["region"] == ["us-central1"] and ep["platform"] == "gcfv2"
        assert ep["maxInstances"] == 20
    for name in CALLABLES:
        assert endpoints[name]["callableTrigger"] == {}, name
        assert endpoints[name]["labels"] == {"deployment-callable": "true"}
    for name, memory in HTTPS.items():
        assert endpoints[name]["httpsTrigger"] == {} and endpoints[name]["availableMemoryMb"] == memory, name
    for name, (schedule, memory, timeout) in SCHEDULED.items():
        ep = endpoints[name]
        assert ep["scheduleTrigger"]["schedule"] == schedule, name
        assert (ep["availableMemoryMb"], ep["timeoutSeconds"]) == (memory, timeout), name
    shard = endpoints["scoreShard"]  # the scoring shards' task queue, created by firebase deploy
    assert shard["taskQueueTrigger"]["retryConfig"]["maxAttempts"] == 5, shard
    assert shard["taskQueueTrigger"]["rateLimits"]["maxConcurrentDispatches"] == 64
    assert (shard["availableMemoryMb"], shard["timeoutSeconds"]) == (1024, 540)
    assert manifest["specVersion"] == "v1alpha1"


def check(config: Path, indexes: Path) -> tuple[int, dict[str, Any]]:
    assert NODE, "node is needed (make node)"
    r = subprocess.run([NODE, str(ROOT / "scripts" / "check_deploy.cjs"), str(config), str(indexes)],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, json.loads(r.stdout)


def test_firebase_json_and_the_indexes_pass_firebase_tools_own_checks(tmp_path: Path) -> None:
    code, report = check(ROOT / "firebase.json", ROOT / "firestore.indexes.json")
    assert code == 0 and report["configErrors"] == [] and report["indexErrors"] == [], report
    assert report["indexCount"] == len(json.loads((ROOT / "firestore.indexes.json").read_text())["indexes"])
    config = json.loads((ROOT / "firebase.json").read_text())
    assert config["hosting"]["public"] == "console/dist" and config["emulators"]["ui"] == {"enabled": False}
    # the same checks refuse a broken file: an unknown key, an index without a queryScope
    config["hosting"]["publc"] = "x"
    (tmp_path / "firebase.json").write_text(json.dumps(config))
    bad_indexes = json.loads((ROOT / "firestore.indexes.json").read_text())
    del bad_indexes["indexes"][0]["queryScope"]
    (tmp_path / "indexes.json").write_text(json.dumps(bad_indexes))
    code, report = check(tmp_path / "firebase.json", tmp_path / "indexes.json")
    assert code == 1 and "publc" in report["configErrors"][0] and "queryScope" in report["indexErrors"][0]


def test_the_emulator_compiles_the_rules_and_refuses_broken_ones(emulator: emu_mod.Emulator) -> None:
    url = f"{emulator.base_url}/emulator/v1/projects/{emulator.project}:securityRules"

    def put(source: str) -> requests.Response:
        return requests.put(url, json={"rules": {"files": [{"name": "firestore.rules", "content": source}]}},
                            timeout=30)

    rules = (ROOT / "firestore.rules").read_text()
    ok = put(rules)
    assert ok.status_code == 200, ok.text
    broken = put(rules.replace("allow read: if isAdmin();", "allow read: if isAdmin(;", 1))
    assert broken.status_code == 400 and "Error compiling rules" in broken.text
    assert put(rules).status_code == 200  # the session's emulator keeps the real rules
