"""Metrics out and run ids in logs: the real services and scheduled handlers on the in-memory store, read
back through OpenTelemetry's in-memory reader; a failing exporter; every log line of a run."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from firebase_functions import scheduler_fn
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from opsloop import telemetry
from opsloop.domain.config import ScoringSettings
from opsloop.domain.errors import InvalidArgument
from opsloop.handlers import deps, log, schedules
from opsloop.services import drift, policies, rollouts, scoring
from opsloop.services.record import record_batch
from opsloop.services.routing import Router
from tests.emulator.test_rollouts import WORLD, WORSE, add_draft, send_traffic
from tests.fakes import MemoryStore, seeded_memory_store

ROOT = Path(__file__).resolve().parents[2]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture()
def store() -> MemoryStore:
    return seeded_memory_store()


@pytest.fixture()
def reader() -> Iterator[InMemoryMetricReader]:
    r = InMemoryMetricReader()
    telemetry.setup(readers=[r])
    yield r
    telemetry.reset()


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    """The data points of metric ``name``, by their sorted attributes."""
    data = reader.get_metrics_data()
    out: dict[tuple[tuple[str, Any], ...], Any] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out[tuple(sorted((p.attributes or {}).items()))] = p
    return out


def values(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {k: p.value for k, p in points(reader, name).items()}


def obs(n: int, component: str, prefix: str, ts: int | None = None, **extra: Any) -> list[dict[str, Any]]:
    ts = ts or int(now().timestamp() * 1000)
    return [{"id": f"{prefix}-{i}", "ts": ts, "component": component, "outcome": "success" if i % 4 else "failure",
             "durationMs": 100.0 + i, "costUsd": 0.002, **extra} for i in range(n)]


# ------------------------------------------------------------------------------------------ settings
def test_the_exporter_comes_from_the_environment() -> None:
    assert telemetry.Settings.from_env({}) == telemetry.Settings("none", 60.0, "opsloop")
    assert telemetry.Settings.from_env({"K_SERVICE": "scoreobservations"}).exporter == "gcp"
    assert telemetry.Settings.from_env({"K_SERVICE": "x", "FUNCTIONS_EMULATOR": "true"}).exporter == "none"
    assert telemetry.Settings.from_env({"K_SERVICE": "x", "FUNCTIONS_EMULATOR": "true",
                                        "OPSLOOP_METRICS_EXPORTER": "otlp"}).exporter == "otlp"
    assert telemetry.Settings.from_env({"K_SERVICE": "x", "OPSLOOP_METRICS_EXPORTER": "none"}).exporter == "none"
    assert telemetry.Settings.from_env({"OPSLOOP_METRICS_EXPORTER": " OTLP "}).exporter == "otlp"
    assert telemetry.Settings.from_env({"OPSLOOP_METRICS_INTERVAL_S": "300"}).interval_s == 300.0
    with pytest.raises(ValueError, match=r"OPSLOOP_METRICS_EXPORTER must be one of .* got 'prometheus'"):
        telemetry.Settings.from_env({"OPSLOOP_METRICS_EXPORTER": "prometheus"})
    for bad in ("1", "nan", "soon", "inf"):
        with pytest.raises(ValueError, match="OPSLOOP_METRICS_INTERVAL_S"):
            telemetry.Settings.from_env({"OPSLOOP_METRICS_INTERVAL_S": bad})


def test_a_bad_setting_is_told_once_and_leaves_metrics_off(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPSLOOP_METRICS_EXPORTER", "statsd")
    log.install()
    try:
        telemetry.setup()
        telemetry.rollback("manual")  # recorded into a provider that exports nothing
        telemetry.flush()
    finally:
        telemetry.reset()
        log.uninstall()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1 and "metrics setup failed" in lines[0]["message"] and "statsd" in lines[0]["message"]


def test_otlp_is_chosen_and_made_from_the_standard_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.invalid:4318")
    made = telemetry._exporter(telemetry.Settings("otlp"))
    assert made is not None
    exporter, resource = made
    assert type(exporter).__name__ == "OTLPMetricExporter"
    assert exporter._endpoint == "http://collector.invalid:4318/v1/metrics"  # type: ignore[attr-defined]
    assert resource.attributes["service.name"] == "opsloop"
    assert telemetry._exporter(telemetry.Settings("none")) is None


# ------------------------------------------------------------------------------------------- metrics
def test_observations_are_counted_by_component_and_result(store: MemoryStore, reader: InMemoryMetricReader) -> None:
    record_batch(store, {"observations": obs(3, "router:gpt-5", "a") + obs(2, "router:claude", "b")})
    record_batch(store, {"observations": obs(4, "router:gpt-5", "a")})  # a-0..a-2 again, a-3 new
    with pytest.raises(InvalidArgument):
        record_batch(store, {"observations": [*obs(2, "router:gpt-5", "c"), {"component": "x"}]})
    with pytest.raises(InvalidArgument):
        record_batch(store, "not an object")
    assert values(reader, "learn_observations_total") == {
        (("component", "router:gpt-5"), ("result", "created")): 4,
        (("component", "router:gpt-5"), ("result", "duplicate")): 3,
        (("component", "router:claude"), ("result", "created")): 2,
        (("component", "unknown"), ("result", "invalid")): 3 + 1,
    }


def test_a_scoring_run_records_rewards_lag_and_backlog(store: MemoryStore, reader: InMemoryMetricReader) -> None:
    record_batch(store, {"observations": obs(8, "router:gpt-5", "a") + obs(5, "router:claude", "b")})
    oldest = min(o.received_at for o in store.observations.after(store.observations.cursor(), now(), 100))
    at = now() + dt.timedelta(seconds=30)
    run = scoring.score_observations(store, at)
    assert run.scored == 13 and run.backlog == 0
    rewards = store.observations.rewards
    hist = points(reader, "learn_reward")
    assert set(hist) == {(("component", "router:gpt-5"),), (("component", "router:claude"),)}
    for comp, n in (("router:gpt-5", 8), ("router:claude", 5)):
        scores = [r["score"] for r in rewards.values() if r["component"] == comp]
        point = hist[(("component", comp),)]
        assert len(scores) == n and point.count == 1  # one value per component and run: the run's mean
        assert point.sum == pytest.approx(sum(scores) / n)
    [lag] = values(reader, "learn_scoring_lag_seconds").values()
    assert lag == pytest.approx((at - oldest).total_seconds(), abs=0.001)
    assert values(reader, "learn_backlog_size") == {(): 0}

    scoring.score_observations(store, at)  # nothing waits: no lag, and no reward recorded
    assert values(reader, "learn_scoring_lag_seconds") == {(): 0.0}
    assert points(reader, "learn_reward")[(("component", "router:claude"),)].count == 1


def test_a_run_out_of_budget_counts_what_it_left(store: MemoryStore, reader: InMemoryMetricReader) -> None:
    for batch in range(3):  # a batch commits at one receivedAt, and the count is by receivedAt
        record_batch(store, {"observations": obs(10, "router:gpt-5", f"a{batch}")})
    clock = iter([0.0, 0.0, 100.0])  # start, first chunk taken, then the budget is gone
    settings = ScoringSettings(chunk_size=10, safety_margin_ms=0, run_budget_s=50)
    run = scoring.score_observations(store, now(), settings=settings, monotonic=lambda: next(clock, 100.0))
    assert run.budget_exhausted and run.scored == 10
    assert run.backlog == 30 - run.scored and values(reader, "learn_backlog_size") == {(): 30 - run.scored}


def test_manual_and_safety_rollbacks_and_decisions(store: MemoryStore, reader: InMemoryMetricReader) -> None:
    store.configs.set("rollout", {"minSamples": 300, "minShadowSamples": 200, "guardrailMinSamples": 150,
                                  "safetyMinSamples": 100, "denyCanaryIfShadowWorse": False})
    add_draft(store, "1.0.1", WORSE)  # type: ignore[arg-type]
    router = Router(store.policies, ttl_s=0)
    send_traffic(store, router, 600, seed=1)  # type: ignore[arg-type]
    scoring.score_observations(store, now())
    rollouts.start_shadow(store, "router-core", "1.0.1", actor="alice")
    assert rollouts.evaluate_rollouts(store, now())[0].outcome == "continue"  # the shadow's estimate refreshed
    rollouts.start_canary(store, "router-core", "1.0.1", 0.5, actor="alice")
    send_traffic(store, router, 600, seed=6, world={**WORLD, "gpt-5": (0.1, 2600.0, 0.06)})  # type: ignore[arg-type]
    scoring.score_observations(store, now())
    [outcome] = rollouts.evaluate_rollouts(store, now())
    assert outcome.outcome == "rollback" and outcome.carried_out and "safety" in outcome.reason
    assert values(reader, "learn_decisions_total") == {
        (("carried_out", False), ("outcome", "continue"), ("stage", "shadow")): 1,
        (("carried_out", True), ("outcome", "rollback"), ("stage", "canary")): 1,
    }
    assert values(reader, "learn_rollbacks_total") == {(("kind", "safety"),): 1}

    policies.activate(store, "router-core", "1.0.1", "alice")
    policies.rollback(store, "router-core", None, "bob")
    assert values(reader, "learn_rollbacks_total") == {(("kind", "safety"),): 1, (("kind", "manual"),): 1}


def test_drift_alerts_are_counted_once_per_episode(store: MemoryStore, reader: InMemoryMetricReader) -> None:
    t = now()
    t_ms = int(t.timestamp() * 1000)

    def batch(prefix: str, n: int, ts: int, median: float) -> list[dict[str, Any]]:
        return [{"id": f"{prefix}-{i}", "component": "router:claude", "outcome": "success",
                 "durationMs": median * (0.8 + 0.4 * ((i * 37) % 100) / 100), "costUsd": 0.02,
                 "ts": ts - (i * 7919) % (50 * 60_000)} for i in range(n)]

    record_batch(store, {"observations": batch("base", 400, t_ms - 2 * 24 * 3600_000, 900)})
    record_batch(store, {"observations": batch("ok", 200, t_ms - 60_000, 900)})
    scoring.score_observations(store, t)
    assert drift.check_drift(store, t)[0].alerted == []
    record_batch(store, {"observations": batch("slow", 300, t_ms - 60_000, 2500)})
    scoring.score_observations(store, t)
    assert "latency" in drift.check_drift(store, t)[0].alerted
    assert drift.check_drift(store, t)[0].alerted == []  # the same episode
    counted = values(reader, "learn_drift_alerts_total")
    assert counted[(("component", "router:claude"), ("metric", "latency"))] == 1
    assert all(v == 1 and dict(k)["component"] == "router:claude" for k, v in counted.items())


# ----------------------------------------------------------------------------- best effort export
class Raising(MetricExporter):
    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.calls, self.delay_s = 0, delay_s

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.calls += 1
        time.sleep(self.delay_s)
        raise ConnectionError("monitoring.googleapis.com unreachable")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def event(job: str) -> scheduler_fn.ScheduledEvent:
    at = now().replace(second=0, microsecond=0)
    return scheduler_fn.ScheduledEvent(job_name=job, schedule_time=at - dt.timedelta(minutes=at.minute % 5))


@pytest.fixture()
def functions(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryStore]:
    """The scheduled handlers on the fake store, with their structured logging installed."""
    monkeypatch.setattr(deps, "store", lambda: store)
    log.install()
    yield store
    log.uninstall()
    telemetry.reset()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_failing_exporter_neither_fails_nor_stalls_a_run_and_is_told_once(
        functions: MemoryStore, capsys: pytest.CaptureFixture[str]) -> None:
    exporter, reader = Raising(), InMemoryMetricReader()
    telemetry.setup(readers=[reader], exporter=exporter)
    record_batch(functions, {"observations": obs(5, "router:gpt-5", "a")})
    schedules.score(event("score"))
    assert exporter.calls == 1  # the run's end exported (and failed)
    assert functions.observations.rewards  # the work is done
    assert values(reader, "learn_backlog_size") == {(): 0}  # other readers are unaffected
    telemetry._last_export = -1e9  # as if the 5 s between exports had passed
    schedules.tune(event("tune"))
    assert exporter.calls == 2
    told = [line for line in json_lines(capsys.readouterr().err) if "metrics export" in line.get("message", "")]
    assert len(told) == 1 and "best effort" in told[0]["message"] and "unreachable" in told[0]["message"]
    assert told[0]["severity"] == "ERROR" and told[0]["logger"] == "opsloop.telemetry"


def test_a_hanging_exporter_is_waited_for_a_bounded_time(functions: MemoryStore,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "FLUSH_WAIT_S", 0.2)
    exporter = Raising(delay_s=2.0)
    telemetry.setup(exporter=exporter)
    telemetry.rollback("manual")  # something to export
    started = time.monotonic()
    schedules.evaluate(event("evaluate"))
    assert time.monotonic() - started < 1.5 and exporter.calls == 1
    telemetry._last_export = -1e9
    schedules.evaluate(event("evaluate"))  # the first export still runs: no second one piles up behind it
    assert exporter.calls == 1
    assert telemetry._flushing is not None
    telemetry._flushing.join(5)  # (its one failure line goes to this test's output)


def test_requests_export_when_the_interval_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = Raising()
    telemetry.setup(telemetry.Settings("none", 60.0), exporter=exporter)
    try:
        telemetry.rollback("manual")
        telemetry.flush_if_due()
        telemetry.flush_if_due()  # within the interval: nothing
        assert exporter.calls == 1
        telemetry._last_export -= 61
        telemetry.flush_if_due()
        assert exporter.calls == 2
    finally:
        telemetry.reset()


def test_recording_never_raises(monkeypatch: pytest.MonkeyPatch, reader: InMemoryMetricReader) -> None:
    def broken() -> Any:
        raise RuntimeError("instrument gone")

    monkeypatch.setattr(telemetry, "_instruments", broken)
    telemetry.decision("promote", "canary", True)
    telemetry.scoring_run({"a": 1.0}, 3.0, 4)


# ------------------------------------------------------------------------------------------ run ids
def run_lines(captured: pytest.CaptureResult[str]) -> list[dict[str, Any]]:
    return json_lines(captured.out) + json_lines(captured.err)


@pytest.mark.parametrize("job", ["score", "tune", "evaluate"])
def test_every_log_line_of_a_scheduled_run_carries_its_run_id(
        functions: MemoryStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, job: str) -> None:
    record_batch(functions, {"observations": obs(5, "router:gpt-5", "a")})
    functions.configs.set("drift", {"latest": "sometimes"})  # a bad config document: a line from services
    if job == "evaluate":
        monkeypatch.setattr(drift, "check_drift", lambda *_: (_ for _ in ()).throw(RuntimeError("drift down")))
    capsys.readouterr()
    getattr(schedules, job)(event(job))
    lines = run_lines(capsys.readouterr())
    assert len(lines) >= 2 and any("finished" in line.get("message", "") for line in lines)
    [run_id] = {line.get("runId") for line in lines}
    assert run_id is not None and run_id.startswith({"score": "score-", "tune": "tune-", "evaluate": "evaluate-"}[job])
    assert run_id in functions.runs.runs  # the same id as the run's ops_runs document
    if job == "evaluate":
        assert any(line.get("logger") == "opsloop.alerts" and "drift down" in line["message"] for line in lines)
    assert telemetry.log_fields() == {}  # nothing leaks past the run


def test_a_failed_run_logs_its_run_id_and_still_raises(functions: MemoryStore, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_: Any, **__: Any) -> Any:
        raise ConnectionError("firestore unreachable")

    monkeypatch.setattr(rollouts, "evaluate_rollouts", down)
    with pytest.raises(ConnectionError):
        schedules.evaluate(event("evaluate"))
    [line] = run_lines(capsys.readouterr())
    assert line["message"] == "evaluateRollouts failed" and line["runId"].startswith("evaluate-")
    assert "firestore unreachable" in line["error"]


def test_a_refused_schedule_time_is_logged_with_the_run_id(functions: MemoryStore,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    far = scheduler_fn.ScheduledEvent(job_name="score", schedule_time=now() + dt.timedelta(days=3))
    schedules.score(far)
    [line] = run_lines(capsys.readouterr())
    assert line["message"] == "scoreObservations refused" and line["runId"].startswith("score-")
