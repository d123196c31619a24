"""The Firebase emulator suite for this repo, offline: Firestore, Auth, Functions (Python) and Hosting.

    python scripts/suite.py start            # runs until Ctrl-C; prints the console's URL
    python scripts/suite.py start --seed     # ... with the seed loaded
    python scripts/suite.py exec -- CMD      # firebase emulators:exec: CMD runs against the suite

`firebase emulators:start` (firebase-tools 13.35, pinned in package.json) needs three things on these
machines, which this script prepares before it runs the CLI:

- the Firestore emulator: firebase-tools downloads its own JAR, which fails offline. We point
  FIRESTORE_EMULATOR_BINARY_PATH at a launcher JAR (one manifest: Main-Class and Class-Path naming
  gcloud's cloud-firestore-emulator.jar). firebase-tools runs ``java -jar`` on it and chmods it, so it
  lives in ``.emulators/``, never at a system path;
- the Python functions run from ``functions/venv``: a link to the repo's ``.venv``;
- Pub/Sub (only so that the functions emulator loads the scheduled functions; they are run over HTTP, see
  ``Suite.trigger``): gcloud's pubsub-emulator, through PUBSUB_EMULATOR_BINARY_PATH and a wrapper script in
  ``.emulators/`` (firebase-tools chmods the path it is given);
- the Emulator UI is a download: firebase.json disables it.

Cloud Tasks runs in firebase-tools' own emulator (no download): ``scoreObservations`` hands scoring shards
to the ``scoreShard`` queue there, as in production (the functions emulator names it to the functions
through CLOUD_TASKS_EMULATOR_HOST).

The ports of firebase.json are the defaults; ``start_suite(free=True)`` (the tests) picks free ones and
writes a config of its own beside firebase.json. The CLI runs in its own process group: after SIGINT its
functions-framework workers outlive it, so ``Suite.stop`` ends the whole group.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import emulator as emu_mod  # noqa: E402
from scripts.tokens import PROJECT  # noqa: E402

FIREBASE = ROOT / "node_modules" / ".bin" / "firebase"
DIST = ROOT / "console" / "dist"
LAUNCHER = ROOT / ".emulators" / "firestore-launcher.jar"
NPM_HINT = "firebase-tools is not installed: run `make node` (npm ci) first"
EMULATORS = ("firestore", "auth", "functions", "hosting", "pubsub", "tasks")


PUBSUB_RELATIVE = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def pubsub_wrapper() -> Path:
    """A script in .emulators/ that runs gcloud's Pub/Sub emulator (firebase-tools chmods the path it runs)."""
    sdk = emu_mod.find_jar().resolve().parents[2]  # <sdk>/platform/cloud-firestore-emulator/<jar>
    target = sdk / PUBSUB_RELATIVE
    if not target.exists():
        raise emu_mod.EmulatorNotInstalled(f"the Pub/Sub emulator is not at {target}: install it with\n"
                                           "    gcloud components install pubsub-emulator\n"
                                           "(Debian/Ubuntu packages: apt-get install google-cloud-cli-pubsub-emulator)")
    wrapper = LAUNCHER.parent / "pubsub-emulator"
    text = f'#!/bin/sh\nexec "{target}" "$@"\n'
    if not wrapper.exists() or wrapper.read_text() != text:
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(text)
        wrapper.chmod(0o755)
    return wrapper


def launcher_jar() -> Path:
    """A JAR whose manifest starts gcloud's Firestore emulator, for `java -jar` (firebase-tools)."""
    target = emu_mod.find_jar().resolve()
    manifest = (f"Manifest-Version: 1.0\nMain-Class: {emu_mod.MAIN_CLASS}\n"
                f"Class-Path: {target.as_uri()}\n\n")
    if LAUNCHER.exists():
        with zipfile.ZipFile(LAUNCHER) as z:
            if z.read("META-INF/MANIFEST.MF").decode() == manifest:
                return LAUNCHER
    LAUNCHER.parent.mkdir(parents=True, exist_ok=True)
    tmp = LAUNCHER.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", manifest)
    tmp.replace(LAUNCHER)
    return LAUNCHER


