"""Learning effectiveness on the real emulator: a past auto-activation that fixed a drifted model and a
recent manual rollback, their matched-window effects, time to fix and rates; the CLI, the export and the
report show them."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from opsloop import cli
from opsloop.domain import audit as audit_domain
from opsloop.domain import windows
from opsloop.services import learning, scoring
from opsloop.services.record import record_batch
from opsloop.store import audit as audit_store
from opsloop.store.firestore_store import FirestoreStore
from opsloop.store.tx import run_transaction
from tests.emulator.test_report import Page, chromium, headless

pytestmark = pytest.mark.emulator

M, H = 60_000, 3_600_000


def audit(store: FirestoreStore, ts: int, action: str, actor: str, frm: str, to: str) -> None:
    """An audit entry sealed into the policy's chain with a past time (history the test starts from)."""
    chain = audit_domain.policy_chain("router-core")

    def work(txn: Any) -> None:
        head = audit_store.chain_head(store.db, txn, chain)
        audit_store.append_audit(store.db, txn, chain, head, {"ts": ts, "actor": actor, "action": action,
                                                               "id": "router-core", "from": frm, "to": to})

    run_transaction(store.db, work)


def traffic(lo: int, hi: int, version: str, success: float, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": f"{version}-{seed}-{i}", "ts": lo + (hi - lo) * i // n, "component": "router:gpt-5",
             "outcome": "success" if rng.random() < success else "failure", "durationMs": 800.0,
             "costUsd": 0.02, "policyVersion": f"router-core@{version}"} for i in range(n)]


@pytest.fixture()
def history(seeded: FirestoreStore) -> dict[str, int]:
    draft = {**(seeded.policies.policy("router-core", "1.0.0") or {}), "version": "1.0.1", "status": "draft"}
    assert seeded.policies.create_version(draft, {"actor": "t", "action": "draft", "id": "router-core",
                                                  "from": "1.0.0", "to": "1.0.1"})
    now = windows.ms(dt.datetime.now(dt.UTC))
    t_a = windows.bucket_start(now - 3 * H, "5m") + 150_000  # the loop's activation, 3 hours ago
    t_b = windows.bucket_start(now - 20 * M, "5m") + 150_000  # alice rolls it back, 20 minutes ago
    b_a, b_b = windows.bucket_start(t_a, "5m"), windows.bucket_start(t_b, "5m")
    audit(seeded, t_a, "activate", "policy-updater", "1.0.0", "1.0.1")
    audit(seeded, t_b, "rollback", "alice", "1.0.1", "1.0.0")
    items = (traffic(b_a - H, b_a, "1.0.0", 0.5, 240, 1)  # before the activation: gpt-5 failing half the time
             + traffic(b_a + 5 * M, b_a + 65 * M, "1.0.1", 0.97, 240, 2)  # after it
             + traffic(b_b - H, b_b, "1.0.1", 0.97, 120, 3)  # before the rollback
             + traffic(b_b + 5 * M, min(now - M, b_b + 15 * M), "1.0.0", 0.5, 40, 4))  # after it, so far
    for i in range(0, len(items), 500):
        record_batch(seeded, {"observations": items[i : i + 500]})
    scoring.score_observations(seeded, dt.datetime.now(dt.UTC))
    seeded.db.collection("ops_drift").document("router:gpt-5").set(
        {"component": "router:gpt-5", "drifting": True, "changedAt": t_a - 70 * M, "updatedAt": t_a - 70 * M,
         "tunerShift": {"start": t_a - 40 * M, "judged": True}})  # the change test's shift is newer: it counts
    return {"a": t_a, "b": t_b, "now": now}


def test_each_change_s_effect_in_matched_windows_time_to_fix_and_rates(history: dict[str, int],
                                                                        seeded: FirestoreStore) -> None:
    doc = learning.refresh(seeded, only={"router-core"})[0]
    assert seeded.learning.get("router-core") == doc
    rollback, activation = doc["changes"]  # newest first
    assert activation["action"] == "activate" and activation["auto"] and activation["windowMs"] == H
    e = activation["effect"]
    assert e["final"] and e["beforeN"] == 240 and e["afterN"] == 240
    assert e["ciLow"] > 0.1 and e["diff"] > e["ciLow"]  # the fix raised the reward, clear of noise
    assert activation["timeToFixMs"] == 40 * M  # from the newer detection (the change test's) to the activation
    assert len(activation["series"]) == 24 and activation["before"][1] == activation["after"][0] - 5 * M
    assert rollback["action"] == "rollback" and not rollback["auto"] and rollback["actor"] == "alice"
    assert not rollback["effect"]["final"] and rollback["effect"]["beforeN"] == 120
    assert rollback["timeToFixMs"] is None
    rates = doc["rates"]
    assert rates["rollbackRate"] == 1.0 and rates["autoActivationRate"] == 1.0 and rates["manualOverrides"] == 1
    assert rates["counts"]["draft"] == 1 and doc["summary"]["improved"] >= 1

    reads: list[str] = []
    original = seeded.buckets.load_segments

    def counting(component: str, segments: Any) -> Any:
        reads.append(component)
        return original(component, segments)

    seeded.buckets.load_segments = counting  # type: ignore[method-assign]
    again = learning.refresh(seeded, only={"router-core"})[0]
    assert len(reads) == 2  # the final activation is kept as stored; only the rollback's windows are read
    assert again["changes"][1] == activation


def test_opsloop_learning_export_and_report(history: dict[str, int], seeded: FirestoreStore,
                                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["learning"]) == 0
    assert "no learning records yet" in capsys.readouterr().out
    assert cli.main(["learning", "--policy", "router-core", "--refresh"]) == 0
    out = capsys.readouterr().out
    assert "router-core: 2 changes, 1 improved the reward" in out and "40 min" in out
    assert "rollback rate 100%" in out and "1 manual overrides" in out and "pending" in out and "final" in out
    assert cli.main(["learning", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "router-core"
    assert cli.main(["learning", "--policy", "nope"]) == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err

    parquet = tmp_path / "learning.parquet"
    assert cli.main(["export", "--learning", "--out", str(parquet)]) == 0
    rows = pq.read_table(parquet).to_pylist()
    assert [(r["action"], r["auto"], r["final"]) for r in rows] == [("activate", True, True),
                                                                   ("rollback", False, False)]
    assert rows[0]["timeToFixMs"] == 40 * M and rows[0]["ciLow"] > 0
    manifest = json.loads((tmp_path / "learning.parquet.manifest.json").read_text())
    assert manifest["dataset"] == "learning" and manifest["rows"] == 2
    assert manifest["policies"]["router-core"]["rates"]["manualOverrides"] == 1
    capsys.readouterr()
    assert cli.main(["export", "--learning", "--since", "2026-01-01", "--out", str(parquet)]) == 2

    report = tmp_path / "report.html"
    assert cli.main(["report", "--out", str(report), "--hours", "6"]) == 0
    page = Page()
    page.feed(report.read_text())
    assert "Learning: the reward around each change" in page.headings
    charts = [c for c in page.charts if c["alt"].startswith("router-core: ")]
    assert [c["alt"].split(":")[1].split(",")[0].strip() for c in charts] == ["rollback 1.0.1 → 1.0.0",
                                                                               "activate 1.0.0 → 1.0.1"]
    assert int(charts[1]["data-points"]) == 24
    dom = headless(chromium(), tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", report.as_uri())
    loaded = re.search(r'data-charts-loaded="(\d+)"', dom.stdout)
    assert loaded and int(loaded.group(1)) == len(page.charts)
