"""Every ``config/*`` document, parsed strictly into frozen settings: the one home of configuration.

Each document has a pydantic model of its stored shape: booleans are booleans (the string ``"false"`` is
an error, not a truthy value), numbers are finite numbers in their bounds, windows are window names, and
an unknown key is an error (a typo must not be silently ignored). A parsed document becomes the frozen
settings the domain computes with (``RewardConfig``, ``TuningConfig``, ...), whose own checks apply too.
Defaults live here and in those dataclasses, once; the seed files are tested equal to them.

A document that does not parse raises ``ConfigInvalid`` naming its path and field. What a run does then
is the loader's business (``services/config.py``): the last good value or the defaults, an alert, never
the whole loop, and never a kill switch that fails open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from .drift import DriftConfig
from .errors import FailedPrecondition, OpsError
from .experiment import RolloutConfig
from .reward import RewardConfig, RewardRules, Term
from .shards import MAX_SHARDS
from .skill_card import CardSettings
from .tuning import TuningConfig

REWARD = "reward_config"
FLAGS = "flags"
SCORING = "scoring"
TUNING = "tuning"
ROLLOUT = "rollout"
DRIFT = "drift"
SKILL_CARDS = "skill_cards"
EVENTS = "events"
NAMES = (REWARD, FLAGS, SCORING, TUNING, ROLLOUT, DRIFT, SKILL_CARDS, EVENTS)


class ConfigInvalid(OpsError):
    """A ``config/*`` document that does not parse; ``details`` has its path, field and message."""

    default_code = "E_LEARN_CONFIG_INVALID"


def _number(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"must be a number, got {type(v).__name__} {v!r}")
    try:
        number = float(v)
    except OverflowError:
        raise ValueError("must be a finite number") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {v!r}")
    return number


def _integer(v: Any) -> Any:
    number = _number(v)
    if number != int(number):
        raise ValueError(f"must be a whole number, got {v!r}")
    return int(number)


Num = Annotated[float, BeforeValidator(_number)]
Int = Annotated[int, BeforeValidator(_integer)]  # 30.0 (as the Firebase console may store it) is 30
WindowName = Literal["1h", "24h", "7d"]
MAX_SAMPLES = 100_000_000  # sample-size settings: beyond this a threshold is never reached


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ------------------------------------------------------------------------------------ the documents
class _Learning(_Doc):
    enabled: StrictBool = True
    autoActivatePolicies: StrictBool = False  # noqa: N815 - stored name


class FlagsDoc(_Doc):
    learning: _Learning = _Learning()


@dataclass(frozen=True)
class Flags:
    """The kill switch. ``FLAGS_OFF`` is what a run uses when config/flags cannot be read as booleans."""

    enabled: bool = True
    auto_activate: bool = False
    readable: bool = True  # False: config/flags did not parse (learning is off; safety rollbacks still run)


FLAGS_OFF = Flags(enabled=False, auto_activate=False, readable=False)


MAX_RUN_BUDGET_S = 480.0


@dataclass(frozen=True)
class ScoringSettings:
    """``config/scoring``: chunking, the wait behind ingestion, the lease, retention and the run budget."""

    chunk_size: int = 400
    safety_margin_ms: int = 5000
    lease_ttl_s: float = 540.0
    retention_days: int = 30
    run_budget_s: float = 420.0  # below scoreObservations' 540 s timeout: stop taking chunks, refresh stats
    shards: int = 1  # scanners that score concurrently (domain/shards); 1: the one global cursor


class ScoringDoc(_Doc):
    chunkSize: Int = Field(ScoringSettings.chunk_size, ge=1, le=490)  # noqa: N815
    safetyMarginMs: Int = Field(ScoringSettings.safety_margin_ms, ge=0, le=600_000)  # noqa: N815
    leaseTtlS: Num = Field(ScoringSettings.lease_ttl_s, ge=60, le=3600)  # noqa: N815
    retentionDays: Int = Field(ScoringSettings.retention_days, ge=1, le=3650)  # noqa: N815
    # scoreObservations times out at 540 s: the budget leaves at least a minute for folds, stats and cards
    runBudgetS: Num = Field(ScoringSettings.run_budget_s, ge=10, le=MAX_RUN_BUDGET_S)  # noqa: N815
    shards: Int = Field(ScoringSettings.shards, ge=1, le=MAX_SHARDS)


@dataclass(frozen=True)
class ShadowSettings:
    window: str = "24h"
    min_samples: int = 200
    deny_if_worse: bool = True  # refuse a canary whose offline estimate is clearly below the champion


class _Weights(_Doc):
    latency: Num = RewardConfig.w_latency
    cost: Num = RewardConfig.w_cost
    success: Num = RewardConfig.w_success
    error: Num = RewardConfig.w_error


class _Bounds(_Doc):
    maxLatencyMs: Num = Field(RewardConfig.max_latency_ms, gt=0, le=86_400_000)  # noqa: N815
    maxCostUsd: Num = Field(RewardConfig.max_cost_usd, gt=0, le=1_000_000)  # noqa: N815


class _Thresholds(_Doc):
    minAcceptable: Num = RewardConfig.min_acceptable  # noqa: N815
    retrain: Num = RewardConfig.retrain


class _RangeDoc(_Doc):
    min: Num
    max: Num


class _TargetDoc(_Doc):
    value: Num
    tolerance: Num = Field(gt=0)


class _TermDoc(_Doc):
    name: StrictStr = Field(min_length=1, max_length=64)
    source: StrictStr = Field(min_length=1, max_length=80)
    weight: Num = Field(ge=0, le=1)
    direction: Literal["higher", "lower"]
    bound: Num | None = Field(None, gt=0)
    range: _RangeDoc | None = None
    target: _TargetDoc | None = None
    missing: Literal["skip", "default"] = "default"
    default: Num = 0.0


class _Formula(_Doc):
    """A reward formula: ``terms``, or today's four from ``weights`` and ``bounds`` (not both)."""

    version: StrictStr = Field(RewardConfig.version, min_length=1, max_length=64)
    weights: _Weights = _Weights()
    bounds: _Bounds = _Bounds()
    terms: list[_TermDoc] | None = Field(None, min_length=1, max_length=32)
    thresholds: _Thresholds = _Thresholds()


class _RuleDoc(_Formula):
    match: StrictStr = Field(min_length=1, max_length=129)
    version: StrictStr = Field(min_length=1, max_length=64)  # required: a rule's formula is its own


class RewardDoc(_Formula):
    rules: list[_RuleDoc] = Field(default_factory=list, max_length=100)


class TuningDoc(_Doc):
    minSamples: Int = Field(TuningConfig.min_samples, ge=1, le=MAX_SAMPLES)  # noqa: N815
    explorationFloor: Num = Field(TuningConfig.exploration_floor, ge=0, lt=0.5)  # noqa: N815
    learningRate: Num = Field(TuningConfig.learning_rate, gt=0, le=1000)  # noqa: N815
    z: Num = Field(TuningConfig.z, ge=0, le=10)
    minChange: Num = Field(TuningConfig.min_change, gt=0, le=2)  # noqa: N815
    window: WindowName = "24h"
    method: Literal["thompson", "multiplicative"] = "thompson"  # tuning.METHODS (tested equal)
    alpha: Num = Field(TuningConfig.alpha, gt=0, lt=1)
    explorationSamples: Int = Field(TuningConfig.exploration_samples, ge=0, le=MAX_SAMPLES)  # noqa: N815
    changeTest: StrictBool = TuningConfig.change_test  # noqa: N815
    shiftAlpha: Num = Field(TuningConfig.shift_alpha, gt=0, lt=1)  # noqa: N815
    shiftMinSamples: Int = Field(TuningConfig.shift_min_samples, ge=1, le=MAX_SAMPLES)  # noqa: N815
    probeFloor: Num = Field(TuningConfig.probe_floor, ge=0, lt=0.5)  # noqa: N815


class RolloutDoc(_Doc):
    minSamples: Int = Field(RolloutConfig.min_samples, ge=2, le=MAX_SAMPLES)  # noqa: N815
    alpha: Num = Field(RolloutConfig.alpha, gt=0, lt=0.5)
    rollbackAlpha: Num = Field(RolloutConfig.rollback_alpha, gt=0, lt=0.5)  # noqa: N815
    tau: Num = Field(RolloutConfig.tau, gt=0, le=10)  # rewards lie in [0, 1]: a larger scale means nothing
    srmAlpha: Num = Field(RolloutConfig.srm_alpha, gt=0, lt=0.5)  # noqa: N815
    guardrailMinSamples: Int = Field(RolloutConfig.guardrail_min_samples, ge=1, le=MAX_SAMPLES)  # noqa: N815
    guardrailAlpha: Num = Field(RolloutConfig.guardrail_alpha, gt=0, lt=0.5)  # noqa: N815
    maxP95IncreaseRatio: Num = Field(RolloutConfig.max_p95_increase_ratio, ge=0, le=100)  # noqa: N815
    maxCostIncreaseRatio: Num = Field(RolloutConfig.max_cost_increase_ratio, ge=0, le=100)  # noqa: N815
    maxSuccessRateDrop: Num = Field(RolloutConfig.max_success_rate_drop, ge=0, le=1)  # noqa: N815
    safetyMinSamples: Int = Field(RolloutConfig.safety_min_samples, ge=1, le=MAX_SAMPLES)  # noqa: N815
    safetyAlpha: Num = Field(RolloutConfig.safety_alpha, gt=0, lt=0.5)  # noqa: N815
    safetyMaxRewardDrop: Num = Field(RolloutConfig.safety_max_reward_drop, ge=0, le=1)  # noqa: N815
    safetyMaxP95IncreaseRatio: Num = Field(RolloutConfig.safety_max_p95_increase_ratio, ge=0, le=100)  # noqa: N815
    safetyMaxErrorRateIncrease: Num = Field(RolloutConfig.safety_max_error_rate_increase, ge=0, le=1)  # noqa: N815
    experimentSplit: Num = Field(RolloutConfig.experiment_split, gt=0, le=0.5)  # noqa: N815
    maxDurationHours: Num = Field(RolloutConfig.max_duration_hours, gt=0, le=24 * 90)  # noqa: N815
    p95SloMs: Num | None = Field(None, gt=0, le=86_400_000)  # noqa: N815
    shadowWindow: WindowName = "24h"  # noqa: N815
    minShadowSamples: Int = Field(ShadowSettings.min_samples, ge=0, le=MAX_SAMPLES)  # noqa: N815
    denyCanaryIfShadowWorse: StrictBool = ShadowSettings.deny_if_worse  # noqa: N815


class DriftDoc(_Doc):
    latest: WindowName = "1h"
    baselineDays: Int = Field(DriftConfig.baseline_days, ge=1, le=30)  # noqa: N815
    alpha: Num = Field(DriftConfig.alpha, gt=0, lt=0.5)
    minSamples: Int = Field(DriftConfig.min_samples, ge=2, le=MAX_SAMPLES)  # noqa: N815
    driftExplorationFloor: Num = Field(DriftConfig.drift_exploration_floor, ge=0, lt=0.5)  # noqa: N815


class SkillCardsDoc(_Doc):
    minSamples: Int = Field(CardSettings.min_samples, ge=1, le=MAX_SAMPLES)  # noqa: N815
    highSuccess: Num = Field(CardSettings.high_success, ge=0, le=1)  # noqa: N815
    lowSuccess: Num = Field(CardSettings.low_success, ge=0, le=1)  # noqa: N815
    cheapShare: Num = Field(CardSettings.cheap_share, ge=0, le=100)  # noqa: N815
    overLatencyBudget: Num = Field(CardSettings.over_latency_budget, ge=0, le=1)  # noqa: N815
    outlierRatio: Num = Field(CardSettings.outlier_ratio, ge=1, le=1e6)  # noqa: N815
    minDailySamples: Int = Field(CardSettings.min_daily_samples, ge=1, le=MAX_SAMPLES)  # noqa: N815
    trendAlpha: Num = Field(CardSettings.trend_alpha, gt=0, lt=1)  # noqa: N815
    topFailures: Int = Field(CardSettings.top_failures, ge=0, le=24)  # noqa: N815


@dataclass(frozen=True)
class EventsSettings:
    """``config/events``: where the loop's events go (``services/events``)."""

    enabled: bool = True
    topic: str | None = "opsloop-events"  # a Pub/Sub topic of this project; None: no Pub/Sub
    webhook_url: str | None = None  # a Slack-compatible incoming webhook, or any HTTPS receiver
    webhook_timeout_s: float = 10.0
    max_attempts: int = 8  # then the event is dead-lettered (an ops_alerts entry) and not tried again


class EventsDoc(_Doc):
    enabled: StrictBool = True
    # Pub/Sub topic ids: 3-255 characters, a letter first, then letters, digits and - _ . ~ + %
    topic: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$")] | None = EventsSettings.topic
    webhookUrl: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2000)] | None = None  # noqa: N815
    webhookTimeoutS: Num = Field(EventsSettings.webhook_timeout_s, gt=0, le=60)  # noqa: N815
    maxAttempts: Int = Field(EventsSettings.max_attempts, ge=1, le=50)  # noqa: N815


# --------------------------------------------------------------------------- documents -> settings
def _term(d: _TermDoc, where: str) -> Term:
    try:
        return Term(d.name, d.source, d.weight, d.direction, bound=d.bound,
                    range=None if d.range is None else (d.range.min, d.range.max),
                    target=None if d.target is None else (d.target.value, d.target.tolerance),
                    missing=d.missing, default=d.default)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _formula(d: _Formula, where: str) -> RewardConfig:
    if d.terms is not None and {"weights", "bounds"} & d.model_fields_set:
        raise ValueError(f"{where}terms: give terms or weights/bounds, not both (terms replace today's formula)")
    terms = tuple(_term(t, f"{where}terms.{i}") for i, t in enumerate(d.terms or []))
    try:
        return RewardConfig(version=d.version, w_latency=d.weights.latency, w_cost=d.weights.cost,
                            w_success=d.weights.success, w_error=d.weights.error,
                            max_latency_ms=d.bounds.maxLatencyMs, max_cost_usd=d.bounds.maxCostUsd,
                            min_acceptable=d.thresholds.minAcceptable, retrain=d.thresholds.retrain, terms=terms)
    except ValueError as exc:
        raise ValueError(f"{where}{'terms' if terms else 'weights'}: {exc}") from None


def _reward(d: RewardDoc) -> RewardRules:
    rules = tuple((r.match, _formula(r, f"rules.{i}.")) for i, r in enumerate(d.rules))
    return RewardRules(_formula(d, ""), rules)


def _flags(d: FlagsDoc) -> Flags:
    return Flags(enabled=d.learning.enabled, auto_activate=d.learning.autoActivatePolicies)


def _scoring(d: ScoringDoc) -> ScoringSettings:
    return ScoringSettings(chunk_size=d.chunkSize, safety_margin_ms=d.safetyMarginMs, lease_ttl_s=d.leaseTtlS,
                           retention_days=d.retentionDays, run_budget_s=d.runBudgetS,
                           shards=d.shards)


def _tuning(d: TuningDoc) -> TuningConfig:
    return TuningConfig(min_samples=d.minSamples, exploration_floor=d.explorationFloor,
                        learning_rate=d.learningRate, z=d.z, min_change=d.minChange, window=d.window,
                        method=d.method, alpha=d.alpha, exploration_samples=d.explorationSamples,
                        change_test=d.changeTest, shift_alpha=d.shiftAlpha, shift_min_samples=d.shiftMinSamples,
                        probe_floor=d.probeFloor)


def _rollout(d: RolloutDoc) -> tuple[RolloutConfig, ShadowSettings]:
    cfg = RolloutConfig(
        min_samples=d.minSamples, alpha=d.alpha, rollback_alpha=d.rollbackAlpha, tau=d.tau, srm_alpha=d.srmAlpha,
        guardrail_min_samples=d.guardrailMinSamples, guardrail_alpha=d.guardrailAlpha,
        max_p95_increase_ratio=d.maxP95IncreaseRatio, max_cost_increase_ratio=d.maxCostIncreaseRatio,
        max_success_rate_drop=d.maxSuccessRateDrop, safety_min_samples=d.safetyMinSamples,
        safety_alpha=d.safetyAlpha, safety_max_reward_drop=d.safetyMaxRewardDrop,
        safety_max_p95_increase_ratio=d.safetyMaxP95IncreaseRatio,
        safety_max_error_rate_increase=d.safetyMaxErrorRateIncrease,
        experiment_split=d.experimentSplit, max_duration_hours=d.maxDurationHours, p95_slo_ms=d.p95SloMs,
    )
    return cfg, ShadowSettings(window=d.shadowWindow, min_samples=d.minShadowSamples,
                               deny_if_worse=d.denyCanaryIfShadowWorse)


def _drift(d: DriftDoc) -> DriftConfig:
    return DriftConfig(latest=d.latest, baseline_days=d.baselineDays, alpha=d.alpha, min_samples=d.minSamples,
                       drift_exploration_floor=d.driftExplorationFloor)


def _cards(d: SkillCardsDoc) -> CardSettings:
    if d.lowSuccess > d.highSuccess:
        raise ValueError(f"lowSuccess ({d.lowSuccess}) must not exceed highSuccess ({d.highSuccess})")
    return CardSettings(min_samples=d.minSamples, high_success=d.highSuccess, low_success=d.lowSuccess,
                        cheap_share=d.cheapShare, over_latency_budget=d.overLatencyBudget,
                        outlier_ratio=d.outlierRatio, min_daily_samples=d.minDailySamples,
                        trend_alpha=d.trendAlpha, top_failures=d.topFailures)


def _events(d: EventsDoc) -> EventsSettings:
    return EventsSettings(enabled=d.enabled, topic=d.topic, webhook_url=d.webhookUrl,
                          webhook_timeout_s=d.webhookTimeoutS, max_attempts=d.maxAttempts)


_PARSERS: dict[str, tuple[type[_Doc], Any]] = {
    REWARD: (RewardDoc, _reward),
    FLAGS: (FlagsDoc, _flags),
    SCORING: (ScoringDoc, _scoring),
    TUNING: (TuningDoc, _tuning),
    ROLLOUT: (RolloutDoc, _rollout),
    DRIFT: (DriftDoc, _drift),
    SKILL_CARDS: (SkillCardsDoc, _cards),
    EVENTS: (EventsDoc, _events),
}


def parse(name: str, doc: Any) -> Any:
    """The settings of ``config/<name>`` (a missing document is ``None`` or ``{}``: the defaults).

    Raises ConfigInvalid with ``details`` = {path, field, message} for the first problem found.
    """
    if name not in _PARSERS:
        raise ValueError(f"unknown config document {name!r}; known: {NAMES}")
    model, build = _PARSERS[name]
    path = f"config/{name}"
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigInvalid(f"{path} must be a map, got {type(doc).__name__}",
                            {"path": path, "field": "", "message": "must be a map"})
    try:
        return build(model.model_validate(doc))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigInvalid(f"{path}.{field}: {first['msg']}" if field else f"{path}: {first['msg']}",
                            {"path": path, "field": field, "message": first["msg"],
                             "problems": len(exc.errors())}) from None
    except ValueError as exc:  # the settings' own checks (e.g. a threshold out of its range)
        raise ConfigInvalid(f"{path}: {exc}", {"path": path, "field": "", "message": str(exc)}) from None


def defaults(name: str) -> Any:
    """The settings a missing ``config/<name>`` gives."""
    return parse(name, {})


def default_doc(name: str) -> dict[str, Any]:
    """The stored shape of the defaults (what ``seed/config/<name>.json`` holds)."""
    return _PARSERS[name][0]().model_dump(exclude_none=True)


@dataclass(frozen=True)
class Settings:
    """Every config document of one run, parsed once."""

    reward: RewardConfig = field(default_factory=RewardConfig)  # the default formula (reward_rules.default)
    reward_rules: RewardRules = field(default_factory=RewardRules)  # which formula each component takes
    flags: Flags = field(default_factory=Flags)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    drift: DriftConfig = field(default_factory=DriftConfig)
    cards: CardSettings = field(default_factory=CardSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    problems: tuple[tuple[str, str], ...] = ()  # (path, message) of every document that did not parse

    def replace(self, name: str, value: Any) -> Settings:
        """A copy with the parsed settings of ``config/<name>`` in place."""
        attrs = {f.name: getattr(self, f.name) for f in fields(self)}
        if name == ROLLOUT:
            attrs["rollout"], attrs["shadow"] = value
        elif name == REWARD:
            attrs["reward"], attrs["reward_rules"] = value.default, value
        else:
            attrs[_ATTR[name]] = value
        return Settings(**attrs)


_ATTR = {REWARD: "reward", FLAGS: "flags", SCORING: "scoring", TUNING: "tuning", DRIFT: "drift",
         SKILL_CARDS: "cards", EVENTS: "events"}


@dataclass(frozen=True)
class FlagsChange:
    old: dict[str, bool]
    new: dict[str, bool]
    doc: dict[str, Any] | None  # config/flags as it is to be written; None: nothing changes


def require_learning(stored: dict[str, Any] | None) -> None:
    """Refuse unless config/flags says learning is enabled, read strictly (a bad document means off)."""
    try:
        enabled = parse(FLAGS, stored).enabled
    except ConfigInvalid as exc:
        raise FailedPrecondition(f"learning is off while config/flags does not parse ({exc.message})",
                                 {"code": "E_LEARN_DISABLED"}) from None
    if not enabled:
        raise FailedPrecondition("learning is disabled (config/flags learning.enabled = false)",
                                 {"code": "E_LEARN_DISABLED"})


def change_flags(stored: dict[str, Any], learning: dict[str, bool]) -> FlagsChange:
    """Merge ``learning`` into the stored config/flags. An unreadable document counts as learning off, and
    the change rewrites it whole (a readable one has no other keys: the model refuses them)."""
    try:
        current, doc, repair = parse(FLAGS, stored), stored, False
    except ConfigInvalid:
        current, doc, repair = FLAGS_OFF, {}, True
    old = {"enabled": current.enabled, "autoActivatePolicies": current.auto_activate}
    new = {**old, **learning}
    if new == old and not repair:
        return FlagsChange(old, new, None)
    return FlagsChange(old, new, {**doc, "learning": new})