def functions_venv() -> None:
    """functions/venv, where firebase-tools looks for the functions' Python: the repo's .venv."""
    venv = ROOT / "functions" / "venv"
    if venv.exists() or venv.is_symlink():
        return
    if not (ROOT / ".venv" / "bin" / "activate").exists():
        raise SystemExit("error: .venv is missing: run `make .venv/.installed` first")
    venv.symlink_to(Path("..") / ".venv")


@dataclass
class Suite:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    config: Path
    log: Path

    def host(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def console_url(self) -> str:
        return f"http://{self.host('hosting')}/"

    def functions_url(self, name: str) -> str:
        return f"http://{self.host('functions')}/{PROJECT}/us-central1/{name}"

    def trigger(self, name: str, when: dt.datetime) -> dict[str, Any]:
        """Run a scheduled function as Cloud Scheduler does: POST to its HTTP trigger (the functions emulator
        names it ``<name>-0`` once Pub/Sub runs) with the scheduler's headers."""
        headers = {"X-CloudScheduler-JobName": f"firebase-schedule-{name}-us-central1",
                   "X-CloudScheduler-ScheduleTime": when.astimezone(dt.UTC).isoformat(timespec="milliseconds")
                   .replace("+00:00", "Z")}
        req = urllib.request.Request(self.functions_url(f"{name}-0"), data=b"", method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=600) as resp:
            return {"status": resp.status}

    def create_user(self, email: str, password: str, claims: dict[str, Any] | None = None) -> str:
        """A user of the Auth emulator (its REST API, as firebase_admin uses it), with custom claims; its uid."""
        auth = f"http://{self.host('auth')}/identitytoolkit.googleapis.com/v1"
        made = _post(f"{auth}/accounts:signUp?key=fake-api-key", {"email": email, "password": password})
        uid = str(made["localId"])
        if claims:  # "Bearer owner": the emulator's admin credential, what firebase_admin sends it
            _post(f"{auth}/projects/{PROJECT}/accounts:update",
                  {"localId": uid, "customAttributes": json.dumps(claims)}, {"Authorization": "Bearer owner"})
        return uid

    def env(self) -> dict[str, str]:
        """What a Python client needs to talk to this suite."""
        return {"FIRESTORE_EMULATOR_HOST": self.host("firestore"), "FIREBASE_AUTH_EMULATOR_HOST": self.host("auth"),
                "PUBSUB_EMULATOR_HOST": self.host("pubsub"), "CLOUD_TASKS_EMULATOR_HOST": self.host("tasks"),
                "GCLOUD_PROJECT": PROJECT}

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):  # the functions-framework workers outlive the CLI
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        end_orphans(self.ports)
        if self.config.name != "firebase.json":
            self.config.unlink(missing_ok=True)


def end_orphans(ports: dict[str, int]) -> list[int]:
    """firebase-tools starts the Java emulators detached (their own process groups): one left behind by a CLI
    that was killed before its clean shutdown is found by its command line (our launcher or Pub/Sub wrapper,
    and its port) and killed. Linux only (/proc); elsewhere nothing is done."""
    marks = (str(LAUNCHER), str(LAUNCHER.parent / "pubsub-emulator"), "cloud-pubsub-emulator", "CloudFirestore")
    wanted = {str(ports[name]) for name in ("firestore", "pubsub") if name in ports}
    killed = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        line = " ".join(args)
        if any(m in line for m in marks) and any(f"port={p}" in line or f"port {p}" in line or p in args
                                                 for p in wanted):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        out: dict[str, Any] = json.loads(resp.read())
        return out


