"""What-if before adopting a reward config: stored history re-scored under a proposal, nothing written.

Observations of the last ``days`` (event time) are read a page at a time with their stored rewards; each is
scored again under the proposal. Per component: the mean reward before (as stored, or under today's config
for one not scored yet) and after, how many lacked each term's metric; per active router policy: its
models ranked before and after, and the weights the tuner would draft from each. Memory holds one page
and one pair of summaries per component.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..domain import config as config_domain
from ..domain import reward as reward_domain
from ..domain.config import ConfigInvalid
from ..domain.errors import InvalidArgument
from ..domain.stats import Summary, total
from ..domain.tuning import ArmStats, TuningConfig, propose_weights
from ..domain.windows import DAY_MS, ms
from . import config as config_service
from . import shards as shard_service
from .ports import Store

MAX_DAYS = 90


@dataclass
class ComponentWhatIf:
    component: str
    n: int
    before: float | None  # mean reward as scored today
    after: float | None  # under the proposal
    version_before: str
    version_after: str
    missing: dict[str, int] = field(default_factory=dict)  # term -> observations that lacked its value

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "n": self.n, "meanBefore": self.before, "meanAfter": self.after,
                "versionBefore": self.version_before, "versionAfter": self.version_after,
                "missingTerms": self.missing}


@dataclass
class PolicyWhatIf:
    policy_id: str
    ranking_before: list[tuple[str, float]]  # (model, mean reward), best first
    ranking_after: list[tuple[str, float]]
    draft_before: dict[str, float] | None  # the weights the tuner would draft today; None: no change called for
    draft_after: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {"policyId": self.policy_id,
                "rankingBefore": [{"model": m, "meanReward": r} for m, r in self.ranking_before],
                "rankingAfter": [{"model": m, "meanReward": r} for m, r in self.ranking_after],
                "draftBefore": self.draft_before, "draftAfter": self.draft_after}


@dataclass
class WhatIfResult:
    since_ms: int
    until_ms: int
    observations: int
    components: list[ComponentWhatIf]
    policies: list[PolicyWhatIf]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since_ms, "until": self.until_ms, "observations": self.observations,
                "components": [c.to_dict() for c in self.components],
                "policies": [p.to_dict() for p in self.policies], "warnings": self.warnings}


def parse_proposal(doc: Any) -> reward_domain.RewardRules:
    """A proposed ``config/reward_config``, checked as the loop would check it (InvalidArgument if bad)."""
    try:
        rules: reward_domain.RewardRules = config_domain.parse(config_domain.REWARD, doc)
    except ConfigInvalid as exc:
        raise InvalidArgument(f"proposal: {exc.message}", {**exc.details, "code": "E_LEARN_CONFIG_INVALID"}) from None
    return rules


@dataclass
class _Acc:
    before: list[Summary] = field(default_factory=list)
    after: list[Summary] = field(default_factory=list)
    n: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    metrics_seen: set[str] = field(default_factory=set)

    def fold(self) -> None:
        """Keep two summaries, not one per observation (bounded memory)."""
        if len(self.before) > 256:
            self.before = [total(self.before)]
        if len(self.after) > 256:
            self.after = [total(self.after)]


def _summary(score: float, d: dict[str, Any]) -> Summary:
    return Summary.of(reward=score, success=d.get("outcome") == reward_domain.SUCCESS,
                      cost_usd=float(d.get("costUsd") or 0.0), duration_ms=float(d.get("durationMs") or 0.0))


def _score(d: dict[str, Any], cfg: reward_domain.RewardConfig) -> reward_domain.Reward:
    metrics = d.get("metrics")
    tokens_in, tokens_out = d.get("tokensIn"), d.get("tokensOut")
    return reward_domain.score(
        str(d.get("outcome")), float(d.get("durationMs") or 0.0), float(d.get("costUsd") or 0.0), cfg,
        tokens_in=float(tokens_in) if isinstance(tokens_in, int) and not isinstance(tokens_in, bool) else 0.0,
        tokens_out=float(tokens_out) if isinstance(tokens_out, int) and not isinstance(tokens_out, bool) else 0.0,
        metrics=metrics if isinstance(metrics, dict) else None)


def what_if(store: Store, proposal: Any, days: int = 7, now: dt.datetime | None = None,
            progress: Callable[[int], None] | None = None, page_size: int = 2000) -> WhatIfResult:
    """Re-score the last ``days`` of observations under ``proposal``; writes nothing."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidArgument(f"'days' must be a whole number in [1, {MAX_DAYS}], got {days!r}", {"field": "days"})
    proposed = parse_proposal(proposal)
    loaded = config_service.load(store, (config_domain.REWARD, config_domain.TUNING))
    current = loaded.reward_rules
    until = ms(now or dt.datetime.now(dt.UTC))
    since = until - days * DAY_MS
    accs: dict[str, _Acc] = {}
    count = 0
    for page in store.observations.pages(since, until, page_size=page_size, keys=shard_service.stored_keys(store)):
        stored = store.observations.rewards_for([doc_id for doc_id, _ in page])
        for doc_id, d in page:
            component = d.get("component")
            if not isinstance(component, str):
                continue
            acc = accs.setdefault(component, _Acc())
            try:
                reward = stored.get(doc_id) or {}
                before = reward.get("score")
                if not isinstance(before, int | float) or isinstance(before, bool) or reward.get("invalid"):
                    before = _score(d, current.for_component(component)).score
                after = _score(d, proposed.for_component(component))
            except (ArithmeticError, TypeError, ValueError):
                continue  # what the scorer records as invalid teaches a what-if nothing
            acc.n += 1
            acc.before.append(_summary(float(before), d))
            acc.after.append(_summary(after.score, d))
            for term in after.missing:
                acc.missing[term] = acc.missing.get(term, 0) + 1
            if isinstance(d.get("metrics"), dict):
                acc.metrics_seen.update(d["metrics"])
            acc.fold()
        count += len(page)
        if progress is not None:
            progress(len(page))
    summaries = {c: (total(a.before), total(a.after)) for c, a in accs.items()}
    components = [ComponentWhatIf(c, a.n, _round(summaries[c][0].mean_reward), _round(summaries[c][1].mean_reward),
                                  current.for_component(c).version, proposed.for_component(c).version,
                                  dict(sorted(a.missing.items())))
                  for c, a in sorted(accs.items())]
    return WhatIfResult(since, until, count, components,
                        _policies(store, summaries, current, proposed, loaded.tuning), _warnings(proposed, accs))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _policies(store: Store, summaries: dict[str, tuple[Summary, Summary]], current: reward_domain.RewardRules,
              proposed: reward_domain.RewardRules, tuning_cfg: TuningConfig) -> list[PolicyWhatIf]:
    out = []
    for doc in sorted(store.policies.with_status("active"), key=lambda d: str(d.get("id"))):
        weights = (doc.get("params") or {}).get("modelWeights")
        if not isinstance(weights, dict) or not weights:
            continue
        models = {m: summaries[f"router:{m}"] for m in weights if f"router:{m}" in summaries}
        rankings, drafts = [], []
        for side, rules in ((0, current), (1, proposed)):
            means = {m: s[side].mean_reward for m, s in models.items()}
            rankings.append(sorted(((m, round(r, 6)) for m, r in means.items() if r is not None),
                                   key=lambda item: (-item[1], item[0])))
            arms = {m: ArmStats(s[side].n, s[side].mean_reward, _std(s[side])) for m, s in models.items()}
            first = sorted(weights)[0]
            proposal = propose_weights({m: float(w) for m, w in weights.items()}, arms,
                                       rules.for_component(f"router:{first}").min_acceptable, tuning_cfg)
            drafts.append(None if proposal is None else {m: round(w, 6) for m, w in proposal.weights.items()})
        out.append(PolicyWhatIf(str(doc["id"]), rankings[0], rankings[1], drafts[0], drafts[1]))
    return out


def _std(s: Summary) -> float | None:
    var = s.reward_variance
    return None if var is None else var ** 0.5


def _warnings(proposed: reward_domain.RewardRules, accs: dict[str, _Acc]) -> list[str]:
    """A term over a metric that no observation of the components its formula covers carries."""
    out = []
    for pattern, cfg in (("*", proposed.default), *proposed.rules):
        covered = [a for c, a in accs.items() if proposed.for_component(c) is cfg]
        seen = set().union(*(a.metrics_seen for a in covered)) if covered else set()
        for term in cfg.effective_terms:
            if term.source.startswith("metric:") and term.source[7:] not in seen:
                where = "the default formula" if pattern == "*" else f"rule {pattern!r}"
                out.append(f"{where}: term {term.name!r} reads {term.source}, which no observation of its "
                           f"{len(covered)} component(s) in the window carries")
    return out
