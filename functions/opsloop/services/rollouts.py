"""Safe rollout: shadow and canary stages, their evaluation, promotion and rollback.

A draft enters *shadow*: live traffic keeps the champion and the challenger is judged offline, by
off-policy estimates (IPS / SNIPS) from the propensities the router logged. With an estimate on record it
may start a *canary*: a deterministic share of requests runs the challenger. ``evaluate_rollouts`` looks
at every running canary (champion vs challenger over the canary's lifetime) and decides promote, rollback,
continue or inconclusive; with ``learning.autoActivatePolicies`` the decision is carried out by the
``rollout-controller``. Safety rollbacks happen whenever learning is enabled.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, replace
from typing import Any

from .. import telemetry
from ..domain import config as config_domain
from ..domain import kinds, ope, windows
from ..domain import policy as policy_domain
from ..domain.config import Settings, ShadowSettings
from ..domain.errors import FailedPrecondition, InvalidArgument, NotFound
from ..domain.experiment import ArmData, Evaluation, RolloutConfig, Running, evaluate
from ..domain.routing import MAX_SPLIT, SPLIT_PRESETS
from ..domain.skill_card import share_above
from ..domain.stats import Summary, total
from ..domain.windows import ms
from ..store import paths
from . import alerts, experiments, generations
from . import config as config_service
from .ports import Store

CONTROLLER = "rollout-controller"
E_DATA_MISSING = "E_LEARN_DATA_MISSING"
E_ROLLOUT_DENIED = "E_LEARN_ROLLOUT_DENIED"


def parse_split(value: Any) -> float:
    """A number in (0, 0.5] or a preset name (canary5, canary10, canary20, ab)."""
    if isinstance(value, str):
        if value not in SPLIT_PRESETS or SPLIT_PRESETS[value] <= 0:
            names = sorted(k for k, v in SPLIT_PRESETS.items() if v > 0)
            raise InvalidArgument(f"'split' preset must be one of {names}, got {value!r}", {"field": "split"})
        return SPLIT_PRESETS[value]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not (
        0.0 < value <= MAX_SPLIT
    ):
        raise InvalidArgument(f"'split' must be a number in (0, {MAX_SPLIT}] or a preset name, got {value!r}",
                              {"field": "split"})
    return float(value)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be stored (nor hashed into the audit chain)
        return False
    return True


def _now_ms() -> int:
    return ms(dt.datetime.now(dt.UTC))


def _require_learning(store: Store) -> Settings:
    """config/flags and config/rollout in one read; fails early with the kill switch's own error (the
    transaction checks again before it writes)."""
    loaded = config_service.load(store, (config_domain.FLAGS, config_domain.ROLLOUT))
    if not loaded.flags.enabled:
        raise FailedPrecondition("learning is disabled (config/flags learning.enabled = false)",
                                 {"code": "E_LEARN_DISABLED"})
    return loaded


def _version_doc(store: Store, policy_id: str, version: str) -> dict[str, Any]:
    doc = store.policies.policy(policy_id, version)
    if doc is None:
        raise NotFound(f"policy {policy_id}@{version} does not exist", {"id": policy_id, "version": version})
    return doc


@dataclass(frozen=True)
class RolloutChange:
    """What a rollout command did: nothing (``changed`` False) or one transition, with its audit entry."""

    changed: bool
    policy_id: str | None = None
    action: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    rollout: dict[str, Any] | None = None  # the rollout document it wrote (with its status)
    audit: dict[str, Any] | None = None
    shadow_estimate: dict[str, Any] | None = None  # start_shadow: the estimate stored on the version

    def to_dict(self) -> dict[str, Any]:
        """The callable's answer."""
        if not self.changed:
            return {"changed": False}
        out = {"changed": True, "id": self.policy_id, "action": self.action, "from": self.from_version,
               "to": self.to_version, "rollout": self.rollout}
        if self.shadow_estimate is not None:
            out["shadowEstimate"] = self.shadow_estimate
        return out


