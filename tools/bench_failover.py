"""Failover of two operator replicas with leader election: the gap in launches when the leader goes.

    python tools/bench_failover.py [--kills 6] [--lease-duration 15s --renew-deadline 10s --retry-period 2s]

On one local control plane (fake kubelet in simulate mode: pods end at once), two `cronlet operator`
replicas elect a leader; one task runs every second (concurrencyPolicy Allow, no Jobs kept). The leader is
killed --kills times, alternately with SIGKILL (a crash: the standby waits out the lease) and SIGTERM (a clean
stop: the leader releases the lease), and restarted as a standby each time. A watch times every Job as it
appears. Printed: the gap per kill (last launch before it to the first after it), p50 and max per signal,
duplicates (a Job name created twice) and lost runs (due seconds neither started nor recorded Missed).
Goals (issue 10): SIGKILL gap <= lease duration + 3 s, SIGTERM gap <= 3 s, 0 duplicates.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from benchkit import wait_until  # noqa: E402

from localkube import binaries, cluster, crds, kubelet  # noqa: E402
from localkube.ports import free_port  # noqa: E402

NAMESPACE = "bench-failover"


@dataclass
class Replica:
    name: str
    kubeconfig: str
    args: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cronlet._cli.operator",
                "operator",
                "--metrics-port",
                str(self.port),
                "--namespace",
                NAMESPACE,
                "--leader-elect-identity",
                self.name,
                *self.args,
            ],
            env={**os.environ, "KUBECONFIG": self.kubeconfig},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._ready, 60, f"replica {self.name} ready")

    def _ready(self) -> bool:
        try:
            return "cronlet_operator_ready 1.0" in self.metrics()
        except OSError:
            return False

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())

    def leading(self) -> bool:
        try:
            return bool(re.search(r"^cronlet_leader 1\.0$", self.metrics(), re.MULTILINE))
        except OSError:
            return False

    def kill(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signum)
        self.proc.wait(60)
        self.proc = None


@dataclass
class Launches:
    """Every Job's first appearance (monotonic time of the watch event), and names seen twice."""

    seen: dict[str, float] = field(default_factory=dict)
    uids: dict[str, set[str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, api: client.ApiClient) -> None:
        batch = client.BatchV1Api(api)
        version = batch.list_namespaced_job(NAMESPACE).metadata.resource_version
        while not self.stop.is_set():
            for event in watch.Watch().stream(
                batch.list_namespaced_job, NAMESPACE, resource_version=version, timeout_seconds=5
            ):
                job = event["object"]
                version = job.metadata.resource_version
                if event["type"] == "ADDED":
                    self.seen.setdefault(job.metadata.name, time.monotonic())
                    self.uids.setdefault(job.metadata.name, set()).add(job.metadata.uid)

    def gap_around(self, moment: float) -> float:
        before = max((t for t in self.seen.values() if t <= moment), default=moment)
        after = min(t for t in self.seen.values() if t > moment)
        return after - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--lease-duration", default="15s")
    parser.add_argument("--renew-deadline", default="10s")
    parser.add_argument("--retry-period", default="2s")
    opts = parser.parse_args()
    args = [
        "--leader-elect-lease-duration",
        opts.lease_duration,
        "--leader-elect-renew-deadline",
        opts.renew_deadline,
        "--leader-elect-retry-period",
        opts.retry_period,
        "--leader-elect-resource-name",
        "bench-failover",
        "--leader-elect-resource-namespace",
        NAMESPACE,
    ]
    with cluster.Cluster() as cp:
        fake = kubelet.FakeKubelet(
            credentials=cp.credentials, work_dir=cp.dir / "kubelet", mode=kubelet.Mode.SIMULATE
        )
        fake.start()
        kubectl = [str(binaries.find("kubectl")), "--kubeconfig", str(cp.kubeconfig)]
        crds.apply(kubectl, ROOT / "crds", name="scheduledtasks.cronlet.dev")
        subprocess.run([*kubectl, "create", "namespace", NAMESPACE], check=True, capture_output=True)
        api = config.new_client_from_config(str(cp.kubeconfig))
        replicas = [Replica("a", str(cp.kubeconfig), args), Replica("b", str(cp.kubeconfig), args)]
        launches = Launches()
        watcher = threading.Thread(target=launches.run, args=(api,), daemon=True)
        try:
            for replica in replicas:
                replica.start()
            watcher.start()
            custom = client.CustomObjectsApi(api)
            custom.create_namespaced_custom_object(
                "cronlet.dev",
                "v1alpha1",
                NAMESPACE,
                "scheduledtasks",
                {
                    "apiVersion": "cronlet.dev/v1alpha1",
                    "kind": "ScheduledTask",
                    "metadata": {"name": "tick"},
                    "spec": {
                        "schedule": "* * * * * *",
                        "handler": "echo",
                        "concurrencyPolicy": "Allow",
                        "successfulJobsHistoryLimit": 0,
                        "failedJobsHistoryLimit": 0,
                    },
                },
            )
            started = time.monotonic()
            wait_until(lambda: len(launches.seen) >= 5, 60, "the first runs")
            gaps: dict[str, list[float]] = {"SIGKILL": [], "SIGTERM": []}
            for n in range(opts.kills):
                signum = signal.SIGKILL if n % 2 == 0 else signal.SIGTERM
                leader = next(r for r in replicas if r.leading())
                moment = time.monotonic()
                leader.kill(signum)
                wait_until(
                    lambda m=moment: any(t > m for t in launches.seen.values()),
                    120,
                    "a launch after the kill",
                )
                gap = launches.gap_around(moment)
                gaps[signum.name].append(gap)
                print(f"kill {n + 1}: {signum.name} of {leader.name}: launch gap {gap:.1f} s", flush=True)
                leader.start()  # back, as a standby
                time.sleep(3)
            time.sleep(3)
            ended = time.monotonic()
            status = custom.get_namespaced_custom_object(
                "cronlet.dev", "v1alpha1", NAMESPACE, "scheduledtasks", "tick"
            )["status"]
        finally:
            launches.stop.set()
            for replica in replicas:
                if replica.proc is not None:
                    replica.kill(signal.SIGTERM)
            fake.stop()
    duplicates = {name: uids for name, uids in launches.uids.items() if len(uids) > 1}
    counters = status["counters"]
    due = int(ended - started)
    lost = max(0, due - counters["runs"] - counters["missed"] - counters["skipped"] - 2)
    print()
    print(
        f"{'signal':<8} {'kills':>5} {'gap p50':>9} {'gap max':>9}   (lease {opts.lease_duration}, renew "
        f"{opts.renew_deadline}, retry {opts.retry_period})"
    )
    for name, values in gaps.items():
        if values:
            print(f"{name:<8} {len(values):>5} {statistics.median(values):>8.1f}s {max(values):>8.1f}s")
    print(
        f"duplicates: {len(duplicates)}; runs {counters['runs']}, missed {counters['missed']}, skipped "
        f"{counters['skipped']} over about {due} due seconds; lost (neither run nor recorded): {lost}"
    )
    return 1 if duplicates else 0


if __name__ == "__main__":
    sys.exit(main())
