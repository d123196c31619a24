"""The learning kill switch, flipped by an admin with an audit entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.errors import InvalidArgument
from .ports import Store

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


@dataclass(frozen=True)
class FlagsResult:
    learning: dict[str, bool]
    previous: dict[str, bool]
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"learning": self.learning, "previous": self.previous, "changed": self.changed}


def set_learning_flags(store: Store, data: Any, actor: str) -> FlagsResult:
    change = store.configs.set_flags(parse_flags(data), actor)
    return FlagsResult(change.new, change.old, change.doc is not None)
