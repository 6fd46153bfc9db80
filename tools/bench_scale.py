"""Benchmark: Cronlet at scale next to the Kubernetes CronJob controller, on one local control plane, one run.

    python tools/bench_scale.py [--sizes 1000,3000,10000] [--burst 1000] [--steady 600] [--steady-minutes 1]
                                [--downtime 20] [--idle-seconds 30] [--kcm-qps 100 --kcm-burst 200]
                                [--operator-arg=--kube-api-qps=...]

One local control plane (fake kubelet in simulate mode: pods end at once). Its own controller-manager runs
what the cluster needs except the Job controller; a second kube-controller-manager, the one measured, runs
only ``cronjob-controller`` and ``job-controller`` (Jobs of both Cronlet and CronJobs get their pods from
it). `cronlet operator` watches namespace ``bench``; CronJobs live in ``bench-cj``, the bare client's Jobs in
``bench-bare``. One watch on all Jobs times every Job from its due time to the moment it is seen (Cronlet's
``cronlet.dev/scheduled-time``, the CronJob controller's ``batch.kubernetes.io/cronjob-scheduled-timestamp``,
the bare client's start): the same clock and the same watch for all three. The phases, in order:

1. **burst**: ``--burst`` Jobs from 16 threads (the API server's ceiling), then as many CronJobs due in the
   same minute, then as many ScheduledTasks due in the same second. Their objects stay, one Job each in
   history, as the first of the tasks at rest.
2. **at rest**: each of ``--sizes`` tasks and as many CronJobs (1 KiB of parameters / annotation each,
   nothing due): RSS of both processes once settled; then both restarted, for the start-up peak (VmHWM)
   and the RSS once settled again.
3. **idle** at the largest size: CPU of both over ``--idle-seconds``, and the API requests meanwhile.
4. **steady** at the largest size: ``--steady`` CronJobs every minute (they can only fire on the minute),
   measured over ``--steady-minutes``; then suspended, and ``--steady`` tasks every minute, their seconds
   spread over the minute. Due -> Job lag; the operator's CPU and the API server's
   ``apiserver_request_total`` per run, by verb.
5. **restart** with those tasks running: SIGTERM, ``--downtime`` seconds down, start: seconds until ready,
   and until every run due while it was down (one per task, the most recent) has its Job.

The table prints each Cronlet figure next to the CronJob controller's and their ratio. The machine's other
work makes absolute figures noisy; ratios from one run are what to compare.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import os
import re
import signal
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from benchkit import Operator, cpu_seconds, local_control_plane, memory_kib, settle, wait_until

from localkube import binaries, cluster, procs, rest
from localkube.ports import free_port

NS, NS_CJ, NS_BARE = "bench", "bench-cj", "bench-bare"
GROUP, VERSION, PLURAL = "cronlet.dev", "v1alpha1", "scheduledtasks"
TASKS = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
CRONJOBS = f"/apis/batch/v1/namespaces/{NS_CJ}/cronjobs"
CRONJOB_DUE = "batch.kubernetes.io/cronjob-scheduled-timestamp"
CRONLET_DUE = "cronlet.dev/scheduled-time"
PAD = "x" * 1024  # every task and CronJob carries 1 KiB, as a real one carries parameters or annotations
THREADS = 16


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _hms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- watch


@dataclass
class Seen:
    namespace: str
    name: str
    due: float  # the Job's due time (Unix seconds); 0 for the bare client's
    at: float  # when the watch saw it
    task: str  # Cronlet's task (its label), else ""
    done: bool = False


@dataclass
class JobWatch:
    """Every Job of the cluster, first seen and finished, from one watch over all namespaces."""

    api: rest.Client
    jobs: dict[str, Seen] = field(default_factory=dict)  # by uid
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="job-watch").start()

    def _run(self) -> None:
        version = ""
        while not self.stop.is_set():
            try:
                if not version:
                    listed = self.api.request("GET", "/apis/batch/v1/jobs", query={"limit": "1"})
                    version = str(listed["metadata"]["resourceVersion"])
                query = {"resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": "120"}
                for event in self.api.watch("/apis/batch/v1/jobs", query=query, read_timeout=180):
                    now = time.time()
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = ""  # 410 Gone: start again from now (nothing is measured across it)
                        break
                    version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._observe(obj, now)
            except Exception as exc:  # the cluster going away at the end, or a broken stream
                if self.stop.is_set():
                    return
                log(f"job watch: {exc}; watching again")
                time.sleep(1)

    def _observe(self, job: dict[str, Any], now: float) -> None:
        meta = job["metadata"]
        ann = meta.get("annotations") or {}
        due = ann.get(CRONLET_DUE) or ann.get(CRONJOB_DUE)
        status = job.get("status") or {}
        finished = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        with self.lock:
            seen = self.jobs.get(meta["uid"])
            if seen is None:
                owner = (meta.get("labels") or {}).get("cronlet.dev/task", "")
                seen = Seen(meta["namespace"], meta["name"], _ts(due) if due else 0, now, owner)
                self.jobs[meta["uid"]] = seen
            seen.done = seen.done or finished

    def select(self, namespace: str, pick: Callable[[Seen], bool] = lambda s: True) -> list[Seen]:
        with self.lock:
            return [s for s in self.jobs.values() if s.namespace == namespace and pick(s)]

    def unfinished(self, namespace: str) -> int:
        return len(self.select(namespace, lambda s: not s.done))


# ---------------------------------------------------------------------------------------------------- API


class Api:
    """Requests of the benchmark itself: creates and patches from a thread pool, paged lists, metrics."""

    def __init__(self, credentials: rest.Credentials) -> None:
        self.client = rest.Client(credentials, timeout=60)
        self.pool = concurrent.futures.ThreadPoolExecutor(THREADS)

    def each(self, calls: Iterable[Callable[[], object]]) -> None:
        """Run every call from the thread pool; fail on the first error."""
        for future in [self.pool.submit(c) for c in calls]:
            future.result()

    def create(self, path: str, body: dict[str, Any]) -> Callable[[], object]:
        def call() -> object:
            try:
                return self.client.request("POST", path, body=body)
            except rest.ApiError as exc:
                if exc.status != 409:  # made by an earlier phase
                    raise
                return None

        return call

    def patch(self, path: str, body: dict[str, Any]) -> Callable[[], object]:
        return lambda: self.client.request("PATCH", path, body=body, content_type=rest.MERGE_PATCH)

    def items(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.client.request(
                "GET", path, query={"limit": "500", **({"continue": token} if token else {})}
            )
            out += page.get("items") or []
            token = page.get("metadata", {}).get("continue") or ""
            if not token:
                return out

    def requests(self) -> Counter[tuple[str, str, str, str]]:
        """apiserver_request_total summed by (verb, group, resource, subresource)."""
        counts: Counter[tuple[str, str, str, str]] = Counter()
        for line in self.client.get_text("/metrics").splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
            key = (
                labels.get("verb", ""),
                labels.get("group", ""),
                labels["resource"],
                labels.get("subresource", ""),
            )
            counts[key] += int(float(line.rsplit(" ", 1)[1]))
        return counts


def task(i: int, schedule: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScheduledTask",
        "metadata": {"name": f"t-{i}"},
        "spec": {"schedule": schedule, "handler": "echo", "parameters": {"pad": PAD}, **spec},
    }


def cronjob(i: int, schedule: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"cj-{i}", "annotations": {"bench/pad": PAD}},
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": _pod_template()}},
        },
    }


def bare_job(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"bare-{i}"},
        "spec": {"backoffLimit": 0, "template": _pod_template()},
    }


def _pod_template() -> dict[str, Any]:
    container = {"name": "main", "image": "busybox", "command": ["true"]}
    return {"spec": {"restartPolicy": "Never", "containers": [container]}}


# ---------------------------------------------------------------------------------------------------- KCM


class ControllerManager:
    """The measured kube-controller-manager: only the CronJob and Job controllers."""

    def __init__(self, cp: cluster.Cluster, *, qps: float, burst: int) -> None:
        self.cp, self.qps, self.burst = cp, qps, burst
        self.process: procs.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        port = free_port()
        self.process = procs.start(
            "kcm-cronjob",
            [
                str(binaries.find("kube-controller-manager")),
                f"--kubeconfig={self.cp.kubeconfig}",
                "--controllers=cronjob-controller,job-controller",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--use-service-account-credentials=false",
                f"--kube-api-qps={self.qps:g}",
                f"--kube-api-burst={self.burst}",
                "--profiling=false",
            ],
            log=self.cp.dir / "kcm-cronjob.log",
        )
        wait_until(lambda: _healthy(port), 60, "the measured controller-manager's /healthz")

    def stop(self) -> None:
        if self.process is not None:
            procs.stop([self.process], grace=10)
            self.process = None


def _healthy(port: int) -> bool:
    import http.client
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------- figures


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99, max; NaN for none."""
    if not values:
        return math.nan, math.nan, math.nan
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return statistics.median(ordered), p99, ordered[-1]


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def section(self, title: str) -> None:
        self.rows.append((title, "", "", ""))

    def row(self, what: str, cronlet: float, other: float | None, fmt: str = "{:.2f}") -> None:
        ratio = cronlet / other if other and not math.isnan(other) and not math.isnan(cronlet) else math.nan
        self.rows.append(
            (
                "  " + what,
                fmt.format(cronlet),
                "-" if other is None else fmt.format(other),
                "-" if math.isnan(ratio) else f"{ratio:.2f}",
            )
        )

    def text(self, header: tuple[str, str, str, str]) -> str:
        width = max(len(r[0]) for r in [header, *self.rows] if r[1])
        lines = [f"{header[0]:<{width}}  {header[1]:>10}  {header[2]:>11}  {header[3]:>6}"]
        for what, a, b, c in self.rows:
            lines.append(what if not a else f"{what:<{width}}  {a:>10}  {b:>11}  {c:>6}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- phases


@dataclass
class Bench:
    args: argparse.Namespace
    cp: cluster.Cluster
    api: Api
    watch: JobWatch
    operator: Operator
    kcm: ControllerManager
    table: Table = field(default_factory=Table)
    notes: list[str] = field(default_factory=list)
    made: int = 0  # tasks (and CronJobs) that exist: t-0.., cj-0..

    def reconciled(self) -> int:
        """Tasks with a status (the operator decided on them at least once), from a paged list of the
        tasks. Not from the operator's ``cronlet_tasks`` gauge: at 10,000 tasks its sum stayed 1,234 short
        while every task had a status, and rendering /metrics with per-task series costs the operator
        about a second of CPU per scrape at that size."""
        return sum(1 for t in self.api.items(TASKS) if (t.get("status") or {}).get("phase"))

    def gauge_tasks(self) -> int:
        """The sum of the operator's ``cronlet_tasks`` gauge (one scrape), to compare with ``reconciled``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.operator.port}/metrics", timeout=60) as answer:
            text = answer.read().decode()
        return round(sum(float(v) for v in re.findall(r"^cronlet_tasks\{[^}]*\} (\S+)$", text, re.M)))

    def check_gauge(self, size: int, when: str) -> None:
        counted = self.gauge_tasks()
        log(f"at rest: cronlet_tasks sums to {counted} of {size} tasks ({when})")
        if counted != size:
            self.notes.append(f"cronlet_tasks summed to {counted}, not {size}, {when}")

    def mib(self, pid: int) -> tuple[float, float]:
        rss, hwm = memory_kib(pid)
        return rss / 1024, hwm / 1024

    def settle_all(self) -> None:
        settle([self.operator.pid, self.kcm.pid], timeout=600)

    # -- 1. burst

    def burst(self) -> None:
        n = self.args.burst
        log(f"burst: {n} Jobs from {THREADS} threads (bare client)")
        t0 = time.time()
        self.api.each(
            self.api.create(f"/apis/batch/v1/namespaces/{NS_BARE}/jobs", bare_job(i)) for i in range(n)
        )
        wait_until(lambda: len(self.watch.select(NS_BARE)) >= n, 300, "the bare client's Jobs")
        bare = [s.at - t0 for s in self.watch.select(NS_BARE)]
        self._drain(NS_BARE)

        # CronJobs can only be due on a minute: the first one that leaves time to create them all.
        lead = 20 + n / 40
        due = math.ceil((time.time() + lead) / 60) * 60
        when = datetime.fromtimestamp(due, UTC)
        log(f"burst: {n} CronJobs due at {_hms(due)}")
        self.api.each(
            self.api.create(CRONJOBS, cronjob(i, f"{when.minute} {when.hour} * * *")) for i in range(n)
        )
        if time.time() > due - 2:
            self.notes.append(
                f"CronJobs of the burst were still being created at their due time (+{time.time() - due:.1f} s)"
            )
        wait_until(
            lambda: len(self.watch.select(NS_CJ, lambda s: s.due == due)) >= n,
            due - time.time() + 600,
            "the CronJobs' Jobs",
        )
        cj = [s.at - s.due for s in self.watch.select(NS_CJ, lambda s: s.due == due)]
        self._drain(NS_CJ)

        lead = 20 + n / 25  # create, then one status write each before they are due
        due = math.ceil(time.time() + lead)
        when = datetime.fromtimestamp(due, UTC)
        log(f"burst: {n} ScheduledTasks due at {_hms(due)}")
        self.api.each(
            self.api.create(TASKS, task(i, f"{when.second} {when.minute} {when.hour} * * *"))
            for i in range(n)
        )
        self.made = n
        wait_until(lambda: self.reconciled() >= n or time.time() > due - 2, due, "the tasks' first status")
        if time.time() > due - 2:
            self.notes.append(
                f"the burst's tasks were not all reconciled 2 s before their due time ({self.reconciled()}/{n})"
            )
        wait_until(
            lambda: len(self.watch.select(NS, lambda s: s.due == due)) >= n,
            due - time.time() + 600,
            "Cronlet's Jobs",
        )
        cr = [s.at - s.due for s in self.watch.select(NS, lambda s: s.due == due)]
        self._drain(NS)

        t = self.table
        t.section(f"burst: {n} due in the same second: due -> Job seen by a watch, seconds")
        bare_q, cj_q, cr_q = quantiles(bare), quantiles(cj), quantiles(cr)
        for i, label in enumerate(("p50", "p99", "last")):
            t.row(f"{label} (vs CronJob controller)", cr_q[i], cj_q[i])
        for i, label in enumerate(("p50", "p99", "last")):
            t.row(f"{label} (vs bare client, {THREADS} threads: the ceiling)", cr_q[i], bare_q[i])

    def _drain(self, namespace: str) -> None:
        """Wait until every Job in ``namespace`` finished and both processes are quiet."""
        wait_until(lambda: self.watch.unfinished(namespace) == 0, 900, f"the Jobs of {namespace} to finish")
        self.settle_all()

    # -- 2. at rest

    def at_rest(self, size: int) -> None:
        log(f"at rest: {size} tasks and {size} CronJobs")
        began = time.monotonic()
        calls: list[Callable[[], object]] = []
        for i in range(self.made, size):
            calls += [
                self.api.create(TASKS, task(i, "@yearly")),
                self.api.create(CRONJOBS, cronjob(i, "0 0 1 1 *")),
            ]
        self.api.each(calls)
        self.made = max(self.made, size)
        wait_until(lambda: self.reconciled() >= size, 1800, f"{size} tasks with a status", interval=10)
        self.settle_all()
        log(f"at rest: {size} made and reconciled in {time.monotonic() - began:.0f} s")
        live_op, live_kcm = self.mib(self.operator.pid)[0], self.mib(self.kcm.pid)[0]
        self.check_gauge(size, "running since the start")
        # Both restarted with everything in place: the start-up peak, then the RSS once settled.
        self.operator.stop()
        ready = self.operator.start()
        self.kcm.stop()
        self.kcm.start()
        self.settle_all()
        (op_rss, op_peak), (kcm_rss, kcm_peak) = self.mib(self.operator.pid), self.mib(self.kcm.pid)
        self.check_gauge(size, "after a restart")
        t = self.table
        t.section(
            f"at rest, {size} tasks / CronJobs ({min(size, self.args.burst)} with a Job in history): MiB"
        )
        t.row("RSS, running since the start", live_op, live_kcm, "{:.0f}")
        t.row("RSS after a restart, settled", op_rss, kcm_rss, "{:.0f}")
        t.row("start-up peak RSS (VmHWM)", op_peak, kcm_peak, "{:.0f}")
        t.row("start-up peak / settled RSS", op_peak / op_rss, kcm_peak / kcm_rss)
        t.row("seconds from start to ready (Cronlet: /readyz)", ready, None, "{:.1f}")

    # -- 3. idle

    def idle(self) -> None:
        seconds = self.args.idle_seconds
        log(f"idle: {seconds} s")
        pids = (self.operator.pid, self.kcm.pid)
        cpu0, req0 = [cpu_seconds(p) for p in pids], self.api.requests()
        time.sleep(seconds)
        cpu1, req1 = [cpu_seconds(p) for p in pids], self.api.requests()
        op, kcm = ((b - a) / seconds * 100 for a, b in zip(cpu0, cpu1, strict=True))
        t = self.table
        t.section(f"idle at {self.made} tasks / CronJobs, over {seconds} s")
        t.row("CPU, % of one core", op, kcm)
        delta = req1 - req0
        lists = sum(v for k, v in delta.items() if k[0] == "LIST")
        ours = sum(v for k, v in delta.items() if _cronlets(k) and k[0] not in ("WATCH",))
        t.row("API requests/s to Cronlet's resources (all clients)", ours / seconds, None)
        t.row("LIST requests/s (all clients)", lists / seconds, None)

    # -- 4. steady

    def steady(self) -> None:
        r, minutes = min(self.args.steady, self.made), self.args.steady_minutes
        t = self.table
        log(f"steady: {r} CronJobs every minute for {minutes} min")
        self.api.each(
            self.api.patch(f"{CRONJOBS}/cj-{i}", {"spec": {"schedule": "* * * * *"}}) for i in range(r)
        )
        first = math.ceil((time.time() + 5) / 60) * 60 + 60  # the first minute after the patches is warm-up
        end = first + 60 * minutes
        kcm_cpu = self._cpu_between(self.kcm.pid, first, end)
        time.sleep(max(0.0, end + 20 - time.time()))
        cj = [s.at - s.due for s in self.watch.select(NS_CJ, lambda s: first <= s.due < end)]
        self.api.each(self.api.patch(f"{CRONJOBS}/cj-{i}", {"spec": {"suspend": True}}) for i in range(r))
        self._drain(NS_CJ)

        log(f"steady: {r} tasks every minute, seconds spread, for {minutes} min")
        self.api.each(
            self.api.patch(
                f"{TASKS}/t-{i}",
                {"spec": {"schedule": f"{i % 60} * * * * *", "successfulJobsHistoryLimit": 1}},
            )
            for i in range(r)
        )
        first = math.ceil((time.time() + 5) / 60) * 60 + 60
        end = first + 60 * minutes
        time.sleep(max(0.0, first - time.time()))
        pids = (self.operator.pid, self.kcm.pid)
        cpu0, req0 = [cpu_seconds(p) for p in pids], self.api.requests()
        time.sleep(max(0.0, end - time.time()))
        cpu1, req1 = [cpu_seconds(p) for p in pids], self.api.requests()
        time.sleep(10)
        cr = [s.at - s.due for s in self.watch.select(NS, lambda s: first <= s.due < end)]
        runs = len(cr)
        t.section(
            f"steady at {self.made}: {r} run every minute for {minutes} min (CronJobs on the minute, "
            f"Cronlet spread over it): due -> Job, seconds"
        )
        for i, label in enumerate(("p50", "p99", "max")):
            t.row(label, quantiles(cr)[i], quantiles(cj)[i], "{:.3f}")
        t.row("Jobs seen in the window", runs, len(cj), "{:.0f}")
        op_cpu, kcm_cpu_cronlet = (b - a for a, b in zip(cpu0, cpu1, strict=True))
        t.section("cost per run (steady window)")
        if runs:
            # The measured KCM also runs the Job controller (for both): its CPU in Cronlet's window is that
            # controller's share for Cronlet's Jobs, shown apart.
            t.row(
                "CPU s per 1000 runs (Cronlet vs the KCM: CronJob + Job controllers)",
                op_cpu / runs * 1000,
                kcm_cpu() / max(1, len(cj)) * 1000,
            )
            t.row(
                "  the KCM per 1000 Cronlet runs (its Job controller alone)",
                kcm_cpu_cronlet / runs * 1000,
                None,
            )
            delta = req1 - req0
            seconds = end - first
            writes = 0.0
            for key, count in sorted(delta.items()):
                if _cronlets(key) and count and key[0] != "WATCH":
                    verb, _, resource, sub = key
                    what = f"{verb} {resource}{'/' + sub if sub else ''}"
                    if resource == "leases":  # the election's, by time, not by run
                        t.row(
                            f"{what} per second (election; apiserver's own lease too)", count / seconds, None
                        )
                        continue
                    t.row(f"{what} per run", count / runs, None)
                    if verb in ("POST", "PUT", "PATCH", "DELETE"):
                        writes += count
            t.row("writes per run (the above, Events not counted)", writes / runs, None)
            events = self._cronlet_events(first, end)
            t.row("Events posted by Cronlet per run", events / runs, None)

    def _cpu_between(self, pid: int, start: float, end: float) -> Callable[[], float]:
        """CPU seconds of ``pid`` from ``start`` to ``end`` (Unix times), sampled by a thread."""
        box: list[float] = []

        def sample() -> None:
            time.sleep(max(0.0, start - time.time()))
            box.append(cpu_seconds(pid))
            time.sleep(max(0.0, end - time.time()))
            box.append(cpu_seconds(pid))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()

        def result() -> float:
            thread.join()
            return box[1] - box[0]

        return result

    def _cronlet_events(self, start: float, end: float) -> int:
        count = 0
        for e in self.api.items(f"/api/v1/namespaces/{NS}/events"):
            source = (e.get("source") or {}).get("component") or e.get("reportingComponent")
            stamp = e.get("lastTimestamp") or e.get("eventTime") or ""
            if source == "cronlet" and stamp and start <= _ts(stamp) < end:
                count += 1
        return count

    # -- 5. restart

    def restart(self) -> None:
        r, downtime = min(self.args.steady, self.made), self.args.downtime
        log(f"restart: {downtime} s down with {r} tasks running")
        self.operator.stop()
        stopped = time.time()
        time.sleep(downtime)
        ready = self.operator.start()
        t_ready = self.operator.started + ready
        # Each task's most recent due time while it was down (before it was ready): its run must start.
        missed: dict[str, float] = {}
        for i in range(r):
            second = i % 60
            due = math.floor((t_ready - second) / 60) * 60 + second
            if due >= stopped:
                missed[f"t-{i}"] = due

        def started() -> list[Seen]:
            return self.watch.select(NS, lambda s: missed.get(s.task) == s.due)

        # A missed run is handled once its Job is seen, or once the task's status says it was decided
        # otherwise (Skipped under Forbid while its last Job still ran, or Missed): read only for the
        # few without a Job, once no new Job came for a while.
        recorded: set[str] = set()
        deadline, grown, count = time.time() + 600, time.time(), 0
        while time.time() < deadline:
            got = {s.task for s in started()}
            if len(got) > count:
                count, grown = len(got), time.time()
            pending = set(missed) - got - recorded
            if not pending:
                break
            if time.time() - grown > 10:
                for name in pending:
                    status = self.api.client.request("GET", f"{TASKS}/{name}").get("status") or {}
                    if status.get("lastDueTime") and _ts(status["lastDueTime"]) >= missed[name]:
                        recorded.add(name)
                grown = time.time()
            time.sleep(0.5)
        last = max((s.at for s in started()), default=t_ready)
        peak = self.mib(self.operator.pid)[1]
        rss = self.mib(self.operator.pid)[0]
        t = self.table
        t.section(f"restart at {self.made} tasks, {r} running, {downtime:g} s down (SIGTERM, then start)")
        t.row("seconds from start to ready", ready, None, "{:.1f}")
        t.row(
            f"seconds from start until the last of {len(got)} missed runs had its Job",
            last - self.operator.started,
            None,
            "{:.1f}",
        )
        t.row("missed runs recorded (Skipped/Missed) instead of started", len(recorded), None, "{:.0f}")
        t.row(
            "missed runs neither started nor recorded after 10 min",
            len(set(missed) - got - recorded),
            None,
            "{:.0f}",
        )
        t.row("start-up peak RSS / RSS when all were handled", peak / rss, None)


def _cronlets(key: tuple[str, str, str, str]) -> bool:
    """Requests to resources that only Cronlet sends in the windows measured (the Job controller writes
    ``jobs/status``, pods and Events of its own; the bench itself only watches Jobs there)."""
    verb, group, resource, sub = key
    if group == GROUP:
        return True
    if group == "batch" and resource == "jobs" and sub == "":
        return True
    if group == "" and resource == "pods" and verb == "LIST":
        return True
    return group == "coordination.k8s.io" and resource == "leases"


PHASES = ("burst", "rest", "idle", "steady", "restart")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,3000,10000", help="task counts at rest, ascending")
    ap.add_argument("--burst", type=int, default=1000, help="tasks due in the same second")
    ap.add_argument("--steady", type=int, default=600, help="tasks running every minute at the largest size")
    ap.add_argument("--steady-minutes", type=int, default=1)
    ap.add_argument(
        "--downtime", type=float, default=20.0, help="seconds the operator is down in the restart"
    )
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument(
        "--kcm-qps", type=float, default=100.0, help="the measured controller-manager's --kube-api-qps"
    )
    ap.add_argument("--kcm-burst", type=int, default=200, help="its --kube-api-burst")
    ap.add_argument("--operator-arg", action="append", default=[], help="passed to `cronlet operator`")
    ap.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"which parts to run, in this order: {','.join(PHASES)} (default all; idle and later need the sizes)",
    )
    args = ap.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    if unknown := set(phases) - set(PHASES):
        ap.error(f"unknown phases: {', '.join(sorted(unknown))}")
    sizes = sorted(int(x) for x in args.sizes.split(","))
    began = time.monotonic()
    controllers = [c for c in cluster.CONTROLLERS if c != "job-controller"]
    with local_control_plane([NS, NS_CJ, NS_BARE], controllers=controllers) as cp:
        api = Api(cp.credentials)
        watch = JobWatch(rest.Client(cp.credentials, timeout=60))
        watch.start()
        kcm = ControllerManager(cp, qps=args.kcm_qps, burst=args.kcm_burst)
        operator = Operator(cp.kubeconfig, NS, args.operator_arg)
        kcm.start()
        operator.start()
        bench = Bench(args=args, cp=cp, api=api, watch=watch, operator=operator, kcm=kcm)
        try:
            if "burst" in phases:
                bench.burst()
            if "rest" in phases:
                for size in sizes:
                    bench.at_rest(size)
            if "idle" in phases:
                bench.idle()
            if "steady" in phases:
                bench.steady()
            if "restart" in phases:
                bench.restart()
        except BaseException as exc:  # the figures so far are still worth printing
            bench.notes.append(f"stopped early: {exc!r}")
        finally:
            watch.stop.set()
            with contextlib.suppress(Exception):
                operator.stop(signal.SIGTERM)
            kcm.stop()
    print(
        f"python tools/bench_scale.py --sizes {args.sizes} --burst {args.burst} --steady {args.steady} "
        f"--steady-minutes {args.steady_minutes} --downtime {args.downtime:g} --idle-seconds {args.idle_seconds:g}"
        + "".join(f" --operator-arg={a}" for a in args.operator_arg)
        + ("" if phases == list(PHASES) else f" --phases {','.join(phases)}")
    )
    print(
        f"one local control plane, fake kubelet (simulate); measured KCM: cronjob-controller + job-controller, "
        f"--kube-api-qps {args.kcm_qps:g} --kube-api-burst {args.kcm_burst}; {os.cpu_count()} cores; "
        f"{(time.monotonic() - began) / 60:.1f} min in all"
    )
    print()
    print(bench.table.text(("figure", "Cronlet", "CronJob/KCM", "ratio")))
    for note in bench.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
