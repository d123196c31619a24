"""Metrics out (OpenTelemetry) and the run id every log line of a scheduled run carries.

Metrics are best effort: the work they describe is done when they are recorded. A failing exporter (or a
bug here) never fails or slows a run or a request: recording never raises, an export runs in its own thread
and is waited for at most ``FLUSH_WAIT_S``, and the first failure of a process is logged once
(``opsloop.telemetry``), the rest silently.

The exporter is chosen from the environment once per process (``Settings.from_env``), and the meter
provider is made on first use. Cloud Functions may freeze an instance after its response, so nothing
exports in the background: a scheduled run exports at its end (``flush``), a request when the last export
is ``OPSLOOP_METRICS_INTERVAL_S`` old (``flush_if_due``). Tests give a reader (``setup``).

Imports nothing of ours: domain, services and handlers may all record.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

log = logging.getLogger("opsloop.telemetry")

Exporter = Literal["gcp", "otlp", "none"]
EXPORTERS: tuple[Exporter, ...] = ("gcp", "otlp", "none")
FLUSH_WAIT_S = 3.0  # the longest a run or request waits for an export; a slower one finishes in the background
MIN_EXPORT_GAP_S = 5.0  # Cloud Monitoring takes at most one point per time series every 5 s
METER = "opsloop"

# learn_reward buckets: rewards are bounded by the reward config's weights, mostly within [-1, 1]
REWARD_BUCKETS = (-1.0, -0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class Settings:
    """Where metrics go: ``OPSLOOP_METRICS_EXPORTER`` and ``OPSLOOP_METRICS_INTERVAL_S``."""

    exporter: Exporter = "none"
    interval_s: float = 60.0
    service: str = "opsloop"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The exporter named, else ``gcp`` on Cloud Functions / Cloud Run (``K_SERVICE`` set), else ``none``.

        The Firebase emulator sets ``K_SERVICE`` too, and ``FUNCTIONS_EMULATOR``: there the default is
        ``none``, so a local run never writes to a real project's Monitoring.

        A bad value is an error (ValueError naming it), not a silent default: ``setup`` turns it into one
        log line and no metrics.
        """
        env = os.environ if env is None else env
        service = env.get("K_SERVICE", "")
        deployed = bool(service) and env.get("FUNCTIONS_EMULATOR", "").lower() != "true"
        name = env.get("OPSLOOP_METRICS_EXPORTER", "").strip().lower() or ("gcp" if deployed else "none")
        if name not in EXPORTERS:
            raise ValueError(f"OPSLOOP_METRICS_EXPORTER must be one of {list(EXPORTERS)}, got {name!r}")
        raw = env.get("OPSLOOP_METRICS_INTERVAL_S", "").strip() or "60"
        try:
            interval = float(raw)
        except ValueError:
            interval = math.nan
        if not (math.isfinite(interval) and interval >= MIN_EXPORT_GAP_S):
            raise ValueError(f"OPSLOOP_METRICS_INTERVAL_S must be a number of seconds >= {MIN_EXPORT_GAP_S:g}, "
                             f"got {raw!r}")
        exporter: Exporter = "gcp" if name == "gcp" else "otlp" if name == "otlp" else "none"
        return cls(exporter, interval, service or "opsloop")


