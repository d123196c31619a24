"""Unsigned Firebase ID tokens for the emulators (the demo, the tests, local curl)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

PROJECT = "demo-opsloop"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def emulator_token(uid: str = "user-1", project: str = PROJECT, expires_in: int = 3600, **claims: Any) -> str:
    """An unsigned ID token, as Firebase's rules-unit-testing library mints for the emulators."""
    now = int(time.time())
    payload = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "iat": now,
        "exp": now + expires_in,
        "auth_time": now,
        "sub": uid,
        "user_id": uid,
        "uid": uid,
        "firebase": {"sign_in_provider": "custom", "identities": {}},
        **claims,
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}
