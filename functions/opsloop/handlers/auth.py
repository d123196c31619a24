"""Who is calling: Firebase ID tokens and the ``role`` custom claim."""

from __future__ import annotations

import time
from typing import Any

from ..domain.errors import PermissionDenied, Unauthenticated
from ..store.client import ensure_firebase_app

SERVICE_ROLES = ("service", "admin")
ADMIN_ROLES = ("admin",)


# What firebase_functions' callables accept (private/util.py, _on_call_check_auth_token, 0.6.0): the header
# starts with exactly "Bearer " (case-sensitive, one space) and the token is what remains once every
# "Bearer " is removed. recordObservation follows the same rule, so a client that works with one works
# with the other; tests/e2e/test_bad_input_http.py compares the two over HTTP.
BEARER_PREFIX = "Bearer "


def bearer_token(header: str | None) -> str:
    """The ID token of an ``Authorization`` header, parsed as callables parse it; Unauthenticated otherwise."""
    if not header:
        raise Unauthenticated("missing Authorization: Bearer <Firebase ID token>")
    if not header.startswith(BEARER_PREFIX):
        raise Unauthenticated("Authorization header must be 'Bearer <Firebase ID token>' ('Bearer' as written, "
                              "then one space)")
    token = header.replace(BEARER_PREFIX, "")
    if not token.strip():
        raise Unauthenticated("Authorization header has no token after 'Bearer '")
    return token


def verify_bearer(header: str | None) -> dict[str, Any]:
    """Decoded claims of ``Authorization: Bearer <ID token>``; Unauthenticated when missing or bad."""
    token = bearer_token(header)
    ensure_firebase_app()
    from firebase_admin import auth

    try:
        claims: dict[str, Any] = auth.verify_id_token(token)
    except Exception as exc:  # firebase_admin raises several unrelated types for bad tokens
        raise Unauthenticated(f"invalid ID token: {type(exc).__name__}") from None
    check_expiry(claims)
    return claims


def check_expiry(claims: dict[str, Any], now: float | None = None) -> None:
    """Reject an expired token. Production verification checks ``exp`` already; the emulator does not."""
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthenticated("ID token has no expiry")
    if exp < (time.time() if now is None else now):
        raise Unauthenticated("ID token has expired; sign in again")


def require_role(claims: dict[str, Any] | None, roles: tuple[str, ...]) -> str:
    """The caller's uid when its token is unexpired and its ``role`` claim is one of ``roles``."""
    if not claims:
        raise Unauthenticated("sign in with a Firebase ID token")
    check_expiry(claims)
    role = claims.get("role")
    if role not in roles:
        raise PermissionDenied(f"role {role!r} may not do this; needs one of {list(roles)}",
                               {"requiredRoles": list(roles)})
    return str(claims.get("uid") or claims.get("sub") or "unknown")
