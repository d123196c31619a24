"""`make demo`: the whole loop on the real Firestore emulator, driven over HTTP.

Starts the emulator and the functions (functions-framework), loads the seed, then a router sends
traffic across three models while gpt-5 degrades; Cloud Scheduler's calls are replayed with its
headers; the stats, the drafted policy and the admin's activation are printed with the audit trail.
Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

from scripts import emulator as emu_mod  # noqa: E402
from scripts.tokens import bearer, emulator_token  # noqa: E402

PROJECT = "demo-opsloop"
MODELS = {  # hidden truth of the simulated models: (median latency ms, failure rate, cost per call)
    "gpt-5": (900.0, 0.02, 0.030),
    "gemini": (700.0, 0.03, 0.012),
    "claude": (1100.0, 0.02, 0.020),
}


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, text: str) -> None:
    say(f"\n== {n}. {text}")


def table(rows: list[list[Any]], header: list[str]) -> None:
    cells = [[str(c) for c in header]] + [[("-" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, r in enumerate(cells):
        say("  " + "  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0:
            say("  " + "  ".join("-" * w for w in widths))


def simulate(
    rng: random.Random, weights: dict[str, float], start_ms: int, n: int, degrade_after: int
) -> list[dict[str, Any]]:
    """A router choosing models by the active weights; gpt-5 degrades for the second part of the run."""
    out = []
    models = list(weights)
    for i in range(n):
        model = rng.choices(models, weights=[weights[m] for m in models])[0]
        median, fail, cost = MODELS[model]
        if model == "gpt-5" and i >= degrade_after:
            median, fail = 3800.0, 0.55
        latency = median * rng.lognormvariate(0, 0.35)
        roll = rng.random()
        if roll >= fail:
            outcome = "success"
        else:
            outcome = "timeout" if latency > 3000 else rng.choice(["failure", "rate_limit"])
        item: dict[str, Any] = {
            "id": f"demo-{i:05d}",
            "ts": start_ms + i * 1500,
            "component": f"router:{model}",
            "outcome": outcome,
            "durationMs": round(min(latency, 30_000), 1),
            "tokensIn": rng.randint(200, 900),
            "tokensOut": rng.randint(100, 700),
            "costUsd": round(cost * rng.uniform(0.7, 1.3), 5),
            "policyVersion": "router-core@1.0.0",
        }
        if outcome != "success":
            item["errorCode"] = "upstream_503" if outcome == "failure" else outcome
        out.append(item)
    return out


def main() -> int:
    t0 = time.monotonic()
    procs: list[Any] = []
    try:
        step(1, "Start the Cloud Firestore emulator (firestore.rules loaded)")
        emu = emu_mod.start(PROJECT, rules=ROOT / "firestore.rules", log_dir=ROOT / ".emulator-logs")
        procs.append(emu)
        os.environ.update(FIRESTORE_EMULATOR_HOST=emu.address, GCLOUD_PROJECT=PROJECT,
                          FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099")
        say(f"   emulator on {emu.address}, project {PROJECT}")

        step(2, "Load the seed (idempotent)")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "seed.py"), "--emulator", emu.address,
                        "--project", PROJECT], check=True)
        from opsloop.store.client import get_db
        from opsloop.store.firestore_store import FirestoreStore

        store = FirestoreStore(get_db())
        # The scorer waits this long behind ingestion; 5 s in production, shortened for a quick demo.
        store.set_config("scoring", {"safetyMarginMs": 500})

        step(3, "Serve the functions locally with functions-framework")
        port = emu_mod.free_port()
        log = open(ROOT / ".emulator-logs" / f"functions-{port}.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(port)],
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "functions")},
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        procs.append(server)
        base = f"http://127.0.0.1:{port}"
        emu_mod.wait_http(f"{base}/", timeout=60, proc=server)
        say(f"   {base}/recordObservation, /scoreObservations, /autoTunePolicies, /activatePolicy, /rollbackPolicy")

        step(4, "A router sends 1,800 calls over HTTP (batches of 100); gpt-5 degrades halfway")
        active = store.policy("router-core", "1.0.0") or {}
        weights = active["params"]["modelWeights"]
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start_ms = int(now.timestamp() * 1000) - 1800 * 1500 - 5000
        traffic = simulate(random.Random(36), weights, start_ms, 1800, degrade_after=900)
        service = bearer(emulator_token("router-service", project=PROJECT, role="service"))
        sent = 0
        for i in range(0, len(traffic), 100):
            r = requests.post(f"{base}/recordObservation", json={"observations": traffic[i : i + 100]},
                              headers=service, timeout=60)
            r.raise_for_status()
            sent += r.json()["created"]
            if (i // 100) % 6 == 5:
                say(f"   {sent}/{len(traffic)} observations stored")
        r = requests.post(f"{base}/recordObservation", json=traffic[0], headers=service, timeout=60)
        say(f"   re-sent {traffic[0]['id']}: HTTP {r.status_code}, duplicates={r.json()['duplicates']} (idempotent)")
        time.sleep(0.6)

        def schedule(name: str) -> None:
            when = dt.datetime.now(dt.UTC)
            r = requests.post(f"{base}/{name}", timeout=300, headers={
                "X-CloudScheduler-JobName": f"firebase-schedule-{name}-us-central1",
                "X-CloudScheduler-ScheduleTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            })
            say(f"   Cloud Scheduler -> {name} @ {when:%H:%M:%S}Z: HTTP {r.status_code}")
            r.raise_for_status()

        step(5, "Cloud Scheduler triggers scoreObservations")
        schedule("scoreObservations")
        say(f"   {store.count('ops_rewards')} rewards written")
        rows = []
        for st in sorted(store.stats(), key=lambda s: (s["component"], s["window"])):
            if st["window"] != "1h":
                continue
            rows.append([st["component"], st["window"], st["n"], f"{st['successRate']:.3f}", st["p50Latency"],
                         st["p95Latency"], f"{st['avgCostUsd']:.4f}", f"{st['avgReward']:.3f}"])
        table(rows, ["component", "window", "n", "success", "p50 ms", "p95 ms", "avg $", "avg reward"])

        step(6, "Cloud Scheduler triggers autoTunePolicies")
        schedule("autoTunePolicies")
        drafts = sorted((p for p in store.policy_versions("router-core") if p["status"] == "draft"),
                        key=lambda p: p["createdAt"])
        if not drafts:
            say("   no draft was proposed")
            return 1
        draft = drafts[-1]
        say(f"   draft router-core@{draft['version']} ({draft['notes']}): {draft['evidence']['reason']}")
        ev = draft["evidence"]["models"]
        table([[m, weights[m], draft["params"]["modelWeights"][m], ev[m]["n"],
                "-" if ev[m]["avgReward"] is None else f"{ev[m]['avgReward']:.3f}"] for m in weights],
              ["model", "active 1.0.0", f"draft {draft['version']}", "n (24h)", "avg reward"])

        step(7, "An admin activates the draft through the activatePolicy callable")
        admin = bearer(emulator_token("alice", project=PROJECT, role="admin"))
        r = requests.post(f"{base}/activatePolicy", json={"data": {"id": "router-core", "version": draft["version"]}},
                          headers=admin, timeout=60)
        say(f"   HTTP {r.status_code}: {r.json()}")
        r.raise_for_status()
        r = requests.post(f"{base}/activatePolicy", json={"data": {"id": "router-core", "version": "1.0.0"}},
                          headers=service, timeout=60)
        say(f"   the router's service token tries the same: {r.json()['error']['status']}")

        step(8, "Audit trail (newest first)")
        audit = store.audit_log(policy_id="router-core")
        table([[dt.datetime.fromtimestamp(a["ts"] / 1000, dt.UTC).strftime("%H:%M:%S"), a["actor"], a["action"],
                a.get("from"), a["to"]] for a in audit], ["time", "actor", "action", "from", "to"])
        say(f"\nDemo finished in {time.monotonic() - t0:.1f}s.")
        return 0
    except emu_mod.EmulatorNotInstalled as exc:
        say(f"error: {exc}")
        return 3
    finally:
        for p in reversed(procs):
            if isinstance(p, emu_mod.Emulator):
                p.stop()
            else:
                p.terminate()
                p.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
