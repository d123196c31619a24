"""What a policy kind declares (see ``kinds/__init__.py`` for the registry)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import InvalidArgument

Tuning = Literal["weights", "experiment"]
Gate = Literal["off_policy", "none"]


@dataclass(frozen=True)
class PolicyKind:
    """One kind of policy: its params schema and how the loop improves it.

    * ``validate``: raises ``InvalidArgument`` naming the field when a version's ``params`` (and ``search``)
      do not fit the kind; nothing may be written then.
    * ``tuning``: how ``autoTunePolicies`` drafts a better version — ``weights`` from the rolling stats of
      the components the policy routes to (``router:<model>``), ``experiment`` from the outcomes of earlier
      canaries (``ops_experiments``), one candidate at a time.
    * ``gate``: what a version must pass before live traffic — ``off_policy`` an estimate from the
      propensities the champion logged (a shadow stage), ``none`` straight from draft to canary.
    * ``assignment``: what a component is handed for a request besides the version and arm (a router's
      model, a params policy's params); ``assignPolicy`` and ``PolicyClient`` return it.
    """

    name: str
    tuning: Tuning
    gate: Gate
    validate: Callable[[Mapping[str, Any]], None]
    learns_from: str  # one line for docs and errors: which observations teach it


def field_error(exc: ValidationError, prefix: str) -> InvalidArgument:
    """The first pydantic error of a flat model as an InvalidArgument whose ``field`` is the document's dotted
    path to that model's field (pydantic's deeper locations name union members and list indexes)."""
    err = exc.errors()[0]
    path = ".".join(str(p) for p in (prefix, *err["loc"][:1]) if p != "")
    return InvalidArgument(f"'{path}': {err['msg'].removeprefix('Value error, ')}", {"field": path})
