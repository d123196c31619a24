"""``ops_alerts`` for items a scheduled batch had to skip: one entry per distinct failure, counted."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .. import telemetry
from ..domain.errors import OpsError
from ..domain.windows import ms
from .ports import Store

log = logging.getLogger("opsloop.alerts")


def describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, OpsError) else str(exc)
    return f"{type(exc).__name__}: {message}"[:1000]


def quietly(work: Callable[[], object], what: str) -> None:
    """A bookkeeping write (run record, alert, last good config) that must never fail the batch or request."""
    try:
        work()
    except Exception as exc:
        log.error("could not %s: %r", what, exc)


def record_run(store: Store, kind: str, schedule_ms: int, items: list[dict[str, Any]],
               config_problems: Iterable[tuple[str, str]] = (), run_id: str | None = None) -> str:
    """Write the ``ops_runs`` record of a scheduled batch: its items, those that failed, config problems.

    ``run_id`` is the id the run's log lines carry (``telemetry.new_run_id``); a new one by default. Never
    fails the batch (the items are done by now): a store error here is only logged.
    """
    run_id = run_id or telemetry.new_run_id(kind, schedule_ms)
    failed = [i for i in items if i.get("outcome") == "error" or i.get("action") == "error" or i.get("error")]
    doc = {"kind": kind, "scheduleTime": schedule_ms, "status": "done", "items": items[:200],
           "itemCount": len(items), "failed": failed[:200], "failedCount": len(failed),
           "configErrors": [message for _, message in config_problems], "finishedAt": ms(dt.datetime.now(dt.UTC))}
    quietly(lambda: store.runs.record(run_id, doc), f"record the {kind} run")
    return run_id


def item_failed(store: Store, job: str, item: str, exc: BaseException) -> str:
    """Record that ``job`` skipped ``item`` because of ``exc``; returns the text recorded.

    The same kind of failure (exception type) of the same item on every run refreshes one alert (``count``,
    ``ts``, the latest ``error``) rather than adding one per run. Raising the alert never fails the batch:
    a store error here is only logged.
    """
    error = describe(exc)
    log.error("%s skipped %s: %s", job, item, error)
    key = hashlib.sha256(f"{job}\n{item}\n{type(exc).__name__}".encode()).hexdigest()[:20]
    alert = {"kind": "item_failed", "job": job, "item": item[:500], "error": error,
             "code": exc.code if isinstance(exc, OpsError) else None, "ts": ms(dt.datetime.now(dt.UTC))}
    quietly(lambda: store.alerts.note(f"failure~{key}", alert), f"record the alert for {item}")
    return error
