"""Loading ``seed/`` into Firestore: idempotent, never clobbering what an operator changed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain import kinds, semver
from ..domain.errors import InvalidArgument
from ..store import paths
from .ports import Store

ALLOWED = (paths.CONFIG, paths.POLICIES)


@dataclass(frozen=True)
class SeedAction:
    path: str
    action: str  # created | kept | overwritten


def read_seed(seed_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(collection, doc id, data) for every ``<collection>/<doc id>.json`` under ``seed_dir``."""
    out = []
    if not seed_dir.is_dir():
        raise InvalidArgument(f"seed directory {seed_dir} does not exist")
    for file in sorted(seed_dir.glob("*/*.json")):
        collection, doc_id = file.parent.name, file.stem
        if collection not in ALLOWED:
            raise InvalidArgument(f"{file}: seed may only hold {ALLOWED}, not {collection!r}")
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{file}: not valid JSON: {exc}") from None
        if collection == paths.POLICIES:
            expected = semver.doc_id(str(data.get("id")), str(data.get("version")))
            if expected != doc_id:
                raise InvalidArgument(f"{file}: file name must be {expected}.json")
            try:
                kinds.validate(data)
            except InvalidArgument as exc:  # every file is checked before anything is written
                raise InvalidArgument(f"{file}: {exc.message}", {**exc.details, "file": str(file)}) from None
        out.append((collection, doc_id, data))
    return out


def load_seed(store: Store, seed_dir: Path, force: bool = False) -> list[SeedAction]:
    """Create each seed document that is missing; with ``force`` overwrite config documents too."""
    actions = []
    for collection, doc_id, data in read_seed(seed_dir):
        path = f"{collection}/{doc_id}"
        if collection == paths.POLICIES:
            audit = {"actor": "seed", "action": "seed", "id": data["id"], "from": None, "to": data["version"]}
            created = store.policies.create_version(data, audit)
            actions.append(SeedAction(path, "created" if created else "kept"))
            continue
        exists = bool(store.configs.get(doc_id))
        if exists and not force:
            actions.append(SeedAction(path, "kept"))
            continue
        store.configs.set(doc_id, data, merge=False)
        actions.append(SeedAction(path, "overwritten" if exists else "created"))
    return actions
