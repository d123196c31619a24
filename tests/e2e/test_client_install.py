"""``pip install 'opsloop[client]'`` in a fresh venv: the client imports and assigns, with nothing of the
functions or the CLI installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from opsloop.store.firestore_store import FirestoreStore

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import importlib.util, json
    from opsloop.client import HttpSink, PolicyClient, Reporter, Router
    absent = [m for m in ("firebase_functions", "functions_framework", "scipy", "ddsketch", "optuna", "matplotlib",
                          "pyarrow", "firebase_admin") if importlib.util.find_spec(m) is not None]
    a = PolicyClient().assign("r-1", "router-core")
    call = Router().route("r-1", "router-core")
    print(json.dumps({"absent": absent, "assignment": a.to_dict(), "model": call.model}))
""")


def test_the_client_installs_alone_and_assigns(seeded: FirestoreStore, tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: pip builds in the source tree, and the checkout stays clean
    for name in ("pyproject.toml", "README.md"):
        src.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "functions" / "opsloop", src / "functions" / "opsloop",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{src}[client]"],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(py), "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["absent"] == []  # none of the functions' or the CLI's libraries came along
    assert got["assignment"] == {"policyId": "router-core", "version": "1.0.0", "arm": None,
                                 "params": (seeded.policies.policy("router-core", "1.0.0") or {})["params"],
                                 "propensity": 1.0}
    assert got["model"] in {"gpt-5", "gemini", "claude"}
