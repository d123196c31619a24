"""The reward of one observation: a score in [0, 1] from a list of weighted terms.

A term reads one value of the observation (a built-in field, an outcome indicator, or a ``metrics``
entry), normalises it to [0, 1] and weighs it. A term where higher is better contributes ``+w * norm``, one
where lower is better ``-w * norm``, onto a base that makes a perfect observation score 1:

    base  = 1 - (sum of the weights of the higher-is-better terms)
    score = clamp(base + sum of the contributions, in the config's order, 0, 1)

Normalisations: an indicator (``success``, ``error``, ``outcome:<o>``) is 0 or 1; ``bound`` reads
``min(max(x, 0) / bound, 1)``; ``range`` ``(x - min) / (max - min)`` clamped to [0, 1]; ``target`` the
closeness ``1 - min(|x - target| / tolerance, 1)``. A value the observation lacks (a metric it did not
send) takes the term's ``default``, or with ``missing: skip`` the term drops out and the present terms'
weights are scaled up to the same total.

Today's formula is the config without ``terms`` (``legacy_terms``): successBoost (success, higher, w
0.6), latencyPenalty (durationMs, lower, bound 4000 ms), costPenalty (costUsd, lower, bound $0.10),
errorPenalty (error, lower). A success at exactly the latency and cost bounds scores 0.55, the seeded
``minAcceptable``; any non-success scores 0. ``details`` keeps each term's contribution by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SUCCESS = "success"
OUTCOMES = ("success", "failure", "timeout", "rate_limit")
FIELDS = ("success", "error", "durationMs", "costUsd", "tokensIn", "tokensOut")
INDICATORS = ("success", "error", *(f"outcome:{o}" for o in OUTCOMES))
METRIC_NAME = re.compile(r"[a-z][a-zA-Z0-9_]{0,63}")
TERM_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,63}")
MAX_TERMS = 32


def source_problem(source: str) -> str | None:
    """Why ``source`` names nothing a term can read; None when it is fine."""
    if source in FIELDS or source in INDICATORS:
        return None
    if source.startswith("outcome:"):
        return f"unknown outcome {source[8:]!r}; outcomes are {list(OUTCOMES)}"
    if source.startswith("metric:"):
        name = source[7:]
        return None if METRIC_NAME.fullmatch(name) else \
            f"metric name {name!r} must match {METRIC_NAME.pattern} (e.g. metric:thumbsUp)"
    return f"unknown source {source!r}; use one of {list(FIELDS)}, outcome:<outcome> or metric:<name>"


@dataclass(frozen=True)
class Term:
    """One weighted part of the reward (see the module docstring)."""

    name: str  # its key in ``details``
    source: str
    weight: float
    direction: Literal["higher", "lower"]
    bound: float | None = None
    range: tuple[float, float] | None = None  # (min, max)
    target: tuple[float, float] | None = None  # (target, tolerance)
    missing: Literal["skip", "default"] = "default"
    default: float = 0.0  # the value read when the observation lacks it (missing: default)

    def __post_init__(self) -> None:
        if TERM_NAME.fullmatch(self.name) is None:
            raise ValueError(f"term name must match {TERM_NAME.pattern}, got {self.name!r}")
        if (problem := source_problem(self.source)) is not None:
            raise ValueError(problem)
        if not (math.isfinite(self.weight) and 0.0 <= self.weight <= 1.0):
            raise ValueError(f"term {self.name}: weight must be in [0, 1], got {self.weight!r}")
        given = [n for n in ("bound", "range", "target") if getattr(self, n) is not None]
        if self.source in INDICATORS:
            if given:
                raise ValueError(f"term {self.name}: {self.source} is 0 or 1 already; drop {given[0]}")
        elif len(given) != 1:
            raise ValueError(f"term {self.name}: give exactly one of bound, range or target for {self.source}")
        if self.bound is not None and not (math.isfinite(self.bound) and self.bound > 0):
            raise ValueError(f"term {self.name}: bound must be > 0, got {self.bound!r}")
        if self.range is not None and not (all(map(math.isfinite, self.range)) and self.range[0] < self.range[1]):
            raise ValueError(f"term {self.name}: range needs min < max, got {self.range!r}")
        if self.target is not None and not (all(map(math.isfinite, self.target)) and self.target[1] > 0):
            raise ValueError(f"term {self.name}: target needs a tolerance > 0, got {self.target!r}")
        if not math.isfinite(self.default):
            raise ValueError(f"term {self.name}: default must be finite, got {self.default!r}")

    def normalise(self, x: float) -> float:
        if self.bound is not None:
            return min(max(x, 0.0) / self.bound, 1.0)
        if self.range is not None:
            lo, hi = self.range
            return min(max((x - lo) / (hi - lo), 0.0), 1.0)
        if self.target is not None:
            t, tolerance = self.target
            return 1.0 - min(abs(x - t) / tolerance, 1.0)
        return 1.0 if x else 0.0

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "source": self.source, "weight": self.weight,
                               "direction": self.direction}
        if self.bound is not None:
            doc["bound"] = self.bound
        if self.range is not None:
            doc["range"] = {"min": self.range[0], "max": self.range[1]}
        if self.target is not None:
            doc["target"] = {"value": self.target[0], "tolerance": self.target[1]}
        if self.missing == "skip":
            doc["missing"] = "skip"
        elif self.source.startswith("metric:"):
            doc["default"] = self.default
        return doc


@dataclass(frozen=True)
class RewardConfig:
    """Weights, bounds and thresholds of the reward, as stored in ``config/reward_config``."""

    version: str = "1.0.0"
    w_latency: float = 0.25
    w_cost: float = 0.2
    w_success: float = 0.6
    w_error: float = 0.6
    max_latency_ms: float = 4000.0
    max_cost_usd: float = 0.10
    min_acceptable: float = 0.55
    retrain: float = 0.40
    terms: tuple[Term, ...] = ()  # empty: today's four terms from the weights and bounds above

    def __post_init__(self) -> None:
        for name in ("w_latency", "w_cost", "w_success", "w_error"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"reward weight {name} must be in [0, 1], got {value!r}")
        for name in ("max_latency_ms", "max_cost_usd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"reward bound {name} must be > 0, got {value!r}")
        for name in ("min_acceptable", "retrain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"reward threshold {name} must be in [0, 1], got {value!r}")
        if len(self.terms) > MAX_TERMS:
            raise ValueError(f"a reward has at most {MAX_TERMS} terms, got {len(self.terms)}")
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"term names must be unique, got {names!r}")
        if self.terms and not any(t.weight > 0 for t in self.terms):
            raise ValueError("at least one term needs a weight > 0 (else every observation scores the same)")

    @property
    def effective_terms(self) -> tuple[Term, ...]:
        return self.terms or legacy_terms(self)

    def to_doc(self) -> dict[str, Any]:
        if self.terms:
            return {"version": self.version, "terms": [t.to_doc() for t in self.terms],
                    "thresholds": {"minAcceptable": self.min_acceptable, "retrain": self.retrain}}
        return {
            "version": self.version,
            "weights": {
                "latency": self.w_latency, "cost": self.w_cost,
                "success": self.w_success, "error": self.w_error,
            },
            "bounds": {"maxLatencyMs": self.max_latency_ms, "maxCostUsd": self.max_cost_usd},
            "thresholds": {"minAcceptable": self.min_acceptable, "retrain": self.retrain},
        }


def legacy_terms(cfg: RewardConfig) -> tuple[Term, ...]:
    """Today's formula as terms, in the order its sum was always taken (so scores stay bit for bit)."""
    return (Term("successBoost", "success", cfg.w_success, "higher"),
            Term("latencyPenalty", "durationMs", cfg.w_latency, "lower", bound=cfg.max_latency_ms),
            Term("costPenalty", "costUsd", cfg.w_cost, "lower", bound=cfg.max_cost_usd),
            Term("errorPenalty", "error", cfg.w_error, "lower"))


