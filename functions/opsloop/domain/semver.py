"""Semantic versions of policy documents and the ``<policy>@<version>`` naming."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEMVER = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")
MAX_PART = 999_999_999
POLICY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True, order=True)
class Version:
    """A MAJOR.MINOR.PATCH version; ordering is numeric (1.0.10 > 1.0.9)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _SEMVER.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"version must be MAJOR.MINOR.PATCH (e.g. 1.0.2), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def bump_patch(self) -> Version:
        if self.patch >= MAX_PART:
            raise ValueError(f"patch {self.patch} cannot be bumped past {MAX_PART}")
        return Version(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def bump_patch(text: str) -> str:
    """``"1.0.9"`` -> ``"1.0.10"``."""
    return str(Version.parse(text).bump_patch())


def is_valid(text: str) -> bool:
    try:
        Version.parse(text)
    except ValueError:
        return False
    return True


def validate_policy_id(policy_id: str) -> str:
    if not isinstance(policy_id, str) or POLICY_ID.fullmatch(policy_id) is None:
        raise ValueError(
            f"policy id must be lower-case letters, digits, '-' or '_' (1-63 chars), got {policy_id!r}"
        )
    return policy_id


def doc_id(policy_id: str, version: str) -> str:
    """The Firestore document id of a policy version: ``router-core@1.0.1``."""
    return f"{validate_policy_id(policy_id)}@{Version.parse(version)}"


def split_ref(ref: str) -> tuple[str, str]:
    """``"router-core@1.0.0"`` -> ``("router-core", "1.0.0")``; raises ValueError when malformed."""
    policy_id, sep, version = ref.partition("@")
    if not sep:
        raise ValueError(f"policy reference must look like 'router-core@1.0.0', got {ref!r}")
    return validate_policy_id(policy_id), str(Version.parse(version))
