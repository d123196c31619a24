"""Deployed Cloud Functions. Names here are the deployed names; the work lives in ``opsloop``.

Callables use ``callables.on_call``: ``https_fn.on_call`` behind a check of the request body.
"""

from typing import Any

from firebase_functions import https_fn, options, scheduler_fn, tasks_fn
from flask import Request, Response

from opsloop.handlers import callables, http, schedules, tasks
from opsloop.store.client import ensure_firebase_app

# Callables verify the caller's ID token before our code runs, so the firebase_admin app must exist
# at import. It is cheap: credentials are resolved on first use.
ensure_firebase_app()

options.set_global_options(region="us-central1", max_instances=20)


@https_fn.on_request(memory=options.MemoryOption.MB_512)
def recordObservation(req: Request) -> Response:
    return http.record_observation(req)


@https_fn.on_request()
def assignPolicy(req: Request) -> Response:
    return http.assign_policy(req)


@https_fn.on_request()
def recordFeedback(req: Request) -> Response:
    return http.record_feedback(req)


@scheduler_fn.on_schedule(schedule="every 5 minutes", timeout_sec=540, memory=options.MemoryOption.GB_1)
def scoreObservations(event: scheduler_fn.ScheduledEvent) -> None:
    schedules.score(event)


# One task per scoring shard with a backlog (config/scoring.shards > 1), enqueued by scoreObservations.
@tasks_fn.on_task_dispatched(
    retry_config=options.RetryConfig(max_attempts=5, min_backoff_seconds=30),
    rate_limits=options.RateLimits(max_concurrent_dispatches=64),
    timeout_sec=540, memory=options.MemoryOption.GB_1,
)
def scoreShard(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return tasks.score_shard(req)


@scheduler_fn.on_schedule(schedule="every 60 minutes", timeout_sec=300)
def autoTunePolicies(event: scheduler_fn.ScheduledEvent) -> None:
    schedules.tune(event)


@scheduler_fn.on_schedule(schedule="every 1 minutes", timeout_sec=120)
def deliverEvents(event: scheduler_fn.ScheduledEvent) -> None:
    schedules.deliver(event)


@callables.on_call()
def activatePolicy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.activate_policy(req)


@callables.on_call()
def rollbackPolicy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.rollback_policy(req)


@scheduler_fn.on_schedule(schedule="every 10 minutes", timeout_sec=300)
def evaluateRollouts(event: scheduler_fn.ScheduledEvent) -> None:
    schedules.evaluate(event)


@callables.on_call()
def startShadow(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.start_shadow(req)


@callables.on_call()
def startCanary(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.start_canary(req)


@callables.on_call()
def promotePolicy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.promote_policy(req)


@callables.on_call()
def rejectPolicy(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.reject_policy(req)


@callables.on_call()
def setLearningFlags(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.set_learning_flags(req)


@callables.on_call()
def previewRewardConfig(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return callables.preview_reward_config(req)
