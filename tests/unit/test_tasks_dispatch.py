"""The scoreShard dispatcher through the real Firebase Admin SDK, against a local HTTP server standing in for
the Cloud Tasks API (what ``CLOUD_TASKS_EMULATOR_HOST`` points the SDK at)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import firebase_admin
import pytest

from opsloop.domain.shards import Job
from opsloop.store.tasks import CloudTasksDispatch

UPPER = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


class TasksApi:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, int] = {}  # task id -> HTTP status to answer (default 200)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append((self.path, body))
                task_id = body["task"]["name"].rsplit("/", 1)[-1]
                status = api.answers.get(task_id, 200)
                answer = {"task": body["task"]} if status == 200 else {  # firebase-tools echoes the task as sent
                    "error": {"code": status, "message": "refused", "status": "ALREADY_EXISTS" if status == 409
                              else "PERMISSION_DENIED"}}
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TasksApi, firebase_admin.App]]:
    server = TasksApi()
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", server.host)
    app = firebase_admin.initialize_app(options={"projectId": "demo-opsloop"}, name=f"tasks-{uuid.uuid4().hex}")
    yield server, app
    firebase_admin.delete_app(app)
    server.server.shutdown()


def test_each_shard_becomes_one_task_whose_body_is_what_score_shard_reads(
    api: tuple[TasksApi, firebase_admin.App],
) -> None:
    server, app = api
    jobs = [Job("4-0", UPPER, None), Job("2-1", UPPER, 1_700_000_000_000)]
    assert CloudTasksDispatch(app=app)(jobs, 1_800_000_000_000) == ["4-0", "2-1"]
    paths = {path for path, _ in server.requests}
    assert paths == {"/projects/demo-opsloop/locations/us-central1/queues/scoreShard/tasks"}
    tasks = [body["task"] for _, body in server.requests]
    assert [t["name"].rsplit("/", 1)[-1] for t in tasks] == ["score-4-0-1800000000000", "score-2-1-1800000000000"]
    bodies = [json.loads(base64.b64decode(t["httpRequest"]["body"])) for t in tasks]
    assert bodies == [{"data": {"shard": "4-0", "capMs": None, "scheduleTime": 1_800_000_000_000}},
                      {"data": {"shard": "2-1", "capMs": 1_700_000_000_000, "scheduleTime": 1_800_000_000_000}}]
    assert tasks[0]["dispatchDeadline"] == "600s"


def test_a_task_queued_already_counts_as_handed_and_a_refused_one_is_left_to_the_run(
    api: tuple[TasksApi, firebase_admin.App],
) -> None:
    server, app = api
    server.answers = {"score-3-0-5": 409, "score-3-1-5": 403}
    jobs = [Job(f"3-{i}", UPPER, None) for i in range(3)]
    assert CloudTasksDispatch(app=app)(jobs, 5) == ["3-0", "3-2"]  # 3-1 (no IAM permission): the run scores it
