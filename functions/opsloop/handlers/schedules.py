"""``scoreObservations``, ``autoTunePolicies`` and ``evaluateRollouts``: scheduled runs.

Cloud Scheduler's ``X-CloudScheduler-ScheduleTime`` is read by firebase_functions; a time without a
timezone is taken as UTC (as Cloud Scheduler means it), and a time too far ahead of the clock is refused:
logged with its code, nothing written, answered 2xx so the scheduler does not retry a bad clock's call.
A systemic failure (Firestore unreachable) still raises, so the scheduler retries it.

Each run has a run id (its ``ops_runs`` document) that every log line of the run carries as ``runId``
(``log``), and exports its metrics at its end (``telemetry.flush``): the instance may be frozen after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from firebase_functions import scheduler_fn

from .. import telemetry
from ..domain.errors import InvalidArgument
from ..domain.windows import ms
from ..services import alerts, drift, events, learning, retrain, rollouts, scoring, tuning
from . import deps, log, tasks


def schedule_time(event: scheduler_fn.ScheduledEvent) -> dt.datetime:
    """The event's schedule time, timezone-aware (naive times are UTC)."""
    value = event.schedule_time
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@contextmanager
def _run(job: str, kind: str, event: scheduler_fn.ScheduledEvent) -> Iterator[str]:
    """A scheduled run: its run id, on every log line within; an unexpected failure logged with it (and
    raised, so the scheduler retries); the run's metrics exported at the end, whatever happened."""
    log.install()
    run_id = telemetry.new_run_id(kind, ms(schedule_time(event)))
    with telemetry.run_context(runId=run_id):
        try:
            yield run_id
        except Exception as exc:
            log.error(f"{job} failed", job=event.job_name, error=repr(exc))
            raise
        finally:
            telemetry.flush()


def _refused(job: str, event: scheduler_fn.ScheduledEvent, work: Callable[[dt.datetime], Any]) -> Any:
    """Run ``work`` at the event's schedule time; a refused schedule time is logged, not retried."""
    at = schedule_time(event)
    try:
        return work(at)
    except InvalidArgument as exc:
        log.error(f"{job} refused", job=event.job_name, scheduleTime=at.isoformat(), code=exc.code,
                  error=exc.message)
        return None


def score(event: scheduler_fn.ScheduledEvent) -> None:
    """Score the backlog; an unexpected exception answers 500 so Cloud Scheduler retries the run.

    Then event-driven tuning (``tuning.tune_on_change``): a policy one of whose models' change test has
    a new answer is tuned now, not at the next hourly run. A failure there is recorded (``ops_alerts``)
    and does not fail the scoring run, whose work is done.
    """
    with _run("scoreObservations", "score", event) as run_id:
        _score(event, run_id)


def _score(event: scheduler_fn.ScheduledEvent, run_id: str) -> None:
    result = _refused("scoreObservations", event,
                      lambda at: scoring.score_observations(deps.store(), at, run_id=run_id,
                                                            dispatch=tasks.dispatcher()))
    if result is None:
        return
    tuned: list[dict[str, Any]] = []
    if result.lease_acquired:
        try:
            tuned = [o.__dict__ for o in tuning.tune_on_change(deps.store(), schedule_time(event)).outcomes]
        except Exception as exc:
            alerts.item_failed(deps.store(), "scoreObservations.tuneOnChange", "all policies", exc)
    log.info(
        "scoreObservations finished",
        job=event.job_name, scheduleTime=result.schedule_ms, leaseAcquired=result.lease_acquired,
        scored=result.scored, invalid=result.invalid, chunks=result.chunks, statsWritten=result.stats_written,
        cardsWritten=result.cards_written, cardsError=result.cards_error, budgetExhausted=result.budget_exhausted,
        configErrors=result.config_errors, backlog=result.backlog, tunedOnChange=tuned,
        shards=result.shards, dispatched=result.dispatched,
    )


def tune(event: scheduler_fn.ScheduledEvent) -> None:
    with _run("autoTunePolicies", "tune", event) as run_id:
        result = _refused("autoTunePolicies", event, lambda at: tuning.auto_tune(deps.store(), at, run_id=run_id))
        if result is None:
            return
        log.info(
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
    with _run("evaluateRollouts", "evaluate", event) as run_id:
        _evaluate(event, run_id)


def _evaluate(event: scheduler_fn.ScheduledEvent, run_id: str) -> None:
    store = deps.store()
    outcomes = _refused("evaluateRollouts", event, lambda at: rollouts.evaluate_rollouts(store, at, run_id=run_id))
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
    log.info(
        "evaluateRollouts finished",
        job=event.job_name, drift=[d.__dict__ for d in drifts], rollouts=[o.__dict__ for o in outcomes],
        retrain=[r.__dict__ for r in retrains], learningRecords=learned,
    )


def deliver(event: scheduler_fn.ScheduledEvent) -> None:
    """The loop's events (drift, safety rollbacks, promotions, drafts awaiting approval, config errors, failed
    runs) to Pub/Sub and the webhook of ``config/events`` (``services/events``)."""
    with _run("deliverEvents", "events", event) as run_id:
        result = _refused("deliverEvents", event,
                          lambda at: events.deliver(deps.store(), deps.event_sinks, at, run_id=run_id))
        if result is None:
            return
        log.info("deliverEvents finished", job=event.job_name, enabled=result.enabled,
                 leaseAcquired=result.lease_acquired, found=result.found, delivered=result.delivered,
                 retried=result.retried, dead=result.dead, errors=result.errors)
