"""``scoreObservations``, ``autoTunePolicies`` and ``evaluateRollouts``: scheduled runs.

Cloud Scheduler's ``X-CloudScheduler-ScheduleTime`` is read by firebase_functions; a time without a
timezone is taken as UTC (as Cloud Scheduler means it), and a time too far ahead of the clock is refused:
logged with its code, nothing written, answered 2xx so the scheduler does not retry a bad clock's call.
A systemic failure (Firestore unreachable) still raises, so the scheduler retries it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from firebase_functions import logger, scheduler_fn

from ..domain.errors import InvalidArgument
from ..services import alerts, drift, events, learning, retrain, rollouts, scoring, tuning
from . import deps


def schedule_time(event: scheduler_fn.ScheduledEvent) -> dt.datetime:
    """The event's schedule time, timezone-aware (naive times are UTC)."""
    value = event.schedule_time
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _refused(job: str, event: scheduler_fn.ScheduledEvent, work: Callable[[dt.datetime], Any]) -> Any:
    """Run ``work`` at the event's schedule time; a refused schedule time is logged, not retried."""
    at = schedule_time(event)
    try:
        return work(at)
    except InvalidArgument as exc:
        logger.error(f"{job} refused", job=event.job_name, scheduleTime=at.isoformat(), code=exc.code,
                     error=exc.message)
        return None


def score(event: scheduler_fn.ScheduledEvent) -> None:
    """Score the backlog; an unexpected exception answers 500 so Cloud Scheduler retries the run.

    Then event-driven tuning (``tuning.tune_on_change``): a policy one of whose models' change test has
    a new answer is tuned now, not at the next hourly run. A failure there is recorded (``ops_alerts``)
    and does not fail the scoring run, whose work is done.
    """
    result = _refused("scoreObservations", event, lambda at: scoring.score_observations(deps.store(), at))
    if result is None:
        return
    tuned: list[dict[str, Any]] = []
    if result.lease_acquired:
        try:
            tuned = [o.__dict__ for o in tuning.tune_on_change(deps.store(), schedule_time(event)).outcomes]
        except Exception as exc:
            alerts.item_failed(deps.store(), "scoreObservations.tuneOnChange", "all policies", exc)
    logger.info(
        "scoreObservations finished",
        job=event.job_name, scheduleTime=result.schedule_ms, leaseAcquired=result.lease_acquired,
        scored=result.scored, invalid=result.invalid, chunks=result.chunks, statsWritten=result.stats_written,
        cardsWritten=result.cards_written, cardsError=result.cards_error, budgetExhausted=result.budget_exhausted,
        configErrors=result.config_errors, tunedOnChange=tuned,
    )


def tune(event: scheduler_fn.ScheduledEvent) -> None:
    result = _refused("autoTunePolicies", event, lambda at: tuning.auto_tune(deps.store(), at))
    if result is None:
        return
    logger.info(
        "autoTunePolicies finished",
        job=event.job_name, enabled=result.enabled, configErrors=result.config_errors,
        outcomes=[o.__dict__ for o in result.outcomes],
    )


def evaluate(event: scheduler_fn.ScheduledEvent) -> None:
    """Every running canary (safety rollbacks first) and shadow, then drift checks, then components below
    their reward's retrain threshold (``services/retrain``), then the policies' learning records
    (``services/learning``), each on its own.

    Drift raises exploration floors but never gates a rollback, so it runs after the rollouts, and a
    failure in it is recorded (``ops_alerts``) without failing the run.
    """
    store = deps.store()
    outcomes = _refused("evaluateRollouts", event, lambda at: rollouts.evaluate_rollouts(store, at))
    if outcomes is None:
        return
    try:
        drifts = drift.check_drift(store, schedule_time(event))
    except Exception as exc:
        alerts.item_failed(store, "evaluateRollouts.drift", "all components", exc)
        drifts = []
    try:
        retrains = retrain.check_retrain(store, schedule_time(event))
    except Exception as exc:
        alerts.item_failed(store, "evaluateRollouts.retrain", "all components", exc)
        retrains = []
    try:
        learned = len(learning.refresh(store, schedule_time(event)))
    except Exception as exc:
        alerts.item_failed(store, "evaluateRollouts.learning", "all policies", exc)
        learned = 0
    logger.info(
        "evaluateRollouts finished",
        job=event.job_name, drift=[d.__dict__ for d in drifts], rollouts=[o.__dict__ for o in outcomes],
        retrain=[r.__dict__ for r in retrains], learningRecords=learned,
    )


def deliver(event: scheduler_fn.ScheduledEvent) -> None:
    """The loop's events (drift, safety rollbacks, promotions, drafts awaiting approval, config errors, failed
    runs) to Pub/Sub and the webhook of ``config/events`` (``services/events``)."""
    result = _refused("deliverEvents", event,
                      lambda at: events.deliver(deps.store(), deps.event_sinks, at))
    if result is None:
        return
    logger.info("deliverEvents finished", job=event.job_name, runId=result.run_id, enabled=result.enabled,
                leaseAcquired=result.lease_acquired, found=result.found, delivered=result.delivered,
                retried=result.retried, dead=result.dead, errors=result.errors)
