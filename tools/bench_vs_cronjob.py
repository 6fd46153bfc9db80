"""Benchmark: Cronlet against the Kubernetes CronJob controller, on one local control plane.

    python tools/bench_vs_cronjob.py [--tasks 50] [--minutes 2]

Starts a local control plane whose controller-manager also runs the CronJob controller, a fake kubelet in
simulate mode, and `cronlet operator`. Creates N CronJobs (`* * * * *`) and measures whole minutes, deletes
them, then does the same with N ScheduledTasks (`0 * * * * *`, the same instants), watching Jobs appear.
For each Job it takes the time the watch saw it minus its due time (the CronJob controller's
`batch.kubernetes.io/cronjob-scheduled-timestamp`, Cronlet's `cronlet.dev/scheduled-time`): the same clock
and the same watch for both, so the ratio is fair on a noisy machine. Also prints the operator process's
CPU time and peak RSS over the run.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from benchkit import cpu_seconds, memory_kib, operator_on_local_cluster
from kubernetes import client, watch

from localkube import cluster

NS = "bench"
CRONJOB_DUE = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _summary(lags: list[float]) -> str:
    if not lags:
        return "no Jobs"
    q = statistics.quantiles(lags, n=100) if len(lags) > 1 else [lags[0]] * 99
    return (
        f"n={len(lags):4d}  p50={statistics.median(lags) * 1000:8.1f} ms  p90={q[89] * 1000:8.1f} ms  "
        f"p99={q[98] * 1000:8.1f} ms  max={max(lags) * 1000:8.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--minutes", type=int, default=2)
    args = ap.parse_args()
    controllers = (*cluster.CONTROLLERS, "cronjob-controller")
    with operator_on_local_cluster(NS, controllers=controllers) as bench:
        batch, custom = client.BatchV1Api(bench.api), client.CustomObjectsApi(bench.api)
        op = bench.operator
        seen: dict[str, list[float]] = {"CronJob controller": [], "Cronlet": []}
        stop = threading.Event()

        def watch_jobs() -> None:
            try:
                _watch_jobs()
            except Exception:  # the cluster going away at the end
                if not stop.is_set():
                    raise

        def _watch_jobs() -> None:
            w = watch.Watch()
            for event in w.stream(batch.list_namespaced_job, NS, timeout_seconds=900):
                now = time.time()
                if stop.is_set():
                    w.stop()
                    return
                if event["type"] != "ADDED":
                    continue
                ann = event["object"].metadata.annotations or {}
                if CRONJOB_DUE in ann:
                    seen["CronJob controller"].append(now - _ts(ann[CRONJOB_DUE]))
                elif "cronlet.dev/scheduled-time" in ann:
                    seen["Cronlet"].append(now - _ts(ann["cronlet.dev/scheduled-time"]))

        threading.Thread(target=watch_jobs, daemon=True).start()
        cpu0 = cpu_seconds(op.pid)

        def measure(which: str, create: Callable[[int], object], delete: Callable[[int], object]) -> None:
            """Create the objects, skip the first minute boundary, measure ``minutes`` boundaries, delete."""
            for i in range(args.tasks):
                create(i)
            first = (int(time.time()) // 60 + 1) * 60
            print(
                f"{which}: {args.tasks} objects; measuring the due times from "
                f"{datetime.fromtimestamp(first + 60, UTC):%H:%M:%S} for {args.minutes} min ...",
                flush=True,
            )
            time.sleep(max(0.0, first + 30 - time.time()))
            seen[which].clear()
            time.sleep(max(0.0, first + 60 * args.minutes + 20 - time.time()))
            for i in range(args.tasks):
                delete(i)

        # One after the other, so that neither slows the other down on a small machine.
        measure(
            "CronJob controller",
            lambda i: batch.create_namespaced_cron_job(
                NS,
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "metadata": {"name": f"cj-{i}"},
                    "spec": {
                        "schedule": "* * * * *",
                        "concurrencyPolicy": "Forbid",
                        "successfulJobsHistoryLimit": 1,
                        "failedJobsHistoryLimit": 1,
                        "jobTemplate": {
                            "spec": {
                                "backoffLimit": 0,
                                "template": {
                                    "spec": {
                                        "restartPolicy": "Never",
                                        "containers": [{"name": "main", "image": "x", "command": ["true"]}],
                                    }
                                },
                            }
                        },
                    },
                },
            ),
            lambda i: batch.delete_namespaced_cron_job(f"cj-{i}", NS),
        )
        measure(
            "Cronlet",
            lambda i: custom.create_namespaced_custom_object(
                "cronlet.dev",
                "v1alpha1",
                NS,
                "scheduledtasks",
                {
                    "apiVersion": "cronlet.dev/v1alpha1",
                    "kind": "ScheduledTask",
                    "metadata": {"name": f"st-{i}"},
                    "spec": {"schedule": "0 * * * * *", "handler": "echo", "successfulJobsHistoryLimit": 1},
                },
            ),
            lambda i: custom.delete_namespaced_custom_object(
                "cronlet.dev", "v1alpha1", NS, "scheduledtasks", f"st-{i}"
            ),
        )
        stop.set()
        cpu1, (_, peak) = cpu_seconds(op.pid), memory_kib(op.pid)
        print("\ncreation lag: watch saw the Job - its due time")
        for name, lags in seen.items():
            print(f"  {name:20} {_summary(lags)}")
        a, b = seen["Cronlet"], seen["CronJob controller"]
        if a and b:
            print(
                f"\nCronlet p50 / CronJob p50 = {statistics.median(a) / statistics.median(b):.3f}; "
                f"max / max = {max(a) / max(b):.3f}"
            )
        print(f"cronlet operator: {cpu1 - cpu0:.1f} s CPU over the run, peak RSS {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
