"""Start and stop Google's Cloud Firestore emulator for tests, the demo and benchmarks.

The emulator ships with the Google Cloud CLI (component ``cloud-firestore-emulator``). We run its JAR
directly because that is faster than ``gcloud emulators firestore start`` and it accepts ``--rules``.

    python scripts/emulator.py start --port 8181 --rules firestore.rules   # runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "The Cloud Firestore emulator is not installed. Install the Google Cloud CLI "
    "(https://cloud.google.com/sdk/docs/install) and then run:\n"
    "    gcloud components install cloud-firestore-emulator\n"
    "(on Debian/Ubuntu packages of the CLI: apt-get install google-cloud-cli-firestore-emulator).\n"
    "Set OPSLOOP_FIRESTORE_EMULATOR_JAR to point at cloud-firestore-emulator.jar if it lives elsewhere."
)

JAR_RELATIVE = Path("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


class EmulatorNotInstalled(RuntimeError):
    """The emulator JAR or Java cannot be found on this machine."""


def find_jar() -> Path:
    """Locate cloud-firestore-emulator.jar, or raise EmulatorNotInstalled with how to install it."""
    override = os.environ.get("OPSLOOP_FIRESTORE_EMULATOR_JAR")
    if override:
        if Path(override).is_file():
            return Path(override)
        raise EmulatorNotInstalled(f"OPSLOOP_FIRESTORE_EMULATOR_JAR={override!r} does not exist.\n{INSTALL_HINT}")
    roots: list[Path] = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True, text=True, timeout=60, check=False,
            ).stdout.strip()
            if out:
                roots.append(Path(out))
        except (OSError, subprocess.TimeoutExpired):
            pass
        roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk")]
    for root in roots:
        jar = root / JAR_RELATIVE
        if jar.is_file():
            return jar
    raise EmulatorNotInstalled(INSTALL_HINT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status) or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class Emulator:
    """A running emulator process."""

    host: str
    port: int
    project: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def clear(self) -> None:
        """Delete every document of the project (the emulator's reset endpoint)."""
        req = urllib.request.Request(
            f"{self.base_url}/emulator/v1/projects/{self.project}/databases/(default)/documents",
            method="DELETE",
        )
        with urllib.request.urlopen(req, timeout=30):
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(
    project: str,
    port: int | None = None,
    rules: Path | None = None,
    log_dir: Path | None = None,
    host: str = "127.0.0.1",
) -> Emulator:
    """Start the emulator and return once it answers HTTP."""
    jar = find_jar()
    java = shutil.which("java")
    if java is None:
        raise EmulatorNotInstalled("Java is not on PATH; the Firestore emulator needs a Java runtime (>= 11).")
    port = port or free_port()
    log_dir = log_dir or Path(".emulator-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"firestore-{port}.log"
    cmd = [java, "-Xmx2g", "-cp", str(jar), MAIN_CLASS, "start", f"--host={host}", f"--port={port}"]
    if rules is not None:
        cmd.append(f"--rules={Path(rules).resolve()}")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    emu = Emulator(host=host, port=port, project=project, process=proc, log_path=log_path)
    try:
        wait_http(f"{emu.base_url}/", timeout=90, proc=proc)
    except BaseException as exc:
        emu.stop()
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"Firestore emulator failed to start; see {log_path}:\n{tail}") from exc
    return emu


@contextlib.contextmanager
def running(project: str, **kwargs: object) -> Iterator[Emulator]:
    emu = start(project, **kwargs)  # type: ignore[arg-type]
    try:
        yield emu
    finally:
        emu.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start the emulator and wait (Ctrl-C stops it)")
    s.add_argument("--port", type=int, default=8181)
    s.add_argument("--rules", type=Path, default=Path("firestore.rules"))
    s.add_argument("--project", default=os.environ.get("GCLOUD_PROJECT", "demo-opsloop"))
    sub.add_parser("check", help="exit 0 if the emulator is installed, else print how to install it")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "check":
            print(find_jar())
            return 0
        emu = start(args.project, port=args.port, rules=args.rules)
    except EmulatorNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(f"Firestore emulator on {emu.address} (project {emu.project}); export FIRESTORE_EMULATOR_HOST={emu.address}")
    try:
        emu.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
