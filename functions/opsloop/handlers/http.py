"""HTTP functions: ``recordObservation`` (POST observations) and ``assignPolicy`` (a request's assignment)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from firebase_functions import logger
from flask import Request, Response

from .. import telemetry
from ..domain.errors import InvalidArgument, OpsError
from ..services import assign, feedback
from ..services.record import record_batch
from . import auth, deps
from .errors import json_response, to_http_response

MAX_BODY_BYTES = 1_048_576


class PayloadTooLarge(OpsError):
    pass


def _reject_constant(name: str) -> Any:
    raise InvalidArgument(f"body is not valid JSON: {name} is not a number JSON allows")


def _read_json(request: Request) -> Any:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is {length} bytes; the limit is {MAX_BODY_BYTES}")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body exceeds the limit of {MAX_BODY_BYTES} bytes")
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """A request body as JSON (the encodings JSON allows); InvalidArgument for anything else."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidArgument("body is not valid JSON: it nests too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise InvalidArgument(f"body is not valid JSON: {exc}") from None


def _post_json(request: Request) -> Response | None:
    """A refusal for anything but an authenticated service/admin POST of JSON; None when it may go on."""
    if request.method != "POST":
        return json_response(405, {"error": {"code": "METHOD_NOT_ALLOWED", "message": "use POST"}})
    auth.require_role(auth.verify_bearer(request.headers.get("Authorization")), auth.SERVICE_ROLES)
    if (request.mimetype or "").lower() != "application/json":
        return json_response(415, {"error": {"code": "UNSUPPORTED_MEDIA_TYPE",
                                             "message": "Content-Type must be application/json"}})
    return None


def _json_post(request: Request, work: Callable[[Any], Response]) -> Response:
    """An authenticated service/admin POST of JSON: ``work(body)`` answers it; every error mapped in one place
    (unexpected ones become 500 and are logged). Metrics are exported when due: the instance may be frozen
    after the response (``telemetry.flush_if_due``: best effort, a bounded wait)."""
    try:
        refused = _post_json(request)
        if refused is not None:
            return refused
        return work(_read_json(request))
    except PayloadTooLarge as exc:
        return json_response(413, {"error": {"code": "PAYLOAD_TOO_LARGE", "message": exc.message}})
    except Exception as exc:
        return to_http_response(exc)
    finally:
        telemetry.flush_if_due()


def assign_policy(request: Request) -> Response:
    """Validate every request of the body, answer 200 with the assignment(s)."""
    return _json_post(request, lambda body: json_response(200, assign.assign(deps.policy_client(), body)))


def record_observation(request: Request) -> Response:
    """Validate the whole batch, store it all or nothing, answer 201 with the ids."""

    def work(body: Any) -> Response:
        result = record_batch(deps.store(), body)
        logger.info("observations recorded", created=len(result.created), duplicates=len(result.duplicates))
        return json_response(201, {"ids": result.ids, "created": len(result.created),
                                   "duplicates": result.duplicates})

    return _json_post(request, work)


def record_feedback(request: Request) -> Response:
    """Validate the whole batch of late metrics, store it all or nothing, answer 201."""

    def work(body: Any) -> Response:
        result = feedback.record_feedback(deps.store(), body)
        logger.info("feedback recorded", created=len(result.created), duplicates=len(result.duplicates))
        return json_response(201, result.to_dict())

    return _json_post(request, work)
