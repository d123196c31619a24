"""Drafting better policy versions from the stats (``autoTunePolicies``), hourly and when scoring finds a
model's behaviour changed (``tune_on_change``, run after each scoring run)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..domain import kinds, semver, windows
from ..domain.config import Settings
from ..domain.drift import DriftConfig, EpisodeUpdate
from ..domain.generations import Generations
from ..domain.kinds import router as router_kind
from ..domain.stats import Summary, total, window_stats
from ..domain.tuning import (
    ArmStats,
    Proposal,
    Shift,
    TuningConfig,
    equivalent,
    exploration_floor,
    judge,
    propose_weights,
    window_traffic,
)
from ..domain.windows import ms
from . import alerts, experiments, generations, policies
from . import config as config_service
from .ports import Store

UPDATER = policies.UPDATER


@dataclass
class TuneOutcome:
    policy_id: str
    action: str  # drafted | skipped | error
    reason: str
    version: str | None = None
    activated: bool = False
    experiment_started: bool = False  # kinds tuned by experiment: the draft's canary was started


@dataclass
class TuneRunResult:
    enabled: bool
    outcomes: list[TuneOutcome] = field(default_factory=list)
    config_errors: list[str] = field(default_factory=list)


def auto_tune(store: Store, schedule_time: dt.datetime | None = None,
              now: dt.datetime | None = None, only: set[str] | None = None,
              run_id: str | None = None) -> TuneRunResult:
    """Draft a new version of every active, tunable policy (of ``only`` those ids, when given) whose stats
    call for one.

    One policy that fails is recorded (its outcome, and an ``ops_alerts`` entry) and the others go on. A
    schedule time too far ahead of the clock (``now``) is refused before anything is read.
    """
    if schedule_time is not None:
        windows.check_schedule_time(ms(schedule_time), ms(now or dt.datetime.now(dt.UTC)))
    loaded = config_service.load(store)
    if not loaded.flags.enabled:
        alerts.record_run(store, "tune", ms(schedule_time or dt.datetime.now(dt.UTC)), [], loaded.problems,
                          run_id)
        return TuneRunResult(enabled=False, config_errors=_problems(loaded))
    result = TuneRunResult(enabled=True, config_errors=_problems(loaded))
    gens = generations.current(store, loaded.reward_rules)  # the reward generation the stats are read in
    for active in sorted(store.policies.with_status("active"), key=lambda d: str(d.get("id"))):
        if only is not None and str(active.get("id")) not in only:
            continue
        try:
            outcome = _tune_one(store, active, loaded, gens, schedule_time)
        except Exception as exc:
            outcome = TuneOutcome(str(active.get("id")), "error", f"{type(exc).__name__}: {exc}"[:500])
            alerts.item_failed(store, "autoTunePolicies", f"policy {active.get('id')}", exc)
        result.outcomes.append(outcome)
    alerts.record_run(store, "tune", ms(schedule_time or dt.datetime.now(dt.UTC)),
                      [o.__dict__ for o in result.outcomes], loaded.problems, run_id)
    return result


def _problems(loaded: Settings) -> list[str]:
    return [message for _, message in loaded.problems]


def _check(doc: dict[str, Any]) -> kinds.PolicyKind:
    """The version's kind once it fits; a router version's settings are left to the ``Router`` (one
    stored before they were checked is still tuned, its settings carried over as they are)."""
    kind = kinds.kind_of(doc)
    if kind.name == "router":
        router_kind.validate_tunable(doc)
    else:
        kind.validate(doc)
    return kind


def _tune_one(store: Store, active: dict[str, Any], loaded: Settings, gens: Generations,
              schedule_time: dt.datetime | None) -> TuneOutcome:
    """Dispatch on the policy's kind: weights from the stats, or the next experiment."""
    policy_id = str(active["id"])
    kind = _check(active)  # a version that does not fit its kind is reported, never tuned
    if kind.tuning == "experiment":
        d = experiments.tune(store, active, loaded.rollout, loaded.flags.auto_activate, schedule_time)
        return TuneOutcome(policy_id, d.action, d.reason, version=d.version, experiment_started=d.started)
    return _tune_weights(store, active, loaded.tuning, gens, loaded.drift,
                         loaded.flags.auto_activate, schedule_time)