@dataclass(frozen=True)
class Reward:
    score: float
    contributions: dict[str, float] = field(default_factory=dict)  # term name -> w * norm (unsigned)
    missing: tuple[str, ...] = ()  # terms skipped because the observation lacked their value

    def details(self) -> dict[str, float]:
        return dict(self.contributions)


def _ratio_input(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"reward input must be a finite number >= 0, got {value!r}")
    return value


def _read(source: str, outcome: str, duration_ms: float, cost_usd: float, tokens_in: float, tokens_out: float,
          metrics: Mapping[str, Any]) -> float | None:
    if source == "success":
        return 1.0 if outcome == SUCCESS else 0.0
    if source == "error":
        return 0.0 if outcome == SUCCESS else 1.0
    if source.startswith("outcome:"):
        return 1.0 if outcome == source[8:] else 0.0
    if source == "durationMs":
        return _ratio_input(duration_ms)
    if source == "costUsd":
        return _ratio_input(cost_usd)
    if source == "tokensIn":
        return _ratio_input(tokens_in)
    if source == "tokensOut":
        return _ratio_input(tokens_out)
    value = metrics.get(source[7:])
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def score(outcome: str, duration_ms: float, cost_usd: float, cfg: RewardConfig, *, tokens_in: float = 0.0,
          tokens_out: float = 0.0, metrics: Mapping[str, Any] | None = None) -> Reward:
    """Score one observation; see the module docstring for the formula."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    terms = cfg.effective_terms
    values: list[tuple[Term, float]] = []
    missing: list[str] = []
    for term in terms:
        x = _read(term.source, outcome, duration_ms, cost_usd, tokens_in, tokens_out, metrics or {})
        if x is None and term.missing == "skip":
            missing.append(term.name)
            continue
        values.append((term, term.default if x is None else x))
    scale = 1.0
    if missing:
        present = sum(t.weight for t, _ in values)
        scale = sum(t.weight for t in terms) / present if present > 0 else 0.0
    base = 1.0 - sum(t.weight * scale for t, _ in values if t.direction == "higher")
    raw = base
    contributions: dict[str, float] = {}
    for term, x in values:
        part = term.weight * scale * term.normalise(x)
        raw = raw + part if term.direction == "higher" else raw - part
        contributions[term.name] = round(part, 6)
    return Reward(round(min(1.0, max(0.0, raw)), 6), contributions, tuple(missing))


COMPONENT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}\*?|\*")


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` selects no components; a pattern is an exact component name or a prefix and ``*``."""
    if COMPONENT_PATTERN.fullmatch(pattern) is None:
        return (f"must be a component name or a prefix ending in '*' (e.g. 'router:*', 'autoscaler:core'), "
                f"got {pattern!r}")
    return None


