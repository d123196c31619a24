"""The observation a component reports, validated at the edge with pydantic."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_BATCH = 500
MAX_META_BYTES = 4096
MAX_META_DEPTH = 4
MAX_METRICS = 32
METRIC_NAME = re.compile(r"[a-z][a-zA-Z0-9_]{0,63}")  # the same as a reward term's metric:<name>
METRIC_LIMIT = 1e12  # a metric value beyond this is a unit mistake, and its square still sums finitely
MAX_FUTURE_SKEW_MS = 5 * 60_000
# Below this an inverse-propensity weight (1/p, squared in the variance sums) is meaningless and could
# overflow a float sum; firestore.rules holds the same bound.
MIN_PROPENSITY = 1e-6

Outcome = Literal["success", "failure", "timeout", "rate_limit"]

# Every string that becomes part of a document id (observation id; component and policyVersion in bucket,
# stats, drift and card ids) has one format, shared word for word with firestore.rules (a test compares).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
COMPONENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
POLICY_REF_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}@(0|[1-9][0-9]{0,8})[.](0|[1-9][0-9]{0,8})[.](0|[1-9][0-9]{0,8})$"
ARMS = ("champion", "challenger")
_ID = re.compile(ID_PATTERN)
_COMPONENT = re.compile(COMPONENT_PATTERN)
_POLICY_REF = re.compile(POLICY_REF_PATTERN)


_INT64 = (-(2**63), 2**63 - 1)
_RESERVED_FIELD = re.compile(r"^__.*__$", re.DOTALL)
MAX_FIELD_NAME_BYTES = 1500


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from the JSON escape "\ud800"
        return False
    return True


def _unstorable(value: Any) -> str | None:
    """Why Firestore would refuse ``value`` (None when it can store it)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not key or _RESERVED_FIELD.match(key) or not _utf8(key):
                return f"{key!r} is not a valid field name"
            if len(key.encode()) > MAX_FIELD_NAME_BYTES:
                return f"field names are at most {MAX_FIELD_NAME_BYTES} bytes"
            if (problem := _unstorable(item)) is not None:
                return problem
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                return "an array cannot directly hold an array"
            if (problem := _unstorable(item)) is not None:
                return problem
    elif isinstance(value, str):
        if not _utf8(value):
            return "strings must be valid Unicode (no lone surrogates)"
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return "integers must fit in 64 bits"
    return None


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level


def check_metrics(v: dict[str, Any]) -> dict[str, Any]:
    """A ``metrics`` map as reward terms read it: named numbers, finite and of sane size (ValueError if not)."""
    if len(v) > MAX_METRICS:
        raise ValueError(f"must hold at most {MAX_METRICS} metrics, got {len(v)}")
    for name, value in v.items():
        if METRIC_NAME.fullmatch(name) is None:
            raise ValueError(f"metric name {name!r} must match {METRIC_NAME.pattern} (e.g. 'thumbsUp')")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"metric {name!r} must be a number, got {type(value).__name__}")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"metric {name!r} must be a finite number") from None
        if not math.isfinite(number) or abs(number) > METRIC_LIMIT:
            raise ValueError(f"metric {name!r} must be a finite number within ±{METRIC_LIMIT:g}, got {value!r}")
    return dict(v)


