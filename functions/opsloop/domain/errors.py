"""The exception tree of the loop; handlers/errors.py maps each class to an HTTP / callable code.

Every error also carries a stable learning-domain code (``E_LEARN_…``) that callables put in
``details.code`` and the CLI prints; scripts and clients branch on it, never on the message. The codes
are listed, with their meaning, in ``CODES`` (and in README, checked by a test).
"""

from __future__ import annotations

from typing import Any, ClassVar

CODES: dict[str, str] = {
    "E_LEARN_INVALID_ARGUMENT": "bad input: a missing or malformed field, an unknown argument",
    "E_LEARN_UNAUTHENTICATED": "no valid ID token",
    "E_LEARN_PERMISSION_DENIED": "the caller's role may not do this",
    "E_LEARN_NOT_FOUND": "no such policy, version or rollout",
    "E_LEARN_PRECONDITION": "the lifecycle does not allow this now (e.g. promoting a version that is not in canary)",
    "E_LEARN_NOTHING_TO_ROLL_BACK": "the policy has no earlier active version",
    "E_LEARN_ROLLOUT_RUNNING": "a shadow or canary of another version is running; promote or reject it first",
    "E_LEARN_DATA_MISSING": "too few samples: fewer logged decisions than minShadowSamples, or no modelWeights",
    "E_LEARN_ROLLOUT_DENIED": "a gate refused: the shadow estimate's interval lies wholly below the champion",
    "E_LEARN_DISABLED": "config/flags learning.enabled is false: no draft, shadow, canary or promotion",
    "E_LEARN_CONFLICT": "contention outlived every retry; safe to retry",
    "E_LEARN_FEEDBACK_EXPIRED": "feedback for an observation past its retention window: its reward can no longer "
                                "change",
    "E_LEARN_CONFIG_INVALID": "a config/* document does not parse (its path and field are named); the run used the "
                              "last good value or the default, and learning is off while config/flags is bad",
}


class OpsError(Exception):
    """Base of every expected failure; ``details`` is safe to show to the caller."""

    default_code: ClassVar[str] = "E_LEARN_PRECONDITION"

    def __init__(self, message: str, details: dict[str, Any] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        chosen = code or self.details.get("code") or self.default_code
        if chosen not in CODES:
            raise ValueError(f"unknown error code {chosen!r}; add it to opsloop.domain.errors.CODES")
        self.code: str = str(chosen)


class InvalidArgument(OpsError):
    default_code = "E_LEARN_INVALID_ARGUMENT"


class Unauthenticated(OpsError):
    default_code = "E_LEARN_UNAUTHENTICATED"


class PermissionDenied(OpsError):
    default_code = "E_LEARN_PERMISSION_DENIED"


class NotFound(OpsError):
    default_code = "E_LEARN_NOT_FOUND"


class FailedPrecondition(OpsError):
    default_code = "E_LEARN_PRECONDITION"


class Conflict(OpsError):
    """Contention that outlived every retry; safe to try again."""

    default_code = "E_LEARN_CONFLICT"