def _tune_weights(
    store: Store,
    active: dict[str, Any],
    cfg: TuningConfig,
    gens: Generations,
    drift_cfg: DriftConfig,
    auto_activate: bool,
    schedule_time: dt.datetime | None,
) -> TuneOutcome:
    policy_id = str(active["id"])
    params = active.get("params") or {}
    weights = params.get("modelWeights")
    if not isinstance(weights, dict) or not weights:
        return TuneOutcome(policy_id, "skipped", "not tunable: params.modelWeights is missing")
    components = {model: f"router:{model}" for model in weights}
    # minAcceptable of the formula its models are scored under (when rules give them different ones, the default's)
    rules = gens.read_rules
    formulas = {rules.for_component(c).version: rules.for_component(c) for c in components.values()}
    reward_cfg = next(iter(formulas.values())) if len(formulas) == 1 else rules.default
    stats = store.stats.for_window(list(components.values()), cfg.window)
    now_ms = ms(schedule_time or dt.datetime.now(dt.UTC))
    fresh_ms = 2 * windows.WINDOWS[drift_cfg.latest]  # a state check_drift no longer refreshes is stale
    drifting = store.drift.get_many(list(components.values()))
    raised = {
        m: drift_cfg.drift_exploration_floor for m, comp in components.items()
        if (st := drifting.get(comp) or {}).get("drifting") and 0 <= now_ms - int(st.get("updatedAt", 0)) <= fresh_ms
    }
    # the traffic the exploration floor is sized by: the whole window's, also for models judged since a change
    traffic = sum(_samples(s) for s in stats.values())
    since = _change_points(store, components, drifting, cfg, drift_cfg, now_ms, gens)
    shifts: dict[str, Shift] = {}
    pooled: dict[str, int] = {}
    if cfg.change_test:
        raised = {}  # the change test's probes replace the drift check's raised floors
        every = {model: _series(store, comp, cfg, now_ms, gens) for model, comp in components.items()}
        first = min((t for series in every.values() for t, x in series if x.n), default=None)  # in a day at least
        traffic = window_traffic(traffic, first, windows.window_end(now_ms), windows.WINDOWS[cfg.window])
        floor = exploration_floor(cfg, traffic)
        total_w = sum(float(w) for w in weights.values()) or 1.0
        for model, comp in components.items():
            j = judge(every[model], cfg, at_floor=float(weights[model]) / total_w <= 2 * floor,
                      window_start=_window_start(cfg, now_ms))
            if j.shift is not None:
                shifts[comp] = j.shift
                if j.summary.n < cfg.min_samples:  # a probing burst until the new behaviour can be judged
                    raised[model] = max(raised.get(model, 0.0), cfg.probe_floor)
            elif j.start is not None:
                pooled[comp] = j.start
            if j.start is not None and (comp not in since or since[comp][0] < j.start):
                since[comp] = (j.start, j.summary)
    for comp, (_, summary) in since.items():
        stats[comp] = window_stats(summary)
    target = params.get("latencyTargetMs")
    slow = {
        model for model, comp in components.items()
        if isinstance(target, int | float) and not isinstance(target, bool)
        and isinstance(p95 := (stats.get(comp) or {}).get("p95Latency"), int | float) and p95 > target
    }
    arms = {
        model: ArmStats(_samples(s), s.get("avgReward"), s.get("rewardStd"))
        for model, comp in components.items()
        if (s := stats.get(comp)) is not None
    }
    proposal = propose_weights({m: float(w) for m, w in weights.items()}, arms, reward_cfg.min_acceptable, cfg,
                               raised_floors=raised, window_traffic=traffic, over_latency_target=slow)
    if proposal is None:
        return TuneOutcome(policy_id, "skipped", "no change called for by the evidence")
    versions = store.policies.versions(policy_id)
    for draft in versions:
        if draft.get("status") == "draft" and equivalent(
            (draft.get("params") or {}).get("modelWeights") or {}, proposal.weights
        ):
            return TuneOutcome(policy_id, "skipped", f"equivalent draft {draft.get('version')} already waits",
                               version=str(draft.get("version")))
    newest = max(semver.Version.parse(str(v["version"])) for v in versions)
    version = str(newest.bump_patch())
    doc = {
        "id": policy_id,
        "version": version,
        "status": "draft",
        "createdBy": UPDATER,
        "createdAt": ms(dt.datetime.now(dt.UTC)),
        "basedOn": active["version"],
        "notes": f"Auto-tuned from {active['version']}",
        "params": {**params, "modelWeights": proposal.weights},
        "evidence": {**_evidence(proposal, cfg, stats, schedule_time), "raisedFloors": raised,
                     "judgedSinceChange": {comp: start for comp, (start, _) in sorted(since.items())
                                           if comp not in pooled},
                     "judgedRecent": dict(sorted(pooled.items())),
                     "shifts": {comp: {"start": x.start, "z": x.z, "p": x.p, "nAfter": x.n_after}
                                for comp, x in sorted(shifts.items())},
                     "overLatencyTarget": sorted(slow)},
    }
    _check(doc)
    audit = {"actor": UPDATER, "action": "draft", "id": policy_id, "from": active["version"], "to": version,
             "reason": proposal.reason}
    if not store.policies.create_version(doc, audit, require_learning=True):
        return TuneOutcome(policy_id, "skipped", f"version {version} was created concurrently", version=version)
    outcome = TuneOutcome(policy_id, "drafted", proposal.reason, version=version)
    if auto_activate:
        policies.activate(store, policy_id, version, actor=UPDATER)
        outcome.activated = True
    return outcome


