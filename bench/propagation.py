"""How fast does a policy change reach a running component? Callable answer -> first assignment by it.

    .venv/bin/python bench/propagation.py [--changes 50]      # writes bench/results/propagation.json

A fresh Firestore emulator and the real functions (``scripts/serve.py``). A component runs a ``Router``
(``opsloop.client``, its default Firestore reader, so its head listener is on; ``ttl_s`` 300 as deployed)
in a thread that routes a request every millisecond and notes the version each one ran. The bench, as an
admin, alternates ``activatePolicy`` (router-core 1.0.1) and ``rollbackPolicy`` over HTTP, ``--changes``
times, and measures for each change the time from the callable's answer to the component's first
assignment by the version the change made active. Issue 16's goal: p95 <= 2 s, and for rollbacks too.

A negative time would mean the component had the change before the admin had the answer; the figures
are clamped at 0 and the raw ones kept. The component reads no head in the whole run unless its listener
drops (``listener`` in the report counts pushes, drops, stale listeners and restarts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
from bench import emulator_store, write_report  # noqa: E402
from bench.perf import PROJECT, functions_server  # noqa: E402


class Component(threading.Thread):
    """Routes a request every ``every_s`` and keeps (time, version) of each."""

    def __init__(self, router: Any, every_s: float = 0.001) -> None:
        super().__init__(daemon=True)
        self.router, self.every = router, every_s
        self.seen: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            call = self.router.route(f"q-{i}", "router-core")
            self.seen.append((time.perf_counter(), call.version))
            i += 1
            time.sleep(self.every)

    def first(self, version: str, after: float, timeout_s: float = 30.0) -> float:
        """The time of the first assignment by ``version`` at or after ``after`` (scanning as it runs)."""
        deadline, k = time.perf_counter() + timeout_s, 0
        while time.perf_counter() < deadline:
            seen = self.seen
            while k < len(seen):
                t, v = seen[k]
                if v == version and t >= after:
                    return t
                k += 1
            time.sleep(0.0005)
        raise TimeoutError(f"{version} never reached the component")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "propagation.json")
    args = parser.parse_args(argv)

    import requests

    from opsloop.client import Router
    from opsloop.services.seed import load_seed
    from opsloop.store.policy_reader import FirestorePolicyReader
    from scripts.tokens import bearer, emulator_token

    started = time.perf_counter()
    headers = bearer(emulator_token("alice", project=PROJECT, role="admin"))
    rows: list[dict[str, Any]] = []
    with emulator_store(PROJECT) as (_emu, db, store):
        load_seed(store, ROOT / "seed")
        base_doc = store.policies.policy("router-core", "1.0.0") or {}
        draft = {**base_doc, "version": "1.0.1", "status": "draft", "createdBy": "bench",
                 "params": {**base_doc["params"], "modelWeights": {"gpt-5": 0.2, "gemini": 0.5, "claude": 0.3}}}
        store.policies.create_version(draft, {"actor": "bench", "action": "draft", "id": "router-core",
                                              "from": "1.0.0", "to": "1.0.1"})
        env = {**os.environ, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}
        with functions_server(env) as base:
            session = requests.Session()
            router = Router(FirestorePolicyReader(db), ttl_s=300)
            component = Component(router)
            component.start()
            component.first("1.0.0", 0.0)
            for k in range(args.changes):
                name, data, target = (("activatePolicy", {"id": "router-core", "version": "1.0.1"}, "1.0.1")
                                      if k % 2 == 0 else ("rollbackPolicy", {"id": "router-core"}, "1.0.0"))
                sent = time.perf_counter()
                r = session.post(f"{base}/{name}", json={"data": data}, headers=headers, timeout=60)
                answered = time.perf_counter()
                r.raise_for_status()
                reached = component.first(target, sent)
                rows.append({"change": name, "to": target, "callableMs": round((answered - sent) * 1000, 1),
                             "fromAnswerMs": round((reached - answered) * 1000, 2)})
                print(f"{k + 1:3d} {name:15s} -> {target}: callable {rows[-1]['callableMs']} ms, "
                      f"reached {rows[-1]['fromAnswerMs']} ms after the answer", flush=True)
                time.sleep(0.2)
            component.stop.set()
            component.join()
            listener = router.listener.__dict__.copy()
            head_reads = router.reads
            router.close()

    def summary(picked: list[dict[str, Any]]) -> dict[str, Any]:
        ms = [max(0.0, r["fromAnswerMs"]) for r in picked]
        return {"n": len(ms), "p50Ms": round(statistics.median(ms), 2), "p95Ms": round(pct(ms, 0.95), 2),
                "maxMs": round(max(ms), 2), "goalP95Ms": 2000, "met": pct(ms, 0.95) <= 2000}

    report = {
        "command": f"bench/propagation.py --changes {args.changes}",
        "all": summary(rows),
        "rollbacks": summary([r for r in rows if r["change"] == "rollbackPolicy"]),
        "activations": summary([r for r in rows if r["change"] == "activatePolicy"]),
        "callableP50Ms": round(statistics.median(r["callableMs"] for r in rows), 1),
        "listener": listener, "componentReads": head_reads, "changes": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    print(f"all: p50 {report['all']['p50Ms']} ms, p95 {report['all']['p95Ms']} ms; rollbacks p95 "
          f"{report['rollbacks']['p95Ms']} ms; listener {listener}; component reads {head_reads}")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
