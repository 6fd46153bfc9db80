"""Benchmark: the operator's memory and CPU as the number of ScheduledTasks grows, on one local control plane.

    python tools/bench_memory.py [--steps 100,1000] [--running 200] [--minutes 1]

Starts a local control plane, a fake kubelet in simulate mode and `cronlet operator` watching one namespace,
and reads the operator's resident memory (VmRSS, and the peak VmHWM) from /proc:

1. idle, with no tasks: the baseline every other figure is divided by;
2. after each step, with that many tasks (`@yearly`, 1 KiB of parameters each: nothing runs), once every one of
   them has a status;
3. with ``--running`` of those tasks moved to a schedule every 10 s, after ``--minutes`` of runs (Jobs created,
   pods finished by the fake kubelet, history written, old Jobs deleted).

The figures back the Helm chart's default `resources` (charts/cronlet/values.yaml) and docs/operations.md.
"""

from __future__ import annotations

import argparse
import time

from benchkit import cpu_seconds, memory_kib, operator_on_local_cluster, wait_until
from kubernetes import client

NS = "bench"
GROUP, VERSION, PLURAL = "cronlet.dev", "v1alpha1", "scheduledtasks"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="100,1000", help="task counts to measure at, ascending")
    ap.add_argument("--running", type=int, default=200, help="tasks moved to a 10 s schedule at the end")
    ap.add_argument("--minutes", type=float, default=1.0, help="how long the running phase lasts")
    args = ap.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    with operator_on_local_cluster(NS) as bench:
        custom = client.CustomObjectsApi(bench.api)
        proc = bench.operator
        time.sleep(5)
        rows: list[tuple[str, int, int, int, float]] = []  # label, tasks, RSS, peak RSS, CPU seconds

        def record(label: str, tasks: int) -> None:
            rss, hwm = memory_kib(proc.pid)
            rows.append((label, tasks, rss, hwm, cpu_seconds(proc.pid)))
            print(f"  {label:<36} RSS {rss / 1024:6.1f} MiB  peak {hwm / 1024:6.1f} MiB", flush=True)

        def with_status() -> int:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]
            return sum(1 for t in items if (t.get("status") or {}).get("phase"))

        record("idle, 0 tasks", 0)
        made = 0
        for count in steps:
            started = time.monotonic()
            for i in range(made, count):
                custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    NS,
                    PLURAL,
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "ScheduledTask",
                        "metadata": {"name": f"t-{i}"},
                        "spec": {"schedule": "@yearly", "handler": "echo", "parameters": {"pad": "x" * 1024}},
                    },
                )
            made = count

            def all_reconciled(n: int = made) -> bool:
                return with_status() >= n

            wait_until(all_reconciled, 600, f"{made} tasks with a status")
            print(f"{count} tasks created and reconciled in {time.monotonic() - started:.1f} s", flush=True)
            time.sleep(5)
            record(f"{count} tasks at rest", count)
        running = min(args.running, made)
        for i in range(running):
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NS,
                PLURAL,
                f"t-{i}",
                {"spec": {"schedule": "*/10 * * * * *", "successfulJobsHistoryLimit": 1}},
            )
        time.sleep(args.minutes * 60)
        record(f"{made} tasks, {running} running every 10 s", made)
        _, _, base_rss, _, base_cpu = rows[0]
        print(f"\n  {'figure':<36} RSS MiB  peak MiB  RSS / idle  KiB per task  CPU s since idle")
        for label, tasks, rss, hwm, cpu in rows:
            per_task = f"{(rss - base_rss) / tasks:12.1f}" if tasks else f"{'-':>12}"
            print(
                f"  {label:<36} {rss / 1024:7.1f} {hwm / 1024:9.1f} {rss / base_rss:11.2f} {per_task} "
                f"{cpu - base_cpu:17.1f}"
            )


if __name__ == "__main__":
    main()