def _samples(stats: dict[str, Any]) -> int:
    """Observations behind an ``ops_stats`` document (``n`` in documents written before sampling weights)."""
    return int(stats.get("samples", stats.get("n", 0)))


def _change_points(
    store: Store,
    components: dict[str, str],
    drifting: dict[str, dict[str, Any]],
    cfg: TuningConfig,
    drift_cfg: DriftConfig,
    now_ms: int,
    gens: Generations,
) -> dict[str, tuple[int, Summary]]:
    """Models whose behaviour changed inside the tuning window, with their data since the change.

    A change point is where the drift check last opened an episode (``changedAt``); the data since the
    start of the window that revealed it is what the model does now. Judging it on the whole window would
    mix in its behaviour before the change, which a 24 h window keeps for a day.
    """
    end = windows.window_end(now_ms)
    window_start = end - windows.WINDOWS[cfg.window]
    out: dict[str, tuple[int, Summary]] = {}
    for comp in components.values():
        changed_at = (drifting.get(comp) or {}).get("changedAt")
        if not isinstance(changed_at, int) or changed_at > now_ms:
            continue
        start = windows.window_bounds(changed_at, drift_cfg.latest)[0]
        if window_start < start < end:
            out[comp] = (start, total(store.buckets.load_segments(gens.read_key(comp), windows.cover(start, end))))
    return out


def _series(store: Store, comp: str, cfg: TuningConfig, now_ms: int, gens: Generations) -> list[tuple[int, Summary]]:
    """The component's buckets over the tuning window, and at least the last day (``domain.tuning.judge``),
    hour by hour (5 minutes at the ragged ends)."""
    end = windows.window_end(now_ms)
    key = gens.read_key(comp)
    lookback = max(windows.WINDOWS[cfg.window], windows.DAY_MS)
    return [item for seg in windows.cover(end - lookback, end, largest="1h")
            for item in store.buckets.series(key, seg.level, seg.start, seg.end)]


def _window_start(cfg: TuningConfig, now_ms: int) -> int:
    return windows.window_end(now_ms) - windows.WINDOWS[cfg.window]


def tune_on_change(store: Store, schedule_time: dt.datetime, now: dt.datetime | None = None) -> TuneRunResult:
    """After a scoring run: tune at once the policies one of whose models' change test has a new answer.

    The answer per model (no change; a change from ``start``, judged or still probing) is kept in its
    ``ops_drift`` document (``tunerShift``); a policy is tuned (``auto_tune(only=...)``) when the answer
    of one of its models differs from the kept one, so a change is acted on within minutes, not at the
    next hourly run, and each answer triggers one run.
    """
    windows.check_schedule_time(ms(schedule_time), ms(now or dt.datetime.now(dt.UTC)))
    loaded = config_service.load(store)
    cfg = loaded.tuning
    if not loaded.flags.enabled or not cfg.change_test:
        return TuneRunResult(enabled=loaded.flags.enabled)
    gens = generations.current(store, loaded.reward_rules)
    now_ms = ms(schedule_time)
    routers = {
        str(active["id"]): [f"router:{m}" for m in weights]
        for active in store.policies.with_status("active")
        if isinstance(weights := (active.get("params") or {}).get("modelWeights"), dict) and weights
    }
    comps = sorted({c for cs in routers.values() for c in cs})
    kept = store.drift.get_many(comps)
    answers: dict[str, dict[str, Any] | None] = {}
    for comp in comps:
        j = judge(_series(store, comp, cfg, now_ms, gens), cfg, at_floor=False, window_start=_window_start(cfg, now_ms))
        answers[comp] = None if j.shift is None else {"start": j.shift.start, "judged": j.summary.n >= cfg.min_samples}
    changed = {c for c in comps if (kept.get(c) or {}).get("tunerShift") != answers[c]}
    for comp in sorted(changed):
        answer = answers[comp]
        store.drift.update(comp, lambda st, c=comp, a=answer: EpisodeUpdate(  # type: ignore[misc]
            {**st, "component": c, "tunerShift": a}))
    due = {policy_id for policy_id, cs in routers.items() if changed & set(cs)}
    if not due:
        return TuneRunResult(enabled=True)
    return auto_tune(store, schedule_time, now=now, only=due)


def _evidence(
    proposal: Proposal, cfg: TuningConfig, stats: dict[str, dict[str, Any]], schedule_time: dt.datetime | None
) -> dict[str, Any]:
    stats_ts = max((int(s.get("ts", 0)) for s in stats.values()), default=None)
    return {
        "window": cfg.window,
        "minSamples": cfg.min_samples,
        "explorationFloor": proposal.floor,
        "statsTs": stats_ts,
        "scheduleTime": ms(schedule_time) if schedule_time else None,
        "l1Change": proposal.l1_change,
        "reason": proposal.reason,
        "models": {
            e.model: {"n": e.n, "avgReward": e.avg_reward, "eligible": e.eligible,
                      "oldWeight": e.old_weight, "newWeight": e.new_weight}
            for e in proposal.evidence
        },
    }