def _transition_result(t: policy_domain.Transition | None, audit: dict[str, Any] | None) -> RolloutChange:
    if t is None:
        return RolloutChange(changed=False)
    return RolloutChange(True, t.policy_id, t.action, t.from_version, t.to_version,
                         None if t.rollout is None else {**t.rollout.to_doc(), "status": t.rollout_status}, audit)


def _ended(store: Store, t: policy_domain.Transition | None,
           audit: dict[str, Any] | None) -> RolloutChange:
    """The transition's result; a canary it ended is recorded in ``ops_experiments`` first (a failure to
    record is only logged: the next tuning run's ``experiments.sync`` writes what is missing)."""
    if t is not None and t.rollout is not None and t.rollout.stage == "canary" and t.rollout_status != "running":
        rollout_id = t.rollout.rollout_id
        alerts.quietly(lambda: experiments.record_ended(store, rollout_id), f"record experiment {rollout_id}")
    return _transition_result(t, audit)


# ------------------------------------------------------------------------------------------ shadow
def shadow_estimate(store: Store, policy_id: str, version: str, at: dt.datetime,
                    shadow: ShadowSettings) -> ope.OffPolicyEstimate:
    """Off-policy estimate of ``version``'s reward from what the router logged in the shadow window."""
    doc = _version_doc(store, policy_id, version)
    kind = kinds.kind_of(doc)
    if kind.gate != "off_policy":
        raise FailedPrecondition(f"{policy_id}@{version} is a {kind.name} policy: it has no off-policy estimate "
                                 "and no shadow stage; start its canary directly (startCanary)",
                                 {"code": E_DATA_MISSING, "kind": kind.name})
    weights = (doc.get("params") or {}).get("modelWeights")
    if not isinstance(weights, dict) or not weights:
        raise FailedPrecondition(f"{policy_id}@{version} has no params.modelWeights to estimate",
                                 {"code": E_DATA_MISSING})
    start, end = windows.window_bounds(ms(at), shadow.window)
    gens = generations.current(store)
    per_model = {
        model: total(store.buckets.load_segments(gens.read_key(f"router:{model}"), windows.cover(start, end)))
        for model in weights
    }
    estimate = ope.estimate(per_model, {m: float(w) for m, w in weights.items()})
    numbers = [estimate.ips, estimate.snips, estimate.ess, estimate.logged_mean,
               *(estimate.ips_ci or ()), *(estimate.snips_ci or ())]
    if not all(x is None or math.isfinite(x) for x in numbers):
        # sums poisoned before propensities were bounded: no gate may pass on them (they age out of the window)
        raise FailedPrecondition(f"the logged data of {policy_id}'s models holds non-finite off-policy sums; "
                                 f"wait until they leave the {shadow.window} shadow window", {"code": E_DATA_MISSING})
    return estimate


def _store_estimate(store: Store, policy_id: str, version: str, est: ope.OffPolicyEstimate,
                    at: dt.datetime, shadow: ShadowSettings) -> dict[str, Any]:
    doc = {**est.to_doc(), "ts": ms(at), "window": shadow.window}
    store.policies.update(policy_id, version, {"shadowEstimate": doc})
    return doc


def start_shadow(store: Store, policy_id: str, version: str, actor: str) -> RolloutChange:
    shadow = _require_learning(store).shadow
    now = dt.datetime.now(dt.UTC)
    rollout_id = f"{policy_id}@{version}~{uuid.uuid4().hex[:8]}"
    estimate = shadow_estimate(store, policy_id, version, now, shadow)  # fails before anything is written
    t, audit = store.policies.apply_transition(
        policy_id,
        lambda head, status_of: policy_domain.plan_start_shadow(head, version, status_of, rollout_id, ms(now)),
        actor, extra_audit={"evidence": {"shadowEstimate": estimate.to_doc()}}, require_learning=True,
    )
    est = _store_estimate(store, policy_id, version, estimate, now, shadow)
    return replace(_transition_result(t, audit), shadow_estimate=est)


