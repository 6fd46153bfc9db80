"""Benchmark: what per-task metric series cost the operator, with the default limit and without one.

    python tools/bench_series.py [--tasks 10000] [--limit 1000]

Drives the operator's own ``Metrics`` as passes over ``--tasks`` tasks would (every series of each task
created: outcomes, both histograms, the gauges), then prints for each setting the Python heap it holds
(``tracemalloc``), the size of one ``/metrics`` answer, the series in it and the seconds to render it,
with the ratio to the unlimited run made in the same command.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from cronlet._controller.metrics import Metrics
from cronlet._core.model import TaskStatus
from cronlet._core.views import Plan, RunFinished

PLAN = Plan(
    create=(),
    delete=(),
    status=TaskStatus.model_validate({"phase": "Scheduled"}),
    events=(),
    observations=tuple(RunFinished(outcome=o, duration=1.0) for o in ("Succeeded", "Failed", "Missed")),
    wake_at=None,
    spec=None,
)


def measure(tasks: int, *, per_task: bool, limit: int) -> tuple[float, float, int, float]:
    """Heap MiB, render MiB, series, render seconds."""
    gc.collect()
    tracemalloc.start()
    metrics = Metrics(per_task=per_task, per_task_limit=limit)
    for i in range(tasks):
        key = ("bench", f"t-{i}")
        metrics.record(key, PLAN)
        metrics.track(key, PLAN)
        metrics.child(metrics.lag, *metrics.labels(*key)).observe(0.1)
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    began = time.perf_counter()
    text = metrics.render()
    seconds = time.perf_counter() - began
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return heap, len(text) / 2**20, series, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--limit", type=int, default=1000)
    args = ap.parse_args()
    runs = {
        "no limit (baseline)": measure(args.tasks, per_task=True, limit=0),
        f"limit {args.limit} (default)": measure(args.tasks, per_task=True, limit=args.limit),
        "--no-per-task-metrics": measure(args.tasks, per_task=False, limit=0),
    }
    base = runs["no limit (baseline)"]
    print(f"per-task metric series of {args.tasks} tasks")
    print(
        f"{'':28} {'heap MiB':>9} {'ratio':>6} {'/metrics MiB':>13} {'series':>8} {'render s':>9} {'ratio':>6}"
    )
    for name, (heap, size, series, seconds) in runs.items():
        print(
            f"{name:28} {heap:9.1f} {heap / base[0]:6.2f} {size:13.1f} {series:8d} {seconds:9.2f}"
            f" {seconds / base[3]:6.2f}"
        )


if __name__ == "__main__":
    main()
