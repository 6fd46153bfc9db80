"""Prometheus metrics of the operator, and the small HTTP server for /metrics, /healthz and /readyz.

Per-task labels (``namespace``, ``task``) can be turned off for large installations: series then grow with
outcomes only, not with tasks. Nothing here talks to Kubernetes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

_M = TypeVar("_M", Counter, Histogram, Gauge)
OUTCOMES = ("Succeeded", "Failed", "Skipped", "Missed", "Replaced")
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, *, per_task: bool = True) -> None:
        # No `<name>_created` series next to every counter and histogram: a quarter fewer series per task,
        # and nothing in the dashboard or alerts reads them.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.per_task = per_task
        self.registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        task: Sequence[str] = ("namespace", "task") if per_task else ()
        r = self.registry
        self.runs = Counter("cronlet_runs_total", "Runs that ended, by outcome (Succeeded, Failed, Skipped, "
                            "Missed, Replaced).", [*task, "outcome"], registry=r)
        self.attempts = Counter("cronlet_attempts_total", "Attempts (executor Jobs) that finished, by outcome.",
                                [*task, "outcome"], registry=r)
        self.run_duration = Histogram("cronlet_run_duration_seconds", "From a run's first attempt start to its "
                                      "end, retries included.", list(task), buckets=DURATION_BUCKETS, registry=r)
        self.lag = Histogram("cronlet_schedule_lag_seconds", "From a run's due time to its Job being created.",
                             list(task), buckets=LAG_BUCKETS, registry=r)
        self.retries = Counter("cronlet_retries_total", "Retry attempts started.", list(task), registry=r)
        self.active = Gauge("cronlet_runs_active", "Unfinished runs (running or waiting to retry).", list(task),
                            registry=r)
        self.tasks = Gauge("cronlet_tasks", "ScheduledTasks by phase.", ["namespace", "phase"], registry=r)
        self.missed = Counter("cronlet_missed_runs_total", "Due runs not started (deadline passed or downtime).",
                              list(task), registry=r)
        self.skipped = Counter("cronlet_skipped_runs_total", "Due runs skipped by concurrencyPolicy Forbid.",
                               list(task), registry=r)
        self.api_errors = Counter("cronlet_api_errors_total", "Failed Kubernetes API calls, after retries.",
                                  ["verb", "resource"], registry=r)
        self.ready = Gauge("cronlet_operator_ready", "1 once the operator has listed its resources and "
                           "schedules.", registry=r)
        self.reconciles = Counter("cronlet_reconciles_total", "Reconcile passes over one task.", registry=r)
        if not per_task:
            self.start_series()

    def start_series(self, namespace: str = "", task: str = "") -> None:
        """Create a task's counters at 0, so that its first failure is an increase Prometheus can see."""
        labels = self.labels(namespace, task)
        for outcome in OUTCOMES:
            self.runs.labels(*labels, outcome)
        for outcome in ("Succeeded", "Failed"):
            self.attempts.labels(*labels, outcome)
        for counter in (self.retries, self.missed, self.skipped):
            self.child(counter, *labels)

    @staticmethod
    def child(metric: _M, *labels: str) -> _M:
        """The labelled child, or the metric itself when per-task labels are off (it then has no labels)."""
        return metric.labels(*labels) if labels else metric

    def labels(self, namespace: str, task: str) -> tuple[str, ...]:
        return (namespace, task) if self.per_task else ()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthState:
    def __init__(self) -> None:
        self.alive = True
        self.ready = False


def serve(*, metrics: Metrics, health: HealthState, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start the HTTP endpoint in a daemon thread and return the server (``shutdown()`` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                body, ctype, code = b"ok\n" if health.alive else b"not alive\n", "text/plain", 200 if health.alive \
                    else 503
            elif self.path.startswith("/readyz"):
                body, ctype = (b"ready\n", "text/plain") if health.ready else (b"not ready\n", "text/plain")
                code = 200 if health.ready else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="cronlet-http", daemon=True).start()
    return server
