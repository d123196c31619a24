"""The exception tree of the loop; handlers/errors.py maps each class to an HTTP / callable code."""

from __future__ import annotations

from typing import Any


class OpsError(Exception):
    """Base of every expected failure; ``details`` is safe to show to the caller."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidArgument(OpsError):
    pass


class Unauthenticated(OpsError):
    pass


class PermissionDenied(OpsError):
    pass


class NotFound(OpsError):
    pass


class FailedPrecondition(OpsError):
    pass


class Conflict(OpsError):
    """Contention that outlived every retry; safe to try again."""
