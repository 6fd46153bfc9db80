"""Prometheus metrics of the operator, and their bookkeeping from each reconcile's plan.

Per-task labels (``namespace``, ``task``) are bounded: the first ``per_task_limit`` tasks seen get series of
their own (about 15 KiB of memory and 40 series each), every further task is counted under ``task="_other"``
of its namespace (no task name can start with ``_``). They can also be turned off: series then grow with
outcomes only, not with tasks. Nothing here talks to Kubernetes; ``health`` serves the registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

from cronlet._common import times
from cronlet._core.views import AttemptFinished, EventsDropped, Plan, RetryStarted, RunFinished

Key = tuple[str, str]

_M = TypeVar("_M", Counter, Histogram, Gauge)
OUTCOMES = ("Succeeded", "Failed", "Skipped", "Missed", "Replaced")
OTHER = "_other"  # the task label of tasks beyond the limit: DNS-1123 names never start with "_"
PER_TASK_LIMIT = 1000
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
EVENT_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, *, per_task: bool = True, per_task_limit: int = PER_TASK_LIMIT) -> None:
        # No `<name>_created` series next to every counter and histogram: a quarter fewer series per task,
        # and nothing in the dashboard or alerts reads them.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.per_task = per_task
        self.per_task_limit = per_task_limit  # 0: no limit
        self.registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        task: Sequence[str] = ("namespace", "task") if per_task else ()
        r = self.registry
        self.runs = Counter(
            "cronlet_runs_total",
            "Runs that ended, by outcome (Succeeded, Failed, Skipped, Missed, Replaced).",
            [*task, "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "cronlet_attempts_total",
            "Attempts (executor Jobs) that finished, by outcome.",
            [*task, "outcome"],
            registry=r,
        )
        self.run_duration = Histogram(
            "cronlet_run_duration_seconds",
            "From a run's first attempt start to its end, retries included.",
            list(task),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.lag = Histogram(
            "cronlet_schedule_lag_seconds",
            "From a run's due time to its Job being created.",
            list(task),
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.retries = Counter("cronlet_retries_total", "Retry attempts started.", list(task), registry=r)
        self.active = Gauge(
            "cronlet_runs_active", "Unfinished runs (running or waiting to retry).", list(task), registry=r
        )
        self.oldest_run = Gauge(
            "cronlet_oldest_run_start_time_seconds",
            "Start time (Unix seconds) of the oldest unfinished run; 0 when none is unfinished.",
            list(task),
            registry=r,
        )
        self.tasks = Gauge("cronlet_tasks", "ScheduledTasks by phase.", ["namespace", "phase"], registry=r)
        self.missed = Counter(
            "cronlet_missed_runs_total",
            "Due runs not started (deadline passed or downtime).",
            list(task),
            registry=r,
        )
        self.skipped = Counter(
            "cronlet_skipped_runs_total",
            "Due runs skipped by concurrencyPolicy Forbid.",
            list(task),
            registry=r,
        )
        self.api_errors = Counter(
            "cronlet_api_errors_total",
            "Failed Kubernetes API calls, after retries.",
            ["verb", "resource"],
            registry=r,
        )
        self.api_throttled = Counter(
            "cronlet_api_throttled_seconds",
            "Seconds API requests waited for the client-side rate limit (--kube-api-qps/--kube-api-burst), "
            "by priority (election, launch, bookkeeping).",
            ["priority"],
            registry=r,
        )
        self.ready = Gauge(
            "cronlet_operator_ready",
            "1 once the operator has listed its resources and schedules.",
            registry=r,
        )
        self.leader = Gauge(
            "cronlet_leader", "1 while this replica holds the lease and acts; 0 on a standby.", registry=r
        )
        self.reconciles = Counter("cronlet_reconciles_total", "Reconcile passes over one task.", registry=r)
        # Task events (the outbox in each task's status, published to the operator's sinks).
        self.events_published = Counter(
            "cronlet_events_published_total", "Task events a sink acknowledged.", ["sink"], registry=r
        )
        self.event_failures = Counter(
            "cronlet_events_failed_total",
            "Sends of a task event that failed: retryable (sent again later) or not (given up for that sink).",
            ["sink", "retryable"],
            registry=r,
        )
        self.events_dropped = Counter(
            "cronlet_events_dropped_total",
            "Task events dropped unpublished because a task's outbox was full.",
            registry=r,
        )
        self.events_pending = Gauge(
            "cronlet_events_pending",
            "Task events recorded and not yet acknowledged by the sink.",
            ["sink"],
            registry=r,
        )
        self.events_oldest_pending = Gauge(
            "cronlet_events_oldest_pending_time_seconds",
            "Transition time (Unix seconds) of the oldest event the sink has not acknowledged; 0 when none.",
            ["sink"],
            registry=r,
        )
        self.event_latency = Histogram(
            "cronlet_event_publish_latency_seconds",
            "From a run transition to the sink's acknowledgement of its event.",
            ["sink"],
            buckets=EVENT_LATENCY_BUCKETS,
            registry=r,
        )
        self._phases: dict[Key, str] = {}
        self._own: set[Key] = set()  # tasks with series of their own
        # The gauges of tasks without series of their own, by the labels they are summed under.
        self._active: dict[tuple[str, ...], dict[Key, int]] = {}
        self._oldest: dict[tuple[str, ...], dict[Key, float]] = {}
        if not per_task:
            self.start_series()

    def _summed(self, labels: tuple[str, ...]) -> tuple[dict[Key, int], dict[Key, float]]:
        """The gauges summed under ``labels`` (created on first use). Summed when scraped, not on every pass:
        a pass stays O(1) in the number of tasks."""
        if labels not in self._active:
            active: dict[Key, int] = {}
            oldest: dict[Key, float] = {}
            self._active[labels], self._oldest[labels] = active, oldest
            self.child(self.active, *labels).set_function(lambda: float(sum(list(active.values()))))
            self.child(self.oldest_run, *labels).set_function(
                lambda: min((t for t in list(oldest.values()) if t), default=0.0)
            )
        return self._active[labels], self._oldest[labels]

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
        """The label values of a task's series: its own while there is room, else its namespace's ``_other``."""
        if not self.per_task:
            return ()
        key = (namespace, task)
        if key not in self._own:
            if self.per_task_limit and len(self._own) >= self.per_task_limit:
                return (namespace, OTHER)
            self._own.add(key)
            self._unsum(key)  # counted under _other until a place freed up
        return key

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ bookkeeping from plans

    def record(self, key: Key, plan: Plan) -> None:
        """Count what a plan observed (runs, attempts, retries), once its status write succeeded."""
        labels = self.labels(*key)
        for seen in plan.observations:
            if isinstance(seen, RunFinished):
                self.runs.labels(*labels, seen.outcome).inc(seen.count)
                if seen.outcome == "Missed":
                    self.child(self.missed, *labels).inc(seen.count)
                elif seen.outcome == "Skipped":
                    self.child(self.skipped, *labels).inc(seen.count)
                if seen.duration is not None:
                    self.child(self.run_duration, *labels).observe(seen.duration)
            elif isinstance(seen, AttemptFinished):
                self.attempts.labels(*labels, seen.outcome).inc()
            elif isinstance(seen, RetryStarted):
                self.child(self.retries, *labels).inc()
            elif isinstance(seen, EventsDropped):
                self.events_dropped.inc(seen.count)

    def track(self, key: Key, plan: Plan, *, now: datetime | None = None) -> None:
        """Set the gauges (tasks by phase, active runs) from a task's new status. A run claimed ahead counts
        from its due time (its startTime): before ``now`` reaches it, it has not started."""
        phase = plan.status.phase or "Scheduled"
        old = self._phases.get(key)
        if old is None and self.per_task:
            self.start_series(*key)
        if old != phase:
            if old is not None:
                self.tasks.labels(key[0], old).dec()
            self.tasks.labels(key[0], phase).inc()
            self._phases[key] = phase
        begun = [
            a
            for a in plan.status.active
            if now is None or not a.start_time or times.parse(a.start_time) <= now
        ]
        active = len(begun)
        starts = [times.parse(a.start_time).timestamp() for a in begun if a.start_time]
        oldest = min(starts, default=0.0)
        labels = self.labels(*key)
        if labels == key:
            self.active.labels(*key).set(active)
            self.oldest_run.labels(*key).set(oldest)
        else:
            summed_active, summed_oldest = self._summed(labels)
            summed_active[key] = active
            summed_oldest[key] = oldest

    def forget(self, key: Key) -> None:
        """A task is gone: drop it from the gauges, and drop its own series (freeing its place for another)."""
        old = self._phases.pop(key, None)
        if old is not None:
            self.tasks.labels(key[0], old).dec()
        if key in self._own:
            self._own.discard(key)
            removals: list[tuple[Counter | Gauge | Histogram, tuple[str, ...]]] = [
                *((self.runs, (*key, outcome)) for outcome in OUTCOMES),
                *((self.attempts, (*key, outcome)) for outcome in ("Succeeded", "Failed")),
                *((metric, key) for metric in self._task_metrics()),
            ]
            for metric, values in removals:
                with contextlib.suppress(KeyError):
                    metric.remove(*values)
        self._unsum(key)

    def _unsum(self, key: Key) -> None:
        for active in self._active.values():
            active.pop(key, None)
        for oldest in self._oldest.values():
            oldest.pop(key, None)

    def _task_metrics(self) -> tuple[Counter | Gauge | Histogram, ...]:
        """The metrics labelled (namespace, task) and nothing else."""
        return (
            self.run_duration,
            self.lag,
            self.retries,
            self.active,
            self.oldest_run,
            self.missed,
            self.skipped,
        )