def start_canary(store: Store, policy_id: str, version: str, split: Any, actor: str) -> RolloutChange:
    """Start a canary; refused without a shadow estimate, or when the estimate is clearly worse."""
    split = parse_split(split)
    shadow = _require_learning(store).shadow
    doc = _version_doc(store, policy_id, version)
    if kinds.kind_of(doc).gate == "none":  # no pre-traffic gate: from draft straight to canary
        return _transition_result(*experiments.start_experiment(store, policy_id, version, split, actor))
    est = doc.get("shadowEstimate")
    if not est or int(est.get("n") or 0) < shadow.min_samples:
        have = 0 if not est else int(est.get("n") or 0)
        raise FailedPrecondition(
            f"{policy_id}@{version} needs a shadow estimate from at least {shadow.min_samples} logged "
            f"decisions with propensities before a canary (has {have})",
            {"code": E_DATA_MISSING, "have": have, "need": shadow.min_samples},
        )
    ci = est.get("snipsCi")
    logged = est.get("loggedMean")
    if shadow.deny_if_worse and ci and logged is not None and ci[1] < logged:
        raise FailedPrecondition(
            f"shadow estimate says {policy_id}@{version} is worse than the champion "
            f"(SNIPS 95% CI {ci[0]:.4f}..{ci[1]:.4f} < logged mean {logged:.4f})",
            {"code": E_ROLLOUT_DENIED, "shadowEstimate": est},
        )
    now = _now_ms()
    t, audit = store.policies.apply_transition(
        policy_id,
        lambda head, status_of: policy_domain.plan_start_canary(head, version, status_of, split, now),
        actor, extra_audit={"evidence": {"shadowEstimate": est, "split": split}}, require_learning=True,
    )
    return _transition_result(t, audit)


def promote(store: Store, policy_id: str, version: str, actor: str,
            evidence: dict[str, Any] | None = None) -> RolloutChange:
    rollout = store.policies.head(policy_id).rollout
    if evidence is None and rollout is not None:
        evidence = (store.rollouts.get(rollout.rollout_id) or {}).get("lastEvaluation")
    t, audit = store.policies.apply_transition(
        policy_id, lambda head, status_of: policy_domain.plan_promote(head, version, status_of), actor,
        extra_audit={"evidence": evidence}, require_learning=True,
    )
    return _ended(store, t, audit)


def reject(store: Store, policy_id: str, version: str, reason: str, actor: str) -> RolloutChange:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000 or not _utf8(reason):
        raise InvalidArgument("'reason' must be a non-empty string of at most 1000 characters", {"field": "reason"})
    t, audit = store.policies.apply_transition(
        policy_id, lambda head, status_of: policy_domain.plan_reject(head, version, status_of), actor,
        extra_audit={"reason": reason},
    )
    return _ended(store, t, audit)


def conclude(store: Store, policy_id: str, version: str, actor: str,
             evidence: dict[str, Any] | None) -> RolloutChange:
    """End a canary that stayed inconclusive past ``maxDurationHours`` (kinds tuned by experiment)."""
    t, audit = store.policies.apply_transition(
        policy_id, lambda head, status_of: policy_domain.plan_conclude(head, version, status_of), actor,
        extra_audit={"evidence": evidence}, require_learning=True,
    )
    return _ended(store, t, audit)


def rollback_canary(store: Store, policy_id: str, version: str, actor: str,
                    evidence: dict[str, Any] | None) -> RolloutChange:
    t, audit = store.policies.apply_transition(
        policy_id, lambda head, status_of: policy_domain.plan_canary_rollback(head, version, status_of), actor,
        extra_audit={"evidence": evidence},
    )
    return _ended(store, t, audit)


