"""One table from our exception tree to HTTP statuses and callable error codes."""

from __future__ import annotations

import json
from typing import Any

from firebase_functions import https_fn, logger
from flask import Response

from ..domain import errors

_TABLE: dict[type[errors.OpsError], tuple[int, https_fn.FunctionsErrorCode]] = {
    errors.InvalidArgument: (400, https_fn.FunctionsErrorCode.INVALID_ARGUMENT),
    errors.Unauthenticated: (401, https_fn.FunctionsErrorCode.UNAUTHENTICATED),
    errors.PermissionDenied: (403, https_fn.FunctionsErrorCode.PERMISSION_DENIED),
    errors.NotFound: (404, https_fn.FunctionsErrorCode.NOT_FOUND),
    errors.FailedPrecondition: (412, https_fn.FunctionsErrorCode.FAILED_PRECONDITION),
    errors.Conflict: (409, https_fn.FunctionsErrorCode.ABORTED),
}


def _lookup(exc: errors.OpsError) -> tuple[int, https_fn.FunctionsErrorCode]:
    for cls in type(exc).__mro__:
        if cls in _TABLE:
            return _TABLE[cls]
    return 500, https_fn.FunctionsErrorCode.INTERNAL


def to_https_error(exc: BaseException) -> https_fn.HttpsError:
    """Callable error for ``exc``; anything unexpected becomes INTERNAL and is logged."""
    if isinstance(exc, errors.OpsError):
        _, code = _lookup(exc)
        return https_fn.HttpsError(code, exc.message, {**exc.details, "code": exc.code})
    logger.error("unexpected error", error=repr(exc))
    return https_fn.HttpsError(https_fn.FunctionsErrorCode.INTERNAL, "internal error")


def json_response(status: int, body: Any) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status,
                             mimetype="application/json")


def to_http_response(exc: BaseException) -> Response:
    if isinstance(exc, errors.OpsError):
        status, code = _lookup(exc)
        body: dict[str, Any] = {"code": code.value, "message": exc.message,
                                "details": {**exc.details, "code": exc.code}}
        return json_response(status, {"error": body})
    logger.error("unexpected error", error=repr(exc))
    return json_response(500, {"error": {"code": "INTERNAL", "message": "internal error"}})
