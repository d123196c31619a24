"""`make demo`: the whole loop on the Firebase emulator suite (Google's real Firestore emulator), over HTTP.

Starts the suite (`firebase emulators:start`: Firestore, Auth, Functions, Hosting with the console), serves
the functions for the demo's own calls with functions-framework (the fast path), loads the seed, then a router sends
traffic across three models while gpt-5 degrades; Cloud Scheduler's calls are replayed with its
headers; the stats, the drafted policy and the admin's activation are printed with the audit trail.
It ends with the console's URL; with ``--keep`` (`make console`) the suite stays up until Ctrl-C.
Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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
from scripts import suite as suite_mod  # noqa: E402
from scripts.serve import FUNCTIONS  # noqa: E402
from scripts.tokens import bearer, emulator_token  # noqa: E402

PROJECT = "demo-opsloop"
CONSOLE_ADMIN = ("admin@opsloop.test", "opsloop-demo")  # the Auth emulator's only admin; local only
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


def simulate(router: Any, rng: random.Random, start_ms: int, n: int, step_ms: int, degrade_after: int,
             prefix: str) -> list[dict[str, Any]]:
    """A router component: route each request with the Router library, call the model, report it."""
    out = []
    for i in range(n):
        call = router.route(f"{prefix}-{i:05d}", "router-core")
        median, fail, cost = MODELS[call.model]
        if call.model == "gpt-5" and i >= degrade_after:
            median, fail = 3800.0, 0.55
        latency = median * rng.lognormvariate(0, 0.35)
        if rng.random() >= fail:
            outcome = "success"
        else:
            outcome = "timeout" if latency > 3000 else rng.choice(["failure", "rate_limit"])
        item: dict[str, Any] = {
            "id": f"{prefix}-{i:05d}",
            "ts": start_ms + i * step_ms,
            "component": f"router:{call.model}",
            "outcome": outcome,
            "durationMs": round(min(latency, 30_000), 1),
            "tokensIn": rng.randint(200, 900),
            "tokensOut": rng.randint(100, 700),
            "costUsd": round(cost * rng.uniform(0.7, 1.3), 5),
            "policyVersion": call.policy_version,
            "propensity": call.model_propensity,
        }
        if call.arm is not None:
            item["arm"] = call.arm
        if outcome != "success":
            item["errorCode"] = "upstream_503" if outcome == "failure" else outcome
        out.append(item)
    return out


AUTOSCALER = {  # a second component: an autoscaler whose params the loop tunes by experiment
    "id": "autoscaler-core", "version": "1.0.0", "kind": "params", "status": "active", "createdBy": "demo",
    "notes": "Initial autoscaler settings",
    "params": {"targetCpu": 0.8, "minInstances": 2, "cooldownS": 60},
    "search": {"targetCpu": {"min": 0.3, "max": 0.9}, "minInstances": {"min": 1, "max": 10, "int": True},
               "cooldownS": {"choices": [30, 60, 120]}},
}


def autoscaled(params: dict[str, Any], rng: random.Random) -> tuple[str, float, float]:
    """The hidden truth of the service behind the autoscaler: (outcome, latency ms, cost per request).
    Hot targets overload it, too few instances queue requests, a short cooldown flaps, instances cost."""
    t, m, c = params["targetCpu"], params["minInstances"], params["cooldownS"]
    fail = 0.02 + 1.2 * max(0.0, t - 0.75) + 0.03 * max(0, 3 - m) + (0.02 if c == 30 else 0.0)
    latency = 400 * (1 + 6 * max(0.0, t - 0.6)) * (1 + 0.25 * max(0, 3 - m)) * rng.lognormvariate(0, 0.3)
    cost = 0.01 * (1 + 0.3 * (0.8 - t)) * (1 + 0.02 * (m - 2)) * (1.1 if c == 120 else 1.0)
    return ("success" if rng.random() >= fail else "timeout"), round(latency, 1), round(cost, 5)


def expected_reward(params: dict[str, Any]) -> float:
    """The reward config's expectation for ``params`` (Monte Carlo), to show how far each step got."""
    from opsloop.domain.reward import RewardConfig, score

    rng, cfg = random.Random(0), RewardConfig()
    draws = [autoscaled(params, rng) for _ in range(4000)]
    return sum(score(o, lat, cost, cfg).score for o, lat, cost in draws) / len(draws)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the suite and the console up until Ctrl-C")
    keep = parser.parse_args(argv).keep
    t0 = time.monotonic()
    procs: list[Any] = []
    try:
        step(1, "Start the Firebase emulator suite: Firestore (firestore.rules), Auth, Functions, Hosting (console)")
        suite = suite_mod.start_suite(free=True)
        procs.append(suite)
        os.environ.update(suite.env())
        emu = emu_mod.Emulator("127.0.0.1", suite.ports["firestore"], PROJECT, suite.proc, suite.log)
        say(f"   Firestore {emu.address}, Auth {suite.host('auth')}, Functions {suite.host('functions')}, "
            f"console {suite.console_url} (project {PROJECT})")

        step(2, "Load the seed (idempotent)")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "seed.py"), "--emulator", emu.address,
                        "--project", PROJECT], check=True)
        from opsloop.store.client import get_db
        from opsloop.store.firestore_store import FirestoreStore

        store = FirestoreStore(get_db())
        # The scorer waits this long behind ingestion; 5 s in production, shortened for a quick demo.
        store.configs.set("scoring", {"safetyMarginMs": 500})

        step(3, "Serve the functions locally with functions-framework")
        port = emu_mod.free_port()
        log = open(ROOT / ".emulator-logs" / f"functions-{port}.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(port)],
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "functions")},
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        procs.append(server)
        base = f"http://127.0.0.1:{port}"
        emu_mod.wait_http(f"{base}/", timeout=60, proc=server)
        say(f"   {base}/<name> for each of: {', '.join(FUNCTIONS)}")

        step(4, "A router component sends 1,800 calls over HTTP (batches of 100); gpt-5 degrades halfway")
        from opsloop.services.routing import Router

        router = Router(store.policies, ttl_s=0)  # components cache policies for 5 minutes; the demo wants no lag
        weights = router.params("router-core", "1.0.0")["modelWeights"]
        service = bearer(emulator_token("router-service", project=PROJECT, role="service"))
        admin = bearer(emulator_token("alice", project=PROJECT, role="admin"))
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        rng = random.Random(36)
        traffic = simulate(router, rng, now_ms - 1800 * 1500 - 5000, 1800, 1500, degrade_after=900, prefix="req")

        def send(items: list[dict[str, Any]]) -> None:
            sent = 0
            for i in range(0, len(items), 100):
                r = requests.post(f"{base}/recordObservation", json={"observations": items[i : i + 100]},
                                  headers=service, timeout=60)
                r.raise_for_status()
                sent += r.json()["created"]
                if (i // 100) % 6 == 5 or i + 100 >= len(items):
                    say(f"   {sent}/{len(items)} observations stored")

        send(traffic)
        r = requests.post(f"{base}/recordObservation", json=traffic[0], headers=service, timeout=60)
        say(f"   re-sent {traffic[0]['id']}: HTTP {r.status_code}, duplicates={r.json()['duplicates']} (idempotent)")
        r = requests.post(f"{base}/recordObservation", json={**traffic[1], "id": "bad-1", "durationMs": -5},
                          headers=service, timeout=60)
        say(f"   a malformed one: HTTP {r.status_code} {r.json()['error']['details']['errors']}")
        time.sleep(0.6)

        def schedule(name: str, when: dt.datetime | None = None, quiet: bool = False) -> None:
            when = when or dt.datetime.now(dt.UTC)
            r = requests.post(f"{base}/{name}", timeout=300, headers={
                "X-CloudScheduler-JobName": f"firebase-schedule-{name}-us-central1",
                "X-CloudScheduler-ScheduleTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            })
            if not quiet:
                say(f"   Cloud Scheduler -> {name} @ {when:%H:%M:%S}Z: HTTP {r.status_code}")
            r.raise_for_status()

        opsloop = [sys.executable, "-m", "opsloop.cli", "--emulator", emu.address, "--project", PROJECT]
        cli_env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}

        def callable_(name: str, data: dict[str, Any], headers: dict[str, str] = admin) -> dict[str, Any]:
            r = requests.post(f"{base}/{name}", json={"data": data}, headers=headers, timeout=60)
            return dict(r.json())

        step(5, "Cloud Scheduler triggers scoreObservations")
        schedule("scoreObservations")
        say(f"   {store.count('ops_rewards')} rewards written")
        rows = []
        for st in sorted(store.stats.all(), key=lambda s: (s["component"], s["window"])):
            if st["window"] != "1h":
                continue
            rows.append([st["component"], st["window"], st["n"], f"{st['successRate']:.3f}", st["p50Latency"],
                         st["p95Latency"], f"{st['avgCostUsd']:.4f}", f"{st['avgReward']:.3f}"])
        table(rows, ["component", "window", "n", "success", "p50 ms", "p95 ms", "avg $", "avg reward"])

        step(6, "Cloud Scheduler triggers autoTunePolicies")
        schedule("autoTunePolicies")
        drafts = sorted((p for p in store.policies.versions("router-core") if p["status"] == "draft"),
                        key=lambda p: p["createdAt"])
        if not drafts:
            say("   no draft was proposed")
            return 1
        draft = drafts[-1]
        version = draft["version"]
        say(f"   draft router-core@{version} ({draft['notes']}): {draft['evidence']['reason']}")
        ev = draft["evidence"]["models"]
        table([[m, weights[m], draft["params"]["modelWeights"][m], ev[m]["n"],
                "-" if ev[m]["avgReward"] is None else f"{ev[m]['avgReward']:.3f}"] for m in weights],
              ["model", "active 1.0.0", f"draft {version}", "n (24h)", "avg reward"])

        step(7, "An admin puts the draft in shadow (startShadow): judged offline on the logged traffic")
        ref = {"id": "router-core", "version": version}
        res = callable_("startShadow", ref)["result"]
        est = res["shadowEstimate"]
        say(f"   off-policy estimate from {est['n']} logged decisions (ESS {est['ess']:.0f}): "
            f"SNIPS {est['snips']:.3f} [{est['snipsCi'][0]:.3f}, {est['snipsCi'][1]:.3f}], "
            f"IPS {est['ips']:.3f}; the champion logged {est['loggedMean']:.3f}")

        step(8, "The admin starts a canary at 20% (startCanary); the router splits traffic by request id")
        # A real canary waits for 1,000 observations per arm; the demo settles for 300.
        store.configs.set("rollout", {"minSamples": 300})
        res = callable_("startCanary", {**ref, "split": "canary20"})["result"]
        say(f"   {res['action']}: {res['from']} -> {res['to']} at split {res['rollout']['split']}")
        canary = simulate(router, rng, int(dt.datetime.now(dt.UTC).timestamp() * 1000) - 2000, 2000, 0,
                          degrade_after=0, prefix="canary")
        arms = {a: sum(1 for o in canary if o.get("arm") == a) for a in ("champion", "challenger")}
        say(f"   routed: {arms['champion']} champion (1.0.0), {arms['challenger']} challenger ({version})")
        send(canary)
        time.sleep(0.6)

        step(9, "Cloud Scheduler triggers scoreObservations and evaluateRollouts")
        schedule("scoreObservations")
        schedule("evaluateRollouts")
        rollout = store.rollouts.get(res["rollout"]["rolloutId"]) or {}
        e = rollout.get("lastEvaluation") or {}
        table([[e.get("nChampion"), e.get("nChallenger"), f"{e['diff']:+.4f}",
                f"[{e['ciLow']:+.4f}, {e['ciHigh']:+.4f}]", f"{e['welchP']:.2g}", f"{e.get('lookP') or 1:.2g}",
                f"{e['srmP']:.2f}", e["outcome"]]],
              ["n champion", "n challenger", "reward diff", "95% CI", "Welch p", "always-valid p", "SRM p", "decision"])
        say(f"   {e.get('reason')}")
        table([[name, "—" if c["statistic"] is None else f"{c['statistic']:+.3f}", f"{c['threshold']:g}",
                "—" if c["p"] is None else f"{c['p']:.2g}", f"{c['alpha']:.2g}", "BREACHED" if c["breached"] else "ok"]
               for name, c in sorted((e.get("checks") or {}).items())],
              ["guardrail / safety", "challenger vs champion", "threshold", "always-valid p", "level", ""])

        step(10, "The admin promotes the challenger (promotePolicy); a service token may not")
        res = callable_("promotePolicy", ref)
        say(f"   {res.get('result') or res}")
        denied = callable_("activatePolicy", {"id": "router-core", "version": "1.0.0"}, headers=service)
        say(f"   the router's service token tries activatePolicy: {denied['error']['status']}")

        step(11, "An admin rolls back (rollbackPolicy), then re-activates the new version (activatePolicy)")
        say(f"   rollbackPolicy -> {callable_('rollbackPolicy', {'id': 'router-core'})['result']}")
        say(f"   activatePolicy -> {callable_('activatePolicy', ref)['result']}")

        step(12, "A second component learns: an autoscaler's params policy, tuned by experiment")
        store.policies.create_version(AUTOSCALER, {"actor": "demo", "action": "seed", "id": "autoscaler-core",
                                                 "from": None, "to": "1.0.0"})
        say("   autoscaler-core@1.0.0 (kind params): targetCpu 0.8, minInstances 2, cooldownS 60; search space "
            "targetCpu 0.3..0.9, minInstances 1..10, cooldownS {30, 60, 120}")
        flags = callable_("setLearningFlags", {"autoActivatePolicies": True})["result"]
        say(f"   setLearningFlags -> autoActivatePolicies {flags['learning']['autoActivatePolicies']}: each "
            "autoTunePolicies drafts the optimiser's next candidate and starts its canary itself")
        # Simulated time: experiment k runs in hour k of the last seven (its canary starts at the tuner's
        # schedule time); one look an hour later decides it, or ends it inconclusive (maxDurationHours 0.9).
        # Cost is part of this component's reward, so the cost guardrail is widened from +20 % to +50 %.
        store.configs.set("rollout", {"minSamples": 300, "maxDurationHours": 0.9, "experimentSplit": 0.2,
                                     "maxCostIncreaseRatio": 0.5})
        say("   each simulated hour: Cloud Scheduler -> autoTunePolicies (draft + canary), 3,000 requests assigned "
            "by assignPolicy and reported, -> scoreObservations, -> evaluateRollouts an hour later")
        hour0 = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=7)
        rows, reasons = [], []
        for k in range(1, 7):
            start = hour0 + dt.timedelta(hours=k - 1)
            schedule("autoTunePolicies", start, quiet=True)
            head = store.policies.head("autoscaler-core")
            if head.rollout is None:
                say("   no experiment started")
                break
            ids = [f"as{k}-{i:04d}" for i in range(3000)]
            assigned = []
            for i in range(0, len(ids), 500):  # the component asks assignPolicy, as one in any language would
                r = requests.post(f"{base}/assignPolicy", headers=service, timeout=60, json={
                    "requests": [{"policyId": "autoscaler-core", "requestId": rid} for rid in ids[i : i + 500]]})
                r.raise_for_status()
                assigned += r.json()["assignments"]
            start_ms = int(start.timestamp() * 1000)
            items = []
            for i, (rid, a) in enumerate(zip(ids, assigned, strict=True)):
                outcome, latency, cost = autoscaled(a["params"], rng)
                items.append({"id": rid, "ts": start_ms + 60_000 + i * 1000, "component": "autoscaler:core",
                              "outcome": outcome, "durationMs": latency, "costUsd": cost, "arm": a["arm"],
                              "policyVersion": f"autoscaler-core@{a['version']}"})
            for i in range(0, len(items), 500):
                requests.post(f"{base}/recordObservation", json={"observations": items[i : i + 500]},
                              headers=service, timeout=60).raise_for_status()
            time.sleep(0.6)
            schedule("scoreObservations", quiet=True)
            schedule("evaluateRollouts", start + dt.timedelta(hours=1), quiet=True)
            exp = store.rollouts.get(head.rollout.rollout_id) or {}
            ev = exp.get("lastEvaluation") or {}
            cand = (store.policies.policy("autoscaler-core", head.rollout.version) or {})["params"]
            reasons.append(f"{head.rollout.version}: {ev.get('reason')}")
            rows.append([f"{head.rollout.champion} -> {head.rollout.version}", round(cand["targetCpu"], 3),
                         cand["minInstances"], cand["cooldownS"], ev.get("nChampion"), ev.get("nChallenger"),
                         f"{ev['diff']:+.3f}" if ev.get("diff") is not None else None, exp.get("status"),
                         f"{expected_reward(cand):.3f}"])
        table(rows, ["experiment", "targetCpu", "minInstances", "cooldownS", "n champion", "n challenger",
                     "reward diff", "ended", "true reward"])
        for reason in reasons:
            say(f"   {reason}")
        active = store.policies.head("autoscaler-core").active
        params = (store.policies.policy("autoscaler-core", str(active)) or {})["params"]
        say(f"   active now: autoscaler-core@{active} {params}; true reward {expected_reward(params):.3f} "
            f"(started at {expected_reward(AUTOSCALER['params']):.3f})")
        subprocess.run([sys.executable, "-m", "opsloop.cli", "--emulator", emu.address, "--project", PROJECT,
                        "experiments", "list", "--id", "autoscaler-core"], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "functions")})

        step(13, "Answer quality arrives later: recordFeedback, a quality term for router:*, and the backfill")
        quality = {"gpt-5": 6.0, "gemini": 5.0, "claude": 9.0}  # hidden truth: a judge's 0-10 score per model
        judged = [t for t in traffic + canary if t["outcome"] == "success"][:900]
        sent = 0
        for i in range(0, len(judged), 300):
            batch = [{"observationId": t["id"], "id": f"judge-{t['id']}", "metrics": {
                "judge": round(min(10.0, max(0.0, rng.gauss(quality[t["component"][7:]], 1.0))), 1)}}
                for t in judged[i : i + 300]]
            r = requests.post(f"{base}/recordFeedback", json={"feedback": batch}, headers=service, timeout=60)
            r.raise_for_status()
            sent += r.json()["created"]
        say(f"   {sent} judge scores sent for scored observations (batches of 300; each batch one transaction)")
        proposal = {"rules": [{"match": "router:*", "version": "router-quality-1", "terms": [
            {"name": "quality", "source": "metric:judge", "weight": 0.5, "direction": "higher",
             "range": {"min": 0, "max": 10}, "missing": "skip"},
            {"name": "successBoost", "source": "success", "weight": 0.3, "direction": "higher"},
            {"name": "latencyPenalty", "source": "durationMs", "weight": 0.1, "direction": "lower", "bound": 4000},
            {"name": "costPenalty", "source": "costUsd", "weight": 0.1, "direction": "lower", "bound": 0.1}]}]}
        proposal_file = ROOT / ".emulator-logs" / "reward-proposal.json"
        proposal_file.parent.mkdir(exist_ok=True)
        proposal_file.write_text(json.dumps(proposal))
        say("   what-if of the proposal before adopting it (opsloop reward whatif; writes nothing):")
        subprocess.run([*opsloop, "reward", "whatif", "--config", str(proposal_file), "--days", "1", "--quiet"],
                       check=True, env=cli_env)
        store.configs.set("reward_config", proposal, merge=False)
        say("   config/reward_config adopted; the next scoring run re-scores history under it, then switches:")
        schedule("scoreObservations")
        subprocess.run([*opsloop, "reward", "backfill", "--status"], check=True, env=cli_env)
        table([[st["component"], st["n"], f"{st['avgReward']:.3f}", st["rewardVersion"], st["rewardGeneration"]]
               for st in sorted(store.stats.all(), key=lambda s: s["component"])
               if st["window"] == "24h" and st["component"].startswith("router:")],
              ["component", "n (24h)", "avg reward", "reward version", "generation"])

        step(14, "A live Router: fallbacks on a rate-limited model, its cooldown, and a rollback that reaches it")
        from opsloop.client import Router as LiveRouter
        from opsloop.store.policy_reader import FirestorePolicyReader

        live = LiveRouter(FirestorePolicyReader(store.db))  # as deployed: a head listener, 5-minute poll beneath
        active = live.status("router-core")
        limited = max(active, key=lambda m: m.weight).model  # its provider answers 429 from now on
        say(f"   {limited} (weight {max(m.weight for m in active):.2f}) is rate-limited; the policy falls back on "
            f"{', '.join(live.params('router-core', live.choose_arm('x', 'router-core').version)['fallbackOn'])}")
        tries, rows = [], []
        ts = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        for i in range(8):
            call = live.route(f"fb-{i:03d}", "router-core")
            chain = []
            while call is not None:
                median, _, cost = MODELS[call.model or ""]
                outcome = "rate_limit" if call.model == limited else "success"
                tries.append(call.observation(id=f"fb-{i:03d}-{call.attempt}", ts=ts, outcome=outcome,
                                              durationMs=40.0 if outcome != "success" else median, costUsd=cost))
                chain.append(f"{call.model} ({outcome})")
                call = live.next(call, outcome)
            rows.append([f"fb-{i:03d}", " -> ".join(chain)])
        table(rows, ["request", "tries, each reported with its own outcome (fallbacks carry meta.fallbackOf)"])
        send(tries)
        table([[m.model, f"{m.weight:.2f}", m.state, m.cooldown_ends_in_ms and f"{m.cooldown_ends_in_ms / 1000:.0f} s",
                m.recent_failures, m.expected_cost_usd and f"${m.expected_cost_usd:.4f}", m.over_budget]
               for m in live.status("router-core")],
              ["model", "weight", "state", "cooldown ends in", "failures (1 min)", "expected cost", "over budget"])
        current = live.choose_arm("x", "router-core").version
        for name, data in (("rollbackPolicy", {"id": "router-core"}),
                           ("activatePolicy", {"id": "router-core", "version": current})):
            answer = callable_(name, data)["result"]
            answered = time.perf_counter()
            waited = 0
            while live.choose_arm("x", "router-core").version != answer["active"]:
                time.sleep(0.001)
                waited += 1
            lag = f"{(time.perf_counter() - answered) * 1000:.1f} ms after" if waited else "already when"
            say(f"   {name} -> {answer['active']}: the running Router assigned it {lag} the callable answered")
        say(f"   listener: {live.listener.updates} pushes, {live.listener.drops} drops")
        live.close()

        step(15, "Audit trail (newest first)")
        audit = store.audit.log(policy_id="router-core")
        table([[dt.datetime.fromtimestamp(a["ts"] / 1000, dt.UTC).strftime("%H:%M:%S"), a["actor"], a["action"],
                a.get("from"), a["to"]] for a in audit], ["time", "actor", "action", "from", "to"])
        from opsloop.services.audit import verify_audit_chain

        report = verify_audit_chain(store)
        chains = ", ".join(f"{c}: {n} entries" for c, n in sorted(report.chains.items()))
        say(f"   hash chain verified ({chains}): {'intact' if report.ok else 'BROKEN ' + str(report.breaks)}")

        step(16, "The operator's view: the CLI's skill card for gpt-5, then the HTML report")
        subprocess.run([*opsloop, "score", "--cards", "--quiet"], check=True, env=cli_env, stdout=subprocess.DEVNULL)
        subprocess.run([*opsloop, "status", "--component", "router:gpt-5"], check=True, env=cli_env)
        subprocess.run([*opsloop, "status", "--component", "policy~router-core"], check=True, env=cli_env)
        subprocess.run([*opsloop, "learning", "--policy", "router-core", "--refresh", "--limit", "4"], check=True,
                       env=cli_env)
        out = ROOT / "opsloop-report.html"
        subprocess.run([*opsloop, "report", "--hours", "2", "--out", str(out)], check=True, env=cli_env)
        say(f"   open {out} in a browser")

        step(17, "Events out: deliverEvents publishes what happened as CloudEvents (the suite's Pub/Sub emulator)")
        from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

        publisher, subscriber = PublisherClient(), SubscriberClient()
        topic = publisher.topic_path(PROJECT, "opsloop-events")  # config/events.topic, as seeded
        publisher.create_topic(name=topic)
        sub = subscriber.subscription_path(PROJECT, "demo-ops-team")
        subscriber.create_subscription(name=sub, topic=topic)
        schedule("deliverEvents")
        received = []
        for _ in range(5):
            got = subscriber.pull(subscription=sub, max_messages=100, timeout=5).received_messages
            if got:
                subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in got])
            received += [m.message for m in got]
            if not got and received:
                break
        counts: dict[str, int] = {}
        for m in received:
            counts[m.attributes["ce-type"]] = counts.get(m.attributes["ce-type"], 0) + 1
        table([[t, n] for t, n in sorted(counts.items())], ["CloudEvent type (ce-type)", "messages"])
        for m in received[:3]:
            say(f"   {m.attributes['ce-time']} {m.attributes['ce-type']} {m.attributes['ce-subject']} "
                f"id={m.attributes['ce-id']}")

        step(18, "The admin console on the emulator suite (Firebase Hosting, Auth, the callables)")
        suite.create_user(*CONSOLE_ADMIN, claims={"role": "admin"})
        say(f"   {suite.console_url}   sign in as {CONSOLE_ADMIN[0]} / {CONSOLE_ADMIN[1]}")
        say(f"\nDemo finished in {time.monotonic() - t0:.1f}s.")
        if keep:
            say("The suite stays up with the demo's data until Ctrl-C (make console).")
            try:
                while suite.proc.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                say("stopping the suite")
        else:
            say("`make console` (or `make demo KEEP=1`) keeps the suite and the console up until Ctrl-C.")
        return 0
    except emu_mod.EmulatorNotInstalled as exc:
        say(f"error: {exc}")
        return 3
    finally:
        for p in reversed(procs):
            if isinstance(p, emu_mod.Emulator | suite_mod.Suite):
                p.stop()
            else:
                p.terminate()
                p.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