def matches(pattern: str, component: str) -> bool:
    return component.startswith(pattern[:-1]) if pattern.endswith("*") else component == pattern


@dataclass(frozen=True)
class RewardRules:
    """``config/reward_config``: the default reward and the rules that give some components another.

    A component takes the rule that names it exactly, else the one with the longest matching prefix,
    else the default. Each config names its own version, stored on every reward computed under it.
    """

    default: RewardConfig = field(default_factory=RewardConfig)
    rules: tuple[tuple[str, RewardConfig], ...] = ()

    def __post_init__(self) -> None:
        patterns = [p for p, _ in self.rules]
        for i, p in enumerate(patterns):
            if (problem := pattern_problem(p)) is not None:
                raise ValueError(f"rules.{i}.match: {problem}")
            if p in patterns[:i]:
                raise ValueError(f"rules.{i}.match: {p!r} is matched by rule {patterns.index(p)} already; "
                                 "two rules for the same components would be ambiguous")
        versions = [self.default.version, *(c.version for _, c in self.rules)]
        for i, v in enumerate(versions[1:]):
            if v in versions[: i + 1]:
                raise ValueError(f"rules.{i}.version: {v!r} is already the version of another reward config; "
                                 "each formula needs its own version")

    def for_component(self, component: str) -> RewardConfig:
        exact = [c for p, c in self.rules if p == component]
        if exact:
            return exact[0]
        prefixes = sorted(((len(p), c) for p, c in self.rules if p.endswith("*") and matches(p, component)),
                          key=lambda item: item[0])
        return prefixes[-1][1] if prefixes else self.default

    def to_doc(self) -> dict[str, Any]:
        """As ``config/reward_config`` holds it (parsing it gives these rules back)."""
        return {**self.default.to_doc(), "rules": [{"match": p, **c.to_doc()} for p, c in self.rules]}

    def versions(self) -> dict[str, str]:
        """Pattern (``*`` for the default) -> the version of its config."""
        return {"*": self.default.version, **{p: c.version for p, c in self.rules}}
