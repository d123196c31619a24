"""The learning kill switch, flipped by an admin with an audit entry."""

from __future__ import annotations

from typing import Any

from ..domain.errors import InvalidArgument
from ..store.firestore_store import FirestoreStore

KEYS = ("enabled", "autoActivatePolicies")


def parse_flags(data: Any) -> dict[str, bool]:
    if not isinstance(data, dict) or not data:
        raise InvalidArgument("arguments must be an object with 'enabled' and/or 'autoActivatePolicies' booleans")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InvalidArgument(f"unexpected argument {unknown[0]!r}; allowed: {list(KEYS)}", {"field": unknown[0]})
    for key, value in data.items():
        if not isinstance(value, bool):
            raise InvalidArgument(f"'{key}' must be true or false, got {value!r}", {"field": key})
    return dict(data)


def set_learning_flags(store: FirestoreStore, data: Any, actor: str) -> dict[str, Any]:
    old, new, changed = store.set_flags(parse_flags(data), actor)
    return {"learning": new, "previous": old, "changed": changed}