class ObservationIn(BaseModel):
    """One outcome reported by a component (``recordObservation``'s item)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str | None = Field(default=None, description="client idempotency key")
    ts: int | None = Field(default=None, ge=0, description="event time, ms since epoch; server time if absent")
    component: str
    outcome: Outcome
    durationMs: float = Field(ge=0, le=86_400_000)  # noqa: N815 - wire name
    tokensIn: int = Field(default=0, ge=0, le=100_000_000)  # noqa: N815
    tokensOut: int = Field(default=0, ge=0, le=100_000_000)  # noqa: N815
    costUsd: float = Field(default=0.0, ge=0, le=1_000_000)  # noqa: N815
    policyVersion: str | None = None  # noqa: N815
    arm: Literal["champion", "challenger"] | None = None
    propensity: float | None = Field(default=None, ge=MIN_PROPENSITY, le=1,
                                     description="probability the action was chosen")
    weight: float | None = Field(default=None, ge=1, le=1_000_000,
                                 description="sampling weight: this observation stands for `weight` of its kind")
    errorCode: str | None = Field(default=None, max_length=128)  # noqa: N815
    metrics: dict[str, Any] | None = Field(default=None, description="name -> finite number, read by reward terms")
    meta: dict[str, Any] | None = None

    @field_validator("durationMs", "costUsd", "propensity", "weight", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        # strict mode would refuse an int for a float field; ints are fine, bools and NaN/inf are not
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"must be a number, got {type(v).__name__}")
        try:
            number = float(v)
        except OverflowError:  # an int beyond float range: float() raises instead of giving inf
            raise ValueError("must be a finite number, got an integer too large for a float") from None
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {v!r}")
        return number

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and (_ID.fullmatch(v) is None or v.startswith("__")):
            raise ValueError("must be 1-128 chars of letters, digits, '_', '.', ':' or '-', starting alphanumeric")
        return v

    @field_validator("component")
    @classmethod
    def _component(cls, v: str) -> str:
        if _COMPONENT.fullmatch(v) is None:
            raise ValueError(
                "must be 1-128 chars of letters, digits, '_', '.', ':' or '-', starting alphanumeric "
                "(e.g. 'router:gpt-5')"
            )
        return v

    @field_validator("errorCode")
    @classmethod
    def _error_code(cls, v: str | None) -> str | None:
        if v is not None and not _utf8(v):
            raise ValueError("must be valid Unicode (no lone surrogates)")
        return v

    @field_validator("policyVersion")
    @classmethod
    def _policy(cls, v: str | None) -> str | None:
        if v is not None and _POLICY_REF.fullmatch(v) is None:
            raise ValueError("must look like 'router-core@1.0.0'")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else check_metrics(v)

    @field_validator("meta")
    @classmethod
    def _meta(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        try:  # measured as UTF-8, not ASCII-escaped: "\u00e9" would count one character as six bytes
            encoded = json.dumps(v, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be JSON without NaN/Infinity ({exc})") from None
        if not _utf8(encoded):
            problem = _unstorable(v)
            raise ValueError(f"must be storable in Firestore: {problem or 'strings must be valid Unicode'}")
        size = len(encoded.encode())
        if size > MAX_META_BYTES:
            raise ValueError(f"must encode to at most {MAX_META_BYTES} bytes of UTF-8 JSON, got {size}")
        if _depth(v) > MAX_META_DEPTH:
            raise ValueError(f"must nest at most {MAX_META_DEPTH} levels deep")
        problem = _unstorable(v)
        if problem is not None:
            raise ValueError(f"must be storable in Firestore: {problem}")
        return v


def stored_problem(d: dict[str, Any], now_ms: int) -> str | None:
    """Why a stored observation cannot be scored at ``now_ms`` (None when it can).

    Observations written straight to Firestore pass the rules, not this model; the scorer checks again every
    field that becomes part of a document id or a float sum, so no stored value can break a run.
    """
    ts, component, version, arm = d.get("ts"), d.get("component"), d.get("policyVersion"), d.get("arm")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts <= now_ms + MAX_FUTURE_SKEW_MS:
        return "observation lacks an integer 'ts' >= 0 and at most 5 minutes ahead"
    if not isinstance(component, str) or _COMPONENT.fullmatch(component) is None:
        return "observation lacks a valid 'component'"
    if version is not None and (not isinstance(version, str) or _POLICY_REF.fullmatch(version) is None):
        return "'policyVersion' must look like 'router-core@1.0.0'"
    if arm is not None and arm not in ARMS:
        return f"'arm' must be one of {ARMS}"
    for key, low, high in (("durationMs", 0.0, 86_400_000.0), ("costUsd", 0.0, 1_000_000.0),
                           ("propensity", MIN_PROPENSITY, 1.0), ("weight", 1.0, 1_000_000.0)):
        value = d.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            return f"'{key}' must be a number in [{low:g}, {high:g}]"
    return None


class FieldError(BaseModel):
    """One validation problem: where (``observations.3.durationMs``) and what."""

    field: str
    message: str


class InvalidBatch(ValueError):
    """A batch failed validation; nothing of it may be written."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        first = errors[0] if errors else FieldError(field="", message="invalid")
        super().__init__(f"{len(errors)} invalid field(s), first: {first.field}: {first.message}")