# ------------------------------------------------------------------------------------------ export
class _Told:
    """The operator is told of the first failure of a process; later ones are not logged again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.told = False

    def failure(self, what: str, exc: BaseException | str) -> None:
        with self._lock:
            if self.told:
                return
            self.told = True
        log.error("metrics %s failed (%s); metrics are best effort and the loop goes on; later metrics failures "
                  "of this process are not logged", what, exc if isinstance(exc, str) else repr(exc))


_told = _Told()


class BestEffortExporter(MetricExporter):
    """An exporter that never raises: a failure is reported once and answered FAILURE."""

    def __init__(self, inner: MetricExporter, name: str) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner, self.name = inner, name

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _told.failure(f"export to {self.name}", exc)
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            _told.failure(f"export to {self.name}", "the exporter answered FAILURE")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception as exc:
            _told.failure(f"flush of {self.name}", exc)
            return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        try:
            self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _told.failure(f"shutdown of {self.name}", exc)


def _exporter(settings: Settings) -> tuple[MetricExporter, Resource] | None:
    """The configured exporter (imported only when chosen: the GCP client is heavy) and the resource."""
    resource = Resource.create({"service.name": settings.service})
    if settings.exporter == "gcp":
        from opentelemetry.exporter.cloud_monitoring import CloudMonitoringMetricsExporter
        from opentelemetry.resourcedetector.gcp_resource_detector import GoogleCloudResourceDetector

        # instances of a function write their own series (the detector's instance id and a unique label),
        # since Cloud Monitoring refuses two writers of one series
        resource = resource.merge(GoogleCloudResourceDetector(raise_on_error=False).detect())
        return CloudMonitoringMetricsExporter(add_unique_identifier=True), resource
    if settings.exporter == "otlp":
        # OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/metrics), OTEL_EXPORTER_OTLP_HEADERS etc. are read by the exporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(), resource
    return None


# ------------------------------------------------------------------------------------- instruments
class _Instruments:
    """The meter provider and the loop's instruments (one set per provider)."""

    def __init__(self, provider: MeterProvider, exporting: bool, interval_s: float) -> None:
        self.provider, self.exporting, self.interval_s = provider, exporting, interval_s
        meter = provider.get_meter(METER)
        self.observations = meter.create_counter(
            "learn_observations_total", unit="{observation}",
            description="Observations recordObservation was given, by component and result "
                        "(created, duplicate, invalid)")
        self.reward = meter.create_histogram(
            "learn_reward", unit="1",
            description="Per component and scoring run: the mean reward of the observations the run scored",
            explicit_bucket_boundaries_advisory=REWARD_BUCKETS)
        self.decisions = meter.create_counter(
            "learn_decisions_total", unit="{decision}",
            description="Rollout evaluations by outcome (continue, promote, rollback, inconclusive, error), "
                        "stage and whether the decision was carried out")
        self.rollbacks = meter.create_counter(
            "learn_rollbacks_total", unit="{rollback}",
            description="Policy rollbacks carried out, by kind (manual, safety, canary)")
        self.drift_alerts = meter.create_counter(
            "learn_drift_alerts_total", unit="{alert}",
            description="Drift alerts raised (one per component, metric and drift episode)")
        self.scoring_lag = meter.create_gauge(
            "learn_scoring_lag_seconds", unit="s",
            description="At a scoring run's start: its schedule time minus the receivedAt of the oldest "
                        "observation not yet scored (0 when none waits)")
        self.backlog = meter.create_gauge(
            "learn_backlog_size", unit="{observation}",
            description="At a scoring run's end: observations ingested before its safety margin and not "
                        "yet scored")


_lock = threading.Lock()
_init_lock = threading.Lock()
_state: _Instruments | None = None
_last_export = -math.inf
_flushing: threading.Thread | None = None


def setup(settings: Settings | None = None, readers: Sequence[MetricReader] = (),
          exporter: MetricExporter | None = None) -> None:
    """(Re)make the meter provider, with ``readers`` (tests: an ``InMemoryMetricReader``) and an exporter:
    ``exporter`` if given (tests), else the one ``settings`` name (default: the environment's). A bad
    setting or an exporter that cannot be made is logged once and leaves a provider that exports nothing.
    """
    global _state, _last_export, _flushing
    _told.told = False
    resource = Resource.create({"service.name": "opsloop"})
    chosen, name, interval = list(readers), "test", Settings.interval_s
    try:
        if exporter is None and not readers:
            settings = settings or Settings.from_env()
            name, interval = settings.exporter, settings.interval_s
            made = _exporter(settings)
            if made is not None:
                exporter, resource = made
    except Exception as exc:
        _told.failure("setup", exc)
    if exporter is not None:
        # no background thread: an instance may be frozen between requests; exports happen on flush
        chosen.append(PeriodicExportingMetricReader(BestEffortExporter(exporter, name),
                                                    export_interval_millis=math.inf))
    state = _Instruments(MeterProvider(metric_readers=chosen, resource=resource), exporter is not None, interval)
    with _lock:
        old, _state = _state, state
        _last_export, _flushing = -math.inf, None  # an export of the old provider does not hold up the new one
    if old is not None:
        _quietly(lambda: old.provider.shutdown(timeout_millis=FLUSH_WAIT_S * 1000))


def reset() -> None:
    """Forget the provider (tests); the next record makes one from the environment again."""
    global _state
    with _lock:
        old, _state = _state, None
    if old is not None:
        _quietly(lambda: old.provider.shutdown(timeout_millis=FLUSH_WAIT_S * 1000))


