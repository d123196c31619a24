"""Imports go one way: handlers -> services -> store -> domain (checked on the AST, nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "functions" / "opsloop"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "opsloop.domain": (
        "opsloop.store", "opsloop.services", "opsloop.handlers",
        "google.cloud", "firebase_admin", "firebase_functions", "flask", "functions_framework",
        "opsloop.telemetry", "opentelemetry",
    ),
    "opsloop.store": ("opsloop.services", "opsloop.handlers", "firebase_functions", "flask"),
    "opsloop.services": ("opsloop.handlers", "firebase_functions", "flask", "functions_framework",
                         "google.cloud", "google.api_core", "firebase_admin"),
    # metrics and the run id: anyone may record, so it imports nothing of ours (nor the functions' runtime)
    "opsloop.telemetry": ("opsloop.domain", "opsloop.store", "opsloop.services", "opsloop.handlers",
                          "firebase_functions", "flask", "functions_framework", "google.cloud", "firebase_admin"),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def package_of(path: Path) -> str:
    """The package relative imports of ``path`` resolve against."""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def resolve(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        raise ImportError(f"relative import beyond top-level package from {package!r}")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def imported_names(source: str, package: str) -> set[str]:
    """Every module a source may import, including ``pkg.name`` for ``from pkg import name``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(package, node.module, node.level)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def hits(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_walker_finds_every_layer() -> None:
    names = {module_name(p) for p in MODULES}
    for layer in ("opsloop.domain", "opsloop.store", "opsloop.services", "opsloop.handlers"):
        assert any(hits(n, layer) and n != layer for n in names), f"no modules found in {layer}"
    assert "opsloop.domain.reward" in names


def test_resolve_relative_imports() -> None:
    assert resolve("opsloop.services", "store.paths", 2) == "opsloop.store.paths"
    assert resolve("opsloop.services", None, 2) == "opsloop"
    assert resolve("opsloop.domain", "errors", 1) == "opsloop.domain.errors"
    assert resolve("opsloop.domain", None, 1) == "opsloop.domain"
    assert resolve("x", "google.cloud", 0) == "google.cloud"
    src = "from .. import store\nfrom ..handlers.http import f\nimport google.cloud.firestore as fs\n"
    names = imported_names(src, "opsloop.domain")
    assert "opsloop.store" in names and "opsloop.handlers.http" in names and "google.cloud.firestore" in names
    assert package_of(PACKAGE_DIR / "domain" / "reward.py") == "opsloop.domain"
    assert package_of(PACKAGE_DIR / "domain" / "__init__.py") == "opsloop.domain"


def test_detector_catches_a_violation() -> None:
    src = "def f():\n    from ..store import paths\n    return paths\n"  # lazy imports count too
    names = imported_names(src, "opsloop.domain")
    assert any(hits(n, "opsloop.store") for n in names)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_inward(path: Path) -> None:
    name = module_name(path)
    rules = [banned for layer, banned in FORBIDDEN.items() if hits(name, layer)]
    names = imported_names(path.read_text(encoding="utf-8"), package_of(path))
    bad = sorted({n for n in names for banned in rules for prefix in banned if hits(n, prefix)})
    assert not bad, f"{name} imports {bad}"


# Services see storage only through services/ports.py; store/paths (document ids) is data, not access. The
# one place a service builds the real store is record_observation's in-process default (no store given).
SERVICE_STORE_IMPORTS = {"opsloop.store.paths"}
WIRING = {"opsloop.services.record": {"opsloop.store.client", "opsloop.store.firestore_store"}}


def store_modules(source: str, package: str) -> set[str]:
    """The store modules a source imports (``from ..store import paths`` is ``opsloop.store.paths``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if hits(a.name, "opsloop.store"))
        elif isinstance(node, ast.ImportFrom):
            base = resolve(package, node.module, node.level)
            if base == "opsloop.store" or base == "opsloop":
                out.update(f"{base}.{a.name}" for a in node.names if hits(f"{base}.{a.name}", "opsloop.store"))
            elif hits(base, "opsloop.store"):
                out.add(base)
    return out


def test_store_modules_sees_every_way_in() -> None:
    src = "from .. import store\nfrom ..store import paths, policies\nfrom ..store.firestore_store import X\n"
    assert store_modules(src, "opsloop.services") == {"opsloop.store", "opsloop.store.paths",
                                                       "opsloop.store.policies", "opsloop.store.firestore_store"}


@pytest.mark.parametrize("path", [p for p in MODULES if hits(module_name(p), "opsloop.services")],
                         ids=lambda p: module_name(p))
def test_services_reach_storage_only_through_ports(path: Path) -> None:
    name = module_name(path)
    found = store_modules(path.read_text(encoding="utf-8"), package_of(path))
    assert found <= SERVICE_STORE_IMPORTS | WIRING.get(name, set()), f"{name} imports {sorted(found)}"
