"""Benchmark: the operator's per-decision CPU cost, as ratios against croniter measured in the same run.

    python tools/bench_schedule.py [--rounds N]

Prints microseconds per call and the ratio to the baseline (one bare croniter construct + get_next, which
is the least any cron scheduler built on croniter pays per due time). Machines are noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from croniter import croniter

from cronlet._common import times
from cronlet._core import decision, model, schedule, views

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def per_call(fn: Callable[[int], object], n: int, rounds: int) -> float:
    """Median over rounds of the mean seconds per call."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        samples.append((time.perf_counter() - start) / n)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = 2000
    base = per_call(
        lambda i: croniter("*/5 * * * * *", T0 + timedelta(seconds=i), second_at_beginning=True).get_next(
            datetime
        ),
        n,
        args.rounds,
    )
    utc = schedule.compile_cron("*/5 * * * * *")
    berlin = schedule.compile_cron("*/5 * * * * *", time_zone="Europe/Berlin")
    iv = schedule.compile_interval("5s", anchor=T0)
    spec = {"schedule": "*/5 * * * * *", "handler": "echo"}
    status = model.TaskStatus(last_due_time=times.rfc3339(T0), last_schedule_time=times.rfc3339(T0))
    view = views.TaskView(
        namespace="ns",
        name="t",
        uid="u",
        generation=1,
        created=T0,
        spec=spec,
        status=status,
        known_handlers=frozenset({"echo"}),
    )
    rows = [
        ("baseline: croniter construct + get_next", base),
        (
            "next_after, cron, UTC",
            per_call(lambda i: schedule.next_after(utc, T0 + timedelta(seconds=i)), n, args.rounds),
        ),
        (
            "next_after, cron, Europe/Berlin (no DST change near)",
            per_call(lambda i: schedule.next_after(berlin, T0 + timedelta(seconds=i)), n, args.rounds),
        ),
        (
            "next_after, cron, Europe/Berlin across the DST gap",
            per_call(
                lambda i: schedule.next_after(
                    berlin, datetime(2026, 3, 29, 0, 30, tzinfo=UTC) + timedelta(seconds=i % 3600)
                ),
                200,
                args.rounds,
            ),
        ),
        (
            "next_after, cron, Europe/Berlin inside the DST fold",
            per_call(
                lambda i: schedule.next_after(
                    berlin, datetime(2026, 10, 25, 0, 30, tzinfo=UTC) + timedelta(seconds=i % 3600)
                ),
                20,
                args.rounds,
            ),
        ),
        (
            "next_after, interval",
            per_call(lambda i: schedule.next_after(iv, T0 + timedelta(seconds=i)), n, args.rounds),
        ),
        (
            "due_runs after a week of downtime, every 5 s",
            per_call(
                lambda i: schedule.due_runs(utc, since=T0, now=T0 + timedelta(days=7, seconds=i)),
                50,
                args.rounds,
            ),
        ),
        (
            "plan(): one steady-state decision (due run starts)",
            per_call(
                lambda i: decision.plan(view, [], now=T0 + timedelta(seconds=5 + (i % 5) * 0.1)),
                500,
                args.rounds,
            ),
        ),
    ]
    print(f"{'what':58} {'us/call':>10} {'x baseline':>11}")
    for name, secs in rows:
        print(f"{name:58} {secs * 1e6:10.1f} {secs / base:11.2f}")
    decisions = 1 / rows[-1][1]
    print(f"\none core plans about {decisions:,.0f} due runs per second (plan() alone, before any API call)")


if __name__ == "__main__":
    main()
