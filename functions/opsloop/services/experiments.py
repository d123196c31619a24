"""The experiment registry (``ops_experiments``) and tuning by experiment for kinds that learn that way.

Every canary that ends is recorded once, whatever its kind and however it ended (promoted, rolled back,
rejected, ended inconclusive), from its rollout document and both versions. ``record_ended`` writes it
right after the transition that ends a canary (promote, reject, rollback, conclude), and ``sync`` writes
any that are missing before every tuning run, so a record that a crash (or a hand activation of the
challenger) kept from being written is written then. The record's id is its rollout's: written once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from ..domain import kinds, semver, trials
from ..domain import policy as policy_domain
from ..domain.experiment import RolloutConfig
from ..domain.kinds import params as params_kind
from ..domain.windows import ms
from . import policies
from .ports import Store

UPDATER = policies.UPDATER


def _write(store: Store, rollout: dict[str, Any]) -> bool:
    pid = str(rollout["id"])
    challenger = store.policies.policy(pid, str(rollout["version"])) or {}
    champion = store.policies.policy(pid, str(rollout["champion"]))
    kind = kinds.kind_of(challenger).name if challenger else kinds.DEFAULT
    return store.experiments.create(trials.record(rollout, challenger, champion, kind))


def record_ended(store: Store, rollout_id: str) -> bool:
    """Record one canary that just ended; False when it is not an ended canary or already recorded."""
    rollout = store.rollouts.get(rollout_id)
    if not rollout or rollout.get("stage") != "canary" or rollout.get("status") in (None, "running"):
        return False
    return _write(store, {**rollout, "rolloutId": rollout_id})


def sync(store: Store, policy_id: str | None = None) -> int:
    """Record every ended canary that has no experiment yet; returns how many were written."""
    have = store.experiments.ids(policy_id)
    written = 0
    for rollout in store.rollouts.ended_canaries(policy_id):
        rid = str(rollout["rolloutId"])
        if rid not in have:
            written += _write(store, rollout)
    return written


def experiments(store: Store, policy_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    sync(store, policy_id)
    return store.experiments.recent(policy_id, limit)


def experiment(store: Store, experiment_id: str) -> dict[str, Any] | None:
    return store.experiments.get(experiment_id)


@dataclass
class Drafted:
    action: str  # drafted | skipped
    version: str | None
    reason: str
    started: bool = False


def _trial_doc(t: trials.Trial) -> dict[str, Any]:
    return {"experimentId": t.experiment_id, "params": t.params, "value": t.value, "n": t.n}


def tune(store: Store, active: dict[str, Any], rollout_cfg: RolloutConfig, auto_activate: bool,
         schedule_time: dt.datetime | None) -> Drafted:
    """One step of tuning by experiment: with no experiment running, draft the optimiser's next candidate
    (and, with ``autoActivatePolicies``, start its canary at ``experimentSplit``)."""
    policy_id, champion = str(active["id"]), str(active["version"])
    head = store.policies.head(policy_id)
    if head.rollout is not None:
        return Drafted("skipped", None, f"experiment {head.rollout.version} is running")
    versions = store.policies.versions(policy_id)
    waiting = [v for v in versions if v.get("status") == "draft" and v.get("createdBy") == UPDATER
               and v.get("basedOn") == champion]
    if waiting:  # proposed earlier but never started (learning was off, or no auto-activation)
        version = str(max(waiting, key=lambda v: semver.Version.parse(str(v["version"])))["version"])
        if not auto_activate:
            return Drafted("skipped", version, f"draft {version} waits for its experiment")
        start_experiment(store, policy_id, version, rollout_cfg.experiment_split, UPDATER, schedule_time)
        return Drafted("skipped", version, f"started the experiment of waiting draft {version}", started=True)
    space = params_kind.parse(active)
    sync(store, policy_id)
    done = store.experiments.recent(policy_id, limit=1_000_000)
    learned = trials.trials_of(done, space.search)
    # every earlier candidate counts as tried, also a draft an admin turned down before it reached traffic
    drafted = [v for v in versions if v.get("createdBy") == UPDATER]
    proposal = trials.propose(policy_id, space, learned, [v.get("params") or {} for v in drafted], len(drafted))
    if proposal is None:
        return Drafted("skipped", None, "nothing left to try: the search space is empty or exhausted")
    newest = max(semver.Version.parse(str(v["version"])) for v in versions)
    version = str(newest.bump_patch())
    doc = {
        "id": policy_id, "version": version, "kind": active.get("kind", kinds.DEFAULT), "status": "draft",
        "createdBy": UPDATER, "createdAt": ms(dt.datetime.now(dt.UTC)), "basedOn": champion,
        "notes": f"Experiment {len(done) + 1}: candidate from {len(learned)} trials",
        "params": proposal.params, "search": active.get("search") or {},
        "evidence": {"sampler": trials.SAMPLER, "seed": proposal.seed, "startupTrials": trials.STARTUP_TRIALS,
                     "experiments": len(done), "attempt": len(drafted),
                     "scheduleTime": ms(schedule_time) if schedule_time else None,
                     "trials": [_trial_doc(t) for t in proposal.trials]},
    }
    kinds.validate(doc)  # the optimiser stays inside the space; a broken space never reaches the store
    audit = {"actor": UPDATER, "action": "draft", "id": policy_id, "from": champion, "to": version,
             "reason": f"next candidate of {trials.SAMPLER} (seed {proposal.seed}) from {len(learned)} trials"}
    if not store.policies.create_version(doc, audit, require_learning=True):
        return Drafted("skipped", version, f"version {version} was created concurrently")
    if not auto_activate:
        return Drafted("drafted", version, "drafted; start its experiment with startCanary "
                                           "(autoActivatePolicies is off)")
    start_experiment(store, policy_id, version, rollout_cfg.experiment_split, UPDATER, schedule_time)
    return Drafted("drafted", version, f"drafted and started its experiment at split "
                                       f"{rollout_cfg.experiment_split}", started=True)


def start_experiment(store: Store, policy_id: str, version: str, split: float, actor: str,
                     at: dt.datetime | None = None) -> tuple[policy_domain.Transition | None, dict[str, Any] | None]:
    """A draft of a kind without an off-policy gate goes straight to canary, its arms compared from ``at``
    (the tuner's schedule time; an admin's call: now)."""
    now = ms(at or dt.datetime.now(dt.UTC))
    rollout_id = f"{policy_id}@{version}~{uuid.uuid4().hex[:8]}"
    return store.policies.apply_transition(
        policy_id,
        lambda head, status_of: policy_domain.plan_start_experiment(head, version, status_of, split, rollout_id,
                                                                    now),
        actor, extra_audit={"evidence": {"split": split, "gate": "none"}}, require_learning=True,
    )
