"""Audit entries are created, never updated, by code: only append_audit writes to the audit collection."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "functions" / "opsloop"
READERS = {"log", "entries", "unchained", "since"}  # FirestoreAuditRepo


def _audit_uses() -> list[tuple[Path, str]]:
    """(module, enclosing function) of every mention of paths.AUDIT in the package."""
    uses = []
    for module in PKG.rglob("*.py"):
        tree = ast.parse(module.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Attribute) and node.attr == "AUDIT":
                    uses.append((module, fn.name))
    return uses


def test_only_append_audit_writes_and_it_only_creates() -> None:
    uses = _audit_uses()
    assert uses, "the audit collection is referenced somewhere"
    writers = {fn for _, fn in uses} - READERS
    assert writers == {"append_audit"}
    assert {m.name for m, fn in uses if fn == "append_audit"} == {"audit.py"}
    source = (PKG / "store" / "audit.py").read_text()
    tree = ast.parse(source)
    append = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "append_audit")
    calls = {n.func.attr for n in ast.walk(append) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert "create" in calls
    # the only set() in it is the chain head's, never the entry's
    sets = [n for n in ast.walk(append) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("set", "update", "delete")]
    assert len(sets) == 1 and "_chain_ref" in ast.unparse(sets[0].args[0])
    # the readers are the audit repository's own
    readers = {m.name for m, fn in uses if fn in READERS}
    assert readers == {"audit.py"}


def test_no_other_module_names_the_audit_collection_string() -> None:
    offenders = [p for p in PKG.rglob("*.py") if '"ops_audit"' in p.read_text() and p.name != "paths.py"]
    assert offenders == []
