"""Nothing lost, nothing doubled: the operator killed or stopped and started again; GitOps safety."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import wait_for
from kit import OperatorProcess, Tasks, now, outcomes, sleep_until, stopped, ts

from cronlet._core import schedule
from cronlet._core.decision import DEADLINE_GRACE

pytestmark = pytest.mark.cluster


def _dues(tasks: Tasks, name: str) -> list[str]:
    return [j.metadata.annotations["cronlet.dev/scheduled-time"] for j in tasks.jobs(name)]


def test_sigkill_mid_run_neither_duplicates_nor_loses_a_run(tasks: Tasks, operator: OperatorProcess) -> None:
    every = timedelta(seconds=4)
    body = tasks.create(
        "survivor",
        {
            "schedule": "*/4 * * * * *",
            "handler": "sleep",
            "parameters": {"seconds": 2},
            "successfulJobsHistoryLimit": 50,
            "failedJobsHistoryLimit": 50,
            "historyLimit": 50,
        },
    )
    tasks.wait_status("survivor", lambda s: s.get("phase") == "Running", timeout=30)
    with stopped(operator, kill=True):
        sleep_until(now() + timedelta(seconds=5))  # the running attempt finishes, a due time passes
    tasks.wait_status("survivor", lambda s: s.get("counters", {}).get("succeeded", 0) >= 3, timeout=40)
    st = tasks.settle("survivor")
    dues = _dues(tasks, "survivor")
    assert len(dues) == len(set(dues)), f"a due time got two Jobs: {dues}"
    assert st["counters"]["runs"] == len(dues), (st["counters"], dues)
    started = [h["scheduledTime"] for h in st["history"] if h["outcome"] in ("Succeeded", "Failed")]
    assert len(started) == len(set(started)), "a run was recorded twice"
    # Every due time from the task's creation to the last one handled was started, skipped or recorded missed:
    # none lost. (Missed due times are counted, not listed: one history entry stands for all an outage passed
    # over.)
    first = schedule.next_after(
        schedule.compile_cron("*/4 * * * * *"), ts(body["metadata"]["creationTimestamp"])
    )
    assert first is not None
    last = ts(st["lastDueTime"])
    due_times = int((last - first) / every) + 1
    c = st["counters"]
    assert c["runs"] + c["skipped"] + c["missed"] == due_times, (c, dues, st["history"])


def test_starting_deadline_turns_runs_missed_while_down_into_missed(
    tasks: Tasks, operator: OperatorProcess
) -> None:
    tasks.create("deadline", {"schedule": "*/3 * * * * *", "handler": "echo", "startingDeadlineSeconds": 1})
    tasks.wait_status("deadline", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=30)
    with stopped(operator):
        down = now()
        # At least two due times pass more than deadline + grace (2 s) before the operator is back.
        sleep_until(down + timedelta(seconds=9))
        up = now()
    st = tasks.wait_status("deadline", lambda s: s.get("counters", {}).get("missed", 0) >= 2, timeout=20)
    assert "Missed" in outcomes(st)
    # A due time within deadline + grace of the restart may rightly be started; none before that.
    cutoff = up - timedelta(seconds=1 + DEADLINE_GRACE)
    late = [d for d in map(ts, _dues(tasks, "deadline")) if down + timedelta(seconds=1) < d < cutoff]
    assert late == [], f"runs past their deadline were started: {late}"
    tasks.wait_event("deadline", "Warning", "MissedSchedule")


def test_without_deadline_only_the_most_recent_missed_run_starts(
    tasks: Tasks, operator: OperatorProcess
) -> None:
    tasks.create("catchup", {"schedule": "*/2 * * * * *", "handler": "echo"})
    tasks.wait_status("catchup", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=30)
    with stopped(operator):
        down = now()
        sleep_until(down + timedelta(seconds=7))
    st = tasks.wait_status("catchup", lambda s: s.get("counters", {}).get("missed", 0) >= 1, timeout=20)
    # The status write claims the run before its Job is created (claim, then create): wait for the Job.
    wait_for(
        lambda: [d for d in map(ts, _dues(tasks, "catchup")) if d > down + timedelta(seconds=1)],
        timeout=15,
        message="nothing started after the restart",
    )
    missed = next(h for h in st["history"] if h["outcome"] == "Missed")
    assert "only the most recent is started" in missed["message"]


def test_operator_never_writes_spec_or_metadata(tasks: Tasks) -> None:
    created = tasks.create(
        "gitops",
        {"schedule": "*/2 * * * * *", "handler": "echo"},
        annotations={"team": "platform"},
        labels={"app": "billing"},
    )
    tasks.wait_status("gitops", lambda s: s.get("counters", {}).get("succeeded", 0) >= 3, timeout=40)
    body = tasks.get("gitops")
    meta = body["metadata"]
    assert meta.get("annotations") == {"team": "platform"}
    assert meta.get("labels") == {"app": "billing"}
    assert not meta.get("finalizers")
    assert meta["generation"] == created["metadata"]["generation"] == 1
    assert body["spec"] == created["spec"]
    managers = {(m["manager"], m.get("subresource", "")) for m in meta["managedFields"]}
    status_managers = {m for m, sub in managers if sub == "status"}
    assert status_managers == {"cronlet"}
    assert all(m != "cronlet" for m, sub in managers if sub != "status")


def test_sigterm_stops_cleanly_and_the_next_start_carries_on(tasks: Tasks, operator: OperatorProcess) -> None:
    tasks.create("steady", {"schedule": "*/2 * * * * *", "handler": "echo"})
    before = tasks.wait_status("steady", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=30)
    assert operator.stop(timeout=60) == 0  # in-flight passes may take up to 20 s to finish
    assert "cronlet operator stopped" in operator.log_of_last_start()
    operator.start()
    tasks.wait_status(
        "steady",
        lambda s: s.get("counters", {}).get("succeeded", 0) >= before["counters"]["succeeded"] + 2,
        timeout=30,
    )
    after = tasks.settle("steady")  # a run starting between the reads below would make Jobs outnumber runs
    dues = _dues(tasks, "steady")
    assert len(dues) == len(set(dues))
    assert after["counters"]["runs"] >= len(dues)