# -------------------------------------------------------------------------------------- evaluation
def arm_data(summary: Summary) -> ArmData:
    return ArmData(
        n=summary.n,
        mean_reward=summary.mean_reward or 0.0,
        var_reward=summary.reward_variance or 0.0,
        success_rate=summary.success_rate or 0.0,
        p95_latency=summary.latency_quantile(0.95),
        mean_cost=summary.mean_cost or 0.0,
        var_cost=summary.cost_variance,
        share_above=lambda x: share_above(summary, x) or 0.0,
        log_latency=summary.log_latency_moments(),
    )


@dataclass
class RolloutOutcome:
    rollout_id: str
    policy_id: str
    version: str
    stage: str
    outcome: str
    reason: str
    carried_out: bool = False
    expired: bool = False  # an experiment past maxDurationHours without a decision: ended as inconclusive


def evaluate_canary(store: Store, rollout: dict[str, Any], at: dt.datetime,
                    cfg: RolloutConfig) -> Evaluation:
    """Champion vs challenger over the canary's lifetime, from the arms' buckets."""
    policy_id, champion, challenger = rollout["id"], rollout["champion"], rollout["version"]
    started = int(rollout.get("canaryStartedAt") or rollout["startedAt"])
    start = windows.bucket_start(started, "5m")
    end = windows.window_end(ms(at))
    segments = windows.cover(start, end) if end > start else []
    gens = generations.current(store)  # both arms under one reward generation, whatever changed meanwhile
    cp = total(store.buckets.load_segments(gens.read_key(paths.arm_key(f"{policy_id}@{champion}", "champion")),
                                           segments))
    ch = total(store.buckets.load_segments(gens.read_key(paths.arm_key(f"{policy_id}@{challenger}", "challenger")),
                                           segments))
    running = Running(_number(rollout.get("msprtP")), _number(rollout.get("srmP")))
    return evaluate(arm_data(cp), arm_data(ch), float(rollout["split"]), cfg, running)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def evaluate_rollouts(store: Store, schedule_time: dt.datetime, run_id: str | None = None) -> list[RolloutOutcome]:
    """Evaluate every running canary and shadow; carry out decisions the flags allow.

    Every canary is evaluated first, then safety rollbacks are carried out before any other decision (so a
    promotion or a failure elsewhere never delays one), then the rest, then shadows. Each rollout is on
    its own: one that fails (a deleted version, a malformed document) is recorded as outcome ``error``
    with an ``ops_alerts`` entry, and the others go on. Safety rollbacks also run while ``config/flags``
    cannot be read (learning is off then, but returning to the champion is always safe); an explicit
    ``learning.enabled = false`` freezes every decision.
    """
    windows.check_schedule_time(ms(schedule_time), _now_ms())
    loaded = config_service.load(store, (config_domain.FLAGS, config_domain.ROLLOUT))
    running = sorted(store.rollouts.running(), key=lambda r: str(r.get("rolloutId")))
    out: list[RolloutOutcome] = []
    decided: list[tuple[RolloutOutcome, dict[str, Any], bool]] = []  # (outcome, evaluation doc, safety)
    for rollout in running:
        if rollout.get("stage") == "shadow":
            continue
        try:
            decided.append(_evaluate_canary(store, rollout, schedule_time, loaded.rollout))
        except Exception as exc:
            out.append(_failed(store, rollout, exc))
    flags = loaded.flags
    for safety_pass in (True, False):
        for result, doc, safety in decided:
            if safety != safety_pass:
                continue
            allowed = (flags.enabled and (flags.auto_activate or safety)) or (safety and not flags.readable)
            if allowed and (result.outcome in ("promote", "rollback") or result.expired):
                try:
                    if result.outcome == "promote":
                        promote(store, result.policy_id, result.version, CONTROLLER, evidence=doc)
                    elif result.outcome == "rollback":
                        if rollback_canary(store, result.policy_id, result.version, CONTROLLER,
                                           evidence=doc).changed:
                            telemetry.rollback("safety" if safety else "canary")
                    else:
                        conclude(store, result.policy_id, result.version, CONTROLLER, evidence=doc)
                    result.carried_out = True
                except Exception as exc:  # the decision is recorded; the next look tries again
                    error = alerts.item_failed(store, "evaluateRollouts", f"rollout {result.rollout_id}", exc)
                    result.reason += f"; not carried out: {error}"
            out.append(result)
    for rollout in running:
        if rollout.get("stage") != "shadow":
            continue
        try:
            out.append(_refresh_shadow(store, rollout, schedule_time, loaded.shadow))
        except Exception as exc:
            out.append(_failed(store, rollout, exc))
    alerts.record_run(store, "evaluate", ms(schedule_time), [o.__dict__ for o in out], loaded.problems, run_id)
    for o in out:
        telemetry.decision(o.outcome, o.stage, o.carried_out)
    return out