def _errors_from(exc: ValidationError, prefix: str) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        out.append(FieldError(field=loc or prefix, message=err["msg"]))
    return out


def parse_batch(payload: Any, now_ms: int) -> list[ObservationIn]:
    """Validate one observation or ``{"observations": [...]}``; raise InvalidBatch with every error."""
    if isinstance(payload, dict) and "observations" in payload:
        if set(payload) != {"observations"}:
            extra = sorted(set(payload) - {"observations"})
            raise InvalidBatch([FieldError(field=extra[0], message="unexpected field beside 'observations'")])
        items = payload["observations"]
        if not isinstance(items, list):
            raise InvalidBatch([FieldError(field="observations", message="must be a list")])
        if not items:
            raise InvalidBatch([FieldError(field="observations", message="must hold at least one item")])
        if len(items) > MAX_BATCH:
            raise InvalidBatch(
                [FieldError(field="observations", message=f"at most {MAX_BATCH} items, got {len(items)}")]
            )
        prefixed = [(f"observations.{i}", item) for i, item in enumerate(items)]
    elif isinstance(payload, dict):
        prefixed = [("", payload)]
    else:
        raise InvalidBatch([FieldError(field="", message="body must be a JSON object")])

    parsed: list[ObservationIn] = []
    errors: list[FieldError] = []
    for prefix, item in prefixed:
        if not isinstance(item, dict):
            errors.append(FieldError(field=prefix or "", message="must be a JSON object"))
            continue
        try:
            obs = ObservationIn.model_validate(item)
        except ValidationError as exc:
            errors.extend(_errors_from(exc, prefix))
            continue
        if obs.ts is not None and obs.ts > now_ms + MAX_FUTURE_SKEW_MS:
            errors.append(FieldError(field=f"{prefix}.ts".lstrip("."), message="is more than 5 minutes in the future"))
            continue
        parsed.append(obs)
    ids = [o.id for o in parsed if o.id is not None]
    if len(ids) != len(set(ids)):
        dup = next(i for i in ids if ids.count(i) > 1)
        errors.append(FieldError(field="observations", message=f"id {dup!r} appears more than once"))
    if errors:
        raise InvalidBatch(errors)
    return parsed


class FeedbackIn(BaseModel):
    """Quality known after the fact (``recordFeedback``'s item): metrics for an observation already recorded."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str | None = Field(default=None, description="idempotency key: a retried feedback id changes nothing")
    observationId: str  # noqa: N815 - wire name
    metrics: dict[str, Any]

    @field_validator("id", "observationId")
    @classmethod
    def _ids(cls, v: str | None) -> str | None:
        if v is not None and (_ID.fullmatch(v) is None or v.startswith("__")):
            raise ValueError("must be 1-128 chars of letters, digits, '_', '.', ':' or '-', starting alphanumeric")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("must name at least one metric")
        return check_metrics(v)


def parse_feedback(payload: Any) -> list[FeedbackIn]:
    """Validate one feedback item or ``{"feedback": [...]}`` (at most MAX_BATCH); InvalidBatch with every error."""
    if isinstance(payload, dict) and "feedback" in payload:
        if set(payload) != {"feedback"}:
            raise InvalidBatch([FieldError(field=sorted(set(payload) - {"feedback"})[0],
                                           message="a batch holds only 'feedback'")])
        items = payload["feedback"]
        if not isinstance(items, list) or not items:
            raise InvalidBatch([FieldError(field="feedback", message="must be a non-empty list")])
        if len(items) > MAX_BATCH:
            raise InvalidBatch([FieldError(field="feedback", message=f"at most {MAX_BATCH} items, got {len(items)}")])
        prefix = "feedback.{}"
    else:
        items, prefix = [payload], ""
    out: list[FeedbackIn] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        try:
            out.append(FeedbackIn.model_validate(item))
        except ValidationError as exc:
            errors.extend(_errors_from(exc, prefix.format(i) if prefix else ""))
    if errors:
        raise InvalidBatch(errors)
    ids = [f.id for f in out if f.id is not None]
    if len(set(ids)) != len(ids):
        raise InvalidBatch([FieldError(field="id", message="feedback ids must be unique within a batch")])
    return out
