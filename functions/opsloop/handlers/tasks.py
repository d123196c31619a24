"""``scoreShard``: a task worker scoring one shard (``services/scoring.score_shard``).

``scoreObservations`` enqueues one task per shard with observations waiting when the shards are handed
to task workers (``dispatch_mode``); otherwise it scores them itself, a thread each.
"""

from __future__ import annotations

import os
import re
from typing import Any

from firebase_functions import https_fn

from .. import telemetry
from ..services import scoring
from . import deps, log

_KEY = re.compile(r"[1-9][0-9]?-[0-9]{1,2}")


def dispatch_mode() -> str:
    """``OPSLOOP_SHARD_DISPATCH``: ``tasks`` or ``inline``. Default: ``tasks`` when deployed (Cloud Run's
    ``K_SERVICE`` outside the emulator) or a Cloud Tasks emulator is named, else ``inline``."""
    mode = os.environ.get("OPSLOOP_SHARD_DISPATCH", "").strip().lower()
    if mode in ("tasks", "inline"):
        return mode
    deployed = "K_SERVICE" in os.environ and os.environ.get("FUNCTIONS_EMULATOR") != "true"
    return "tasks" if deployed or os.environ.get("CLOUD_TASKS_EMULATOR_HOST") else "inline"


def dispatcher() -> scoring.Dispatch | None:
    if dispatch_mode() != "tasks":
        return None
    from ..store.tasks import CloudTasksDispatch

    return CloudTasksDispatch()


def score_shard(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    """Score the shard the task names; a malformed task is refused (INVALID_ARGUMENT: not retried by
    Cloud Tasks' callers, nothing written)."""
    data = req.data if isinstance(req.data, dict) else {}
    shard, cap = data.get("shard"), data.get("capMs")
    if not isinstance(shard, str) or not _KEY.fullmatch(shard) or not (cap is None or type(cap) is int):
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.INVALID_ARGUMENT,
                                  "a scoreShard task needs {shard: 'K-i', capMs: int | null}")
    log.install()
    run_id = telemetry.new_run_id("score-shard", int(data.get("scheduleTime") or 0))
    with telemetry.run_context(runId=run_id):
        try:
            result = scoring.score_shard(deps.store(), shard, cap, run_id=run_id)
            log.info("scoreShard finished", shard=shard, leaseAcquired=result.lease_acquired,
                     scored=result.scored, invalid=result.invalid, chunks=result.chunks,
                     budgetExhausted=result.budget_exhausted, backlog=result.backlog)
        finally:
            telemetry.flush()
    return {"shard": shard, "scored": result.scored, "leaseAcquired": result.lease_acquired,
            "budgetExhausted": result.budget_exhausted}