def _failed(store: Store, rollout: dict[str, Any], exc: BaseException) -> RolloutOutcome:
    rid = str(rollout.get("rolloutId"))
    error = alerts.item_failed(store, "evaluateRollouts", f"rollout {rid}", exc)
    return RolloutOutcome(rid, str(rollout.get("id")), str(rollout.get("version")), str(rollout.get("stage")),
                          "error", error)


def _refresh_shadow(store: Store, rollout: dict[str, Any], schedule_time: dt.datetime,
                    shadow: ShadowSettings) -> RolloutOutcome:
    rid, policy_id, version = str(rollout["rolloutId"]), str(rollout["id"]), str(rollout["version"])
    estimate = shadow_estimate(store, policy_id, version, schedule_time, shadow)
    est = _store_estimate(store, policy_id, version, estimate, schedule_time, shadow)
    return RolloutOutcome(rid, policy_id, version, "shadow", "continue",
                          f"shadow estimate refreshed from {est['n']} logged decisions")


def _evaluate_canary(store: Store, rollout: dict[str, Any], schedule_time: dt.datetime,
                     cfg: RolloutConfig) -> tuple[RolloutOutcome, dict[str, Any], bool]:
    """Evaluate and record one canary's look; returns its outcome, evaluation document and whether the
    decision is a safety rollback."""
    rid, policy_id, version = str(rollout["rolloutId"]), str(rollout["id"]), str(rollout["version"])
    ev = evaluate_canary(store, rollout, schedule_time, cfg)
    doc = {"ts": ms(schedule_time), **ev.to_doc()}
    store.rollouts.record_evaluation(rid, doc, {"lastEvaluation": doc, "msprtP": ev.msprt_p, "srmP": ev.srm_p,
                                       "evaluationCount": int(rollout.get("evaluationCount") or 0) + 1})
    safety = ev.outcome == "rollback" and any(ev.safety.values())
    result = RolloutOutcome(rid, policy_id, version, "canary", ev.outcome, ev.reason)
    started = int(rollout.get("canaryStartedAt") or rollout["startedAt"])
    hours = (ms(schedule_time) - started) / 3_600_000
    if ev.outcome in ("continue", "inconclusive") and hours > cfg.max_duration_hours \
            and kinds.kind_of(_version_doc(store, policy_id, version)).tuning == "experiment":
        result.outcome, result.expired = "inconclusive", True
        result.reason = f"no decision after {hours:.1f} h (maxDurationHours {cfg.max_duration_hours:g}): " \
                        f"ended as inconclusive; {ev.reason}"
    if ev.srm:  # the run is frozen on untrusted data: an operator has to look (one alert, counted per look)
        store.alerts.note(f"srm~{rid}", {"kind": "srm", "rolloutId": rid, "id": policy_id, "version": version,
                                        "srmP": ev.srm_p, "ts": ms(schedule_time), "reason": ev.reason})
    return result, doc, safety
