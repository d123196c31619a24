"""Policy kinds: what a policy's params are and how the loop improves them.

A version's ``kind`` names one of ``KINDS`` (none: ``router``, so older documents keep working). Adding a
kind is one module here that defines a ``PolicyKind`` (its params schema, its tuning, its gate) and one
line in ``KINDS``; the tuner and the rollouts dispatch on its ``tuning`` and ``gate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgument
from . import params, router
from .base import PolicyKind

KINDS: dict[str, PolicyKind] = {k.name: k for k in (router.KIND, params.KIND)}
DEFAULT = "router"


def kind_of(doc: Mapping[str, Any]) -> PolicyKind:
    name = doc.get("kind", DEFAULT)
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidArgument(f"'kind' must be one of {sorted(KINDS)}, got {name!r}", {"field": "kind"})
    return kind


def validate(doc: Mapping[str, Any]) -> PolicyKind:
    """The version's kind, once its params fit it; InvalidArgument naming the field otherwise."""
    kind = kind_of(doc)
    kind.validate(doc)
    return kind


__all__ = ["DEFAULT", "KINDS", "PolicyKind", "kind_of", "validate"]