def _instruments() -> _Instruments:
    state = _state
    if state is None:
        with _init_lock:
            if _state is None:
                setup()
        state = _state
    assert state is not None
    return state


def _quietly(work: Callable[[], object]) -> None:
    try:
        work()
    except Exception as exc:
        _told.failure("recording", exc)


P = ParamSpec("P")


def _best_effort(record: Callable[P, None]) -> Callable[P, None]:
    """A recording function that never raises (its failure is reported once)."""

    def wrapped(*args: P.args, **kwargs: P.kwargs) -> None:
        _quietly(lambda: record(*args, **kwargs))

    wrapped.__doc__, wrapped.__name__ = record.__doc__, record.__name__
    return wrapped


# ---------------------------------------------------------------------------------------- recording
ObservationResult = Literal["created", "duplicate", "invalid"]
RollbackKind = Literal["manual", "safety", "canary"]


@_best_effort
def observations(counts: Mapping[tuple[str, ObservationResult], int]) -> None:
    """``learn_observations_total``: per (component, result) how many observations a batch had."""
    counter = _instruments().observations
    for (component, result), n in counts.items():
        if n:
            counter.add(n, {"component": component, "result": result})


@_best_effort
def scoring_run(rewards: Mapping[str, float], lag_s: float | None, backlog: int | None) -> None:
    """A scoring run's figures: ``learn_reward`` (mean per component), ``learn_scoring_lag_seconds``,
    ``learn_backlog_size``; a figure the run does not know (None) is not recorded."""
    inst = _instruments()
    for component, mean in rewards.items():
        if math.isfinite(mean):
            inst.reward.record(mean, {"component": component})
    if lag_s is not None:
        inst.scoring_lag.set(max(0.0, lag_s))
    if backlog is not None:
        inst.backlog.set(backlog)


@_best_effort
def decision(outcome: str, stage: str, carried_out: bool) -> None:
    """``learn_decisions_total``: one rollout evaluation's outcome."""
    _instruments().decisions.add(1, {"outcome": outcome, "stage": stage, "carried_out": carried_out})


@_best_effort
def rollback(kind: RollbackKind) -> None:
    """``learn_rollbacks_total``: a rollback carried out."""
    _instruments().rollbacks.add(1, {"kind": kind})


@_best_effort
def drift_alerts(component: str, metrics: Sequence[str]) -> None:
    """``learn_drift_alerts_total``: the alerts one component's drift check raised."""
    counter = _instruments().drift_alerts
    for metric in metrics:
        counter.add(1, {"component": component, "metric": metric})


# ------------------------------------------------------------------------------------------- flush
def flush() -> None:
    """Export now (the end of a scheduled run), unless an export ran less than 5 s ago."""
    _export(MIN_EXPORT_GAP_S)


def flush_if_due() -> None:
    """Export when the last export is ``OPSLOOP_METRICS_INTERVAL_S`` old (the end of a request)."""
    _export(None)


def _export(min_gap_s: float | None) -> None:
    """Collect and export in a thread, waiting for it at most ``FLUSH_WAIT_S``; one export at a time."""
    global _last_export, _flushing
    state = _state
    if state is None or not state.exporting:
        return
    now = time.monotonic()
    with _lock:
        gap = min_gap_s if min_gap_s is not None else state.interval_s
        if now - _last_export < gap or (_flushing is not None and _flushing.is_alive()):
            return
        _last_export = now
        thread = threading.Thread(target=_quietly, args=(lambda: state.provider.force_flush(10_000),),
                                  name="opsloop-metrics", daemon=True)
        _flushing = thread
    thread.start()
    thread.join(FLUSH_WAIT_S)


# ---------------------------------------------------------------------------------------- run id
_log_fields: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("opsloop_log_fields",
                                                                                        default=())


def new_run_id(kind: str, schedule_ms: int) -> str:
    """A scheduled run's id: its ``ops_runs`` document and the ``runId`` of its log lines."""
    return f"{kind}-{schedule_ms}-{uuid.uuid4().hex[:8]}"


@contextmanager
def run_context(**fields: str) -> Iterator[None]:
    """Within it, every structured log line carries ``fields`` (a run's ``runId``)."""
    token = _log_fields.set(tuple({**dict(_log_fields.get()), **fields}.items()))
    try:
        yield
    finally:
        _log_fields.reset(token)


def log_fields() -> dict[str, str]:
    """The fields of the run in progress (empty outside a run)."""
    return dict(_log_fields.get())