def _config(ports: dict[str, int]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((ROOT / "firebase.json").read_text())
    for name, port in ports.items():
        config["emulators"].setdefault(name, {})["port"] = port
    hub = config["emulators"].setdefault("hub", {})
    hub["port"] = emu_mod.free_port()
    config["emulators"]["logging"] = {"port": emu_mod.free_port()}
    config["emulators"]["firestore"]["websocketPort"] = emu_mod.free_port()  # else 9150 for every suite
    return config


def _prepare(free: bool, env: dict[str, str] | None) -> tuple[dict[str, int], Path, dict[str, str]]:
    """Ports, the config file and the environment for firebase-tools; the launcher, wrapper and venv link."""
    if not FIREBASE.exists():
        raise SystemExit(NPM_HINT)
    if not (DIST / "index.html").exists():
        raise SystemExit("error: the console is not built: run `make console-build` (npm run build) first")
    launcher = launcher_jar()
    pubsub = pubsub_wrapper()
    functions_venv()
    defaults: dict[str, Any] = json.loads((ROOT / "firebase.json").read_text())["emulators"]
    if free:
        ports = {name: emu_mod.free_port() for name in EMULATORS}
        config_path = ROOT / f".firebase.suite-{ports['hosting']}.json"
        config_path.write_text(json.dumps(_config(ports), indent=2))
    else:
        ports = {name: int(defaults[name]["port"]) for name in EMULATORS}
        config_path = ROOT / "firebase.json"
    full_env = {**os.environ, **(env or {}), "FIRESTORE_EMULATOR_BINARY_PATH": str(launcher),
                "PUBSUB_EMULATOR_BINARY_PATH": str(pubsub),
                "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "true", "CI": "true"}
    for var in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
        full_env.pop(var, None)  # firebase-tools sets them for the functions (and the script) it runs
    return ports, config_path, full_env


def exec_in_suite(command: list[str], free: bool = True, env: dict[str, str] | None = None) -> int:
    """`firebase emulators:exec`: start the suite, run ``command`` with FIRESTORE_EMULATOR_HOST and the
    other emulator variables set, stop the suite; the command's exit code."""
    ports, config_path, full_env = _prepare(free, env)
    cmd = [str(FIREBASE), "emulators:exec", "--project", PROJECT, "--config", str(config_path),
           "--only", ",".join(EMULATORS), shlex.join(command)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the CLI is in its own session: pass the interrupt on, let it shut down cleanly
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
        return 130
    finally:
        with contextlib.suppress(ProcessLookupError):  # functions-framework workers outlive the CLI
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        end_orphans(ports)
        if config_path.name != "firebase.json":
            config_path.unlink(missing_ok=True)


def start_suite(free: bool = True, env: dict[str, str] | None = None, timeout: float = 120.0) -> Suite:
    """Start `firebase emulators:start` (its own process group); return once every emulator answers."""
    ports, config_path, full_env = _prepare(free, env)
    log_dir = ROOT / ".emulator-logs"
    log_dir.mkdir(exist_ok=True)
    log = log_dir / f"suite-{ports['hosting']}.log"
    cmd = [str(FIREBASE), "emulators:start", "--project", PROJECT, "--config", str(config_path),
           "--only", ",".join(EMULATORS)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    suite = Suite(proc, ports, config_path, log)
    try:
        deadline = time.monotonic() + timeout
        for name in EMULATORS:
            emu_mod.wait_http(f"http://{suite.host(name)}/", timeout=max(1.0, deadline - time.monotonic()),
                              proc=proc)
        _wait_functions(suite, deadline)
    except BaseException:
        suite.stop()
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the emulator suite did not start; log {log}:\n{tail}") from None
    return suite


def _wait_functions(suite: Suite, deadline: float) -> None:
    """The functions emulator answers before it has loaded the functions: wait for the log line."""
    while time.monotonic() < deadline:
        if "All emulators ready" in suite.log.read_text(errors="replace"):
            return
        if suite.proc.poll() is not None:
            raise RuntimeError("firebase emulators:start exited")
        time.sleep(0.3)
    raise TimeoutError("the emulator suite was not ready in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="run the suite until Ctrl-C")
    start.add_argument("--seed", action="store_true", help="load seed/ into Firestore first")
    start.add_argument("--free-ports", action="store_true", help="pick free ports instead of firebase.json's")
    run = sub.add_parser("exec", help="firebase emulators:exec: run a command against the suite, then stop it")
    run.add_argument("--free-ports", action="store_true", help="pick free ports instead of firebase.json's")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")
    args = parser.parse_args(argv)
    if args.cmd == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("exec needs a command: scripts/suite.py exec -- pytest tests/emulator")
        return exec_in_suite(command, free=args.free_ports)
    suite = start_suite(free=args.free_ports)
    try:
        if args.seed:
            os.environ.update(suite.env())
            subprocess.run([sys.executable, str(ROOT / "scripts" / "seed.py"), "--emulator", suite.host("firestore")],
                           check=True, cwd=ROOT)
        print(f"emulator suite up: Firestore {suite.host('firestore')}, Auth {suite.host('auth')}, "
              f"Functions {suite.host('functions')}", flush=True)
        print(f"console: {suite.console_url}   (Ctrl-C stops the suite)", flush=True)
        while suite.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        suite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
