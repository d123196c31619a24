"""Benchmarks; every script writes its results with ``write_report``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON to ``out`` (creating its folder) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


@contextmanager
def emulator_store(project: str = "demo-opsloop") -> Iterator[tuple[Any, Any, Any]]:
    """A freshly started Firestore emulator for one measurement: yields (emulator, db, FirestoreStore)."""
    from opsloop.store import client as client_mod
    from opsloop.store.firestore_store import FirestoreStore
    from scripts import emulator as emu_mod

    emu = emu_mod.start(project, log_dir=ROOT / ".emulator-logs")
    os.environ.update({"FIRESTORE_EMULATOR_HOST": emu.address, "GCLOUD_PROJECT": project})
    client_mod.reset_for_tests()
    try:
        db = client_mod.get_db()
        yield emu, db, FirestoreStore(db)
    finally:
        emu.stop()
