"""``scoreObservations`` and ``autoTunePolicies``: scheduled runs."""

from __future__ import annotations

from firebase_functions import logger, scheduler_fn

from ..services import drift, rollouts, scoring, tuning
from . import deps


def score(event: scheduler_fn.ScheduledEvent) -> None:
    """Score the backlog; an exception makes the run answer 500 so Cloud Scheduler retries it."""
    result = scoring.score_observations(deps.store(), event.schedule_time)
    logger.info(
        "scoreObservations finished",
        job=event.job_name, scheduleTime=event.schedule_time.isoformat(), leaseAcquired=result.lease_acquired,
        scored=result.scored, invalid=result.invalid, chunks=result.chunks, statsWritten=result.stats_written,
        cardsWritten=result.cards_written, cardsError=result.cards_error,
    )


def tune(event: scheduler_fn.ScheduledEvent) -> None:
    result = tuning.auto_tune(deps.store(), event.schedule_time)
    logger.info(
        "autoTunePolicies finished",
        job=event.job_name, enabled=result.enabled,
        outcomes=[o.__dict__ for o in result.outcomes],
    )


def evaluate(event: scheduler_fn.ScheduledEvent) -> None:
    """Drift checks for every component, then an evaluation of every running shadow and canary."""
    store = deps.store()
    drifts = drift.check_drift(store, event.schedule_time)
    outcomes = rollouts.evaluate_rollouts(store, event.schedule_time)
    logger.info(
        "evaluateRollouts finished",
        job=event.job_name, drift=[d.__dict__ for d in drifts], rollouts=[o.__dict__ for o in outcomes],
    )
