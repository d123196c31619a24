"""Handing scoring shards to the ``scoreShard`` task queue (Cloud Tasks, or the emulator's)."""

from __future__ import annotations

import logging

from firebase_admin import App, functions
from firebase_admin import exceptions as fb_exceptions

from ..domain import shards as shard_domain
from ..domain.shards import Job

log = logging.getLogger("opsloop.tasks")

QUEUE = "scoreShard"
_MISREAD_ANSWER = "Invalid resource name format."  # firebase_admin.functions, parsing the created task's name


class CloudTasksDispatch:
    """One task per shard job; the task id names the shard and the schedule time, so a retried schedule
    does not enqueue it twice (Cloud Tasks refuses a known id; the shard's lease would keep two apart
    anyway). A job that cannot be enqueued (no queue, Cloud Tasks down) is not in the keys returned: the
    scheduled run scores it itself."""

    def __init__(self, queue: str = QUEUE, location: str = "us-central1", app: App | None = None) -> None:
        self.queue = f"locations/{location}/functions/{queue}"
        self.app = app

    def __call__(self, jobs: list[Job], schedule_ms: int) -> list[str]:
        handed: list[str] = []
        queue = functions.task_queue(self.queue, app=self.app)
        for job in jobs:
            key = shard_domain.label(job.shard)
            task_id = f"score-{key}-{schedule_ms}"
            try:
                # the body a task-queue function reads is a callable's: {"data": ...} (the Python Admin SDK
                # sends what it is given as it is)
                queue.enqueue({"data": {"shard": job.shard, "capMs": job.cap_ms, "scheduleTime": schedule_ms}},
                              functions.TaskOptions(task_id=task_id, dispatch_deadline_seconds=600))
            except fb_exceptions.AlreadyExistsError:
                log.info("task %s is queued already", task_id)  # a retried schedule time
            except ValueError as exc:
                if str(exc) != _MISREAD_ANSWER:
                    log.warning("could not enqueue %s: %r", task_id, exc)
                    continue
                # created: the SDK raises this only while reading a 2xx answer, and firebase-tools' emulator
                # answers a named task with its name as sent, from which the SDK (7.7) cuts a first "/" that
                # only the emulator's generated names have
                log.debug("task %s queued (the SDK misread the emulator's answer)", task_id)
            except fb_exceptions.FirebaseError as exc:  # the caller scores it itself
                log.warning("could not enqueue %s: %r", task_id, exc)
                continue
            handed.append(key)
        return handed
