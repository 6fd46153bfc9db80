"""Suspend and resume, run-now, history limits, deletion."""

from __future__ import annotations

import time

import pytest
from helpers import wait_for
from kit import Tasks, now, outcomes, ts

pytestmark = pytest.mark.cluster


def test_suspend_stops_new_runs_and_resume_does_not_catch_up(tasks: Tasks) -> None:
    tasks.create("pausable", {"schedule": "*/2 * * * * *", "handler": "echo"})
    tasks.wait_status("pausable", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=30)
    suspended_at = now()
    tasks.patch_spec("pausable", {"suspend": True})
    st = tasks.wait_status(
        "pausable", lambda s: s.get("phase") == "Suspended" and not s.get("active"), timeout=20
    )
    assert "nextRunTime" not in st
    runs = st["counters"]["runs"]
    time.sleep(5)  # a window in which at least two due times pass; nothing may start in it
    assert tasks.status("pausable")["counters"]["runs"] == runs
    resumed_at = now()
    done = st["counters"].get("succeeded", 0)
    tasks.patch_spec("pausable", {"suspend": False})
    # A run that ended, not counters.runs: that counts the next run from its claim, before its Job exists.
    st = tasks.wait_status("pausable", lambda s: s.get("counters", {}).get("succeeded", 0) > done, timeout=20)
    newest = max(ts(j.metadata.annotations["cronlet.dev/scheduled-time"]) for j in tasks.jobs("pausable"))
    assert newest >= resumed_at.replace(microsecond=0), "a due time from the suspended window was run"
    # Nor counted as missed. (A pass that is late on a loaded machine may rightly record a Missed run outside
    # the window, so the check is on the window, not on the counter.)
    in_window = [
        h
        for h in st.get("history") or []
        if h["outcome"] == "Missed"
        and suspended_at.replace(microsecond=0) <= ts(h["scheduledTime"]) <= resumed_at
    ]
    assert in_window == [], in_window


def test_run_now_starts_one_run_per_new_value(tasks: Tasks) -> None:
    tasks.create("manual", {"schedule": "@yearly", "handler": "echo"})
    tasks.wait_status("manual", lambda s: s.get("phase") == "Scheduled", timeout=20)
    assert tasks.jobs("manual") == []
    tasks.annotate("manual", {"cronlet.dev/run-now": "first"})
    tasks.wait_status(
        "manual",
        lambda s: s.get("counters", {}).get("succeeded") == 1 and s.get("lastRunNowToken") == "first",
        timeout=30,
    )
    tasks.annotate("manual", {"cronlet.dev/run-now": "second"})
    st = tasks.wait_status("manual", lambda s: s.get("counters", {}).get("succeeded") == 2, timeout=30)
    assert st["lastRunNowToken"] == "second"
    assert len(tasks.jobs("manual")) == 2


def test_history_limits_trim_status_and_delete_old_jobs(tasks: Tasks) -> None:
    tasks.create(
        "trimmed",
        {
            "schedule": "*/1 * * * * *",
            "handler": "echo",
            "historyLimit": 3,
            "successfulJobsHistoryLimit": 2,
            "concurrencyPolicy": "Allow",
        },
    )
    st = tasks.wait_status("trimmed", lambda s: s.get("counters", {}).get("succeeded", 0) >= 6, timeout=40)
    assert len(st["history"]) == 3
    tasks.settle("trimmed")  # with a Job a second, new ones would keep entering the count below

    def jobs_trimmed() -> bool:
        done = [j for j in tasks.jobs("trimmed") if j.status.succeeded and not j.metadata.deletion_timestamp]
        return len(done) <= 2

    wait_for(jobs_trimmed, timeout=15, message="finished Jobs beyond successfulJobsHistoryLimit were kept")


def test_deleting_a_task_deletes_its_jobs(tasks: Tasks) -> None:
    tasks.create("short-lived", {"schedule": "*/2 * * * * *", "handler": "echo"})
    tasks.wait_status("short-lived", lambda s: s.get("counters", {}).get("runs", 0) >= 1, timeout=30)
    # The run is claimed in status before its Job is created: wait for the Job.
    wait_for(lambda: tasks.jobs("short-lived"), timeout=15, message="the run's Job was not created")
    tasks.delete("short-lived")
    wait_for(lambda: tasks.jobs("short-lived") == [], timeout=30, message="Jobs of a deleted task remain")


def test_a_task_deleted_and_created_again_at_once_is_scheduled_as_the_new_one(tasks: Tasks) -> None:
    # kopf handles each object in its own worker, so the old task's DELETED event can be handled after the
    # new one's ADDED; the store used to drop by name then, and the new task never ran. That order needs the
    # old object's worker to be busy, which is rare: this test passed 3 times out of 3 with the old store, so
    # the race itself is shown by tests/unit/controller/test_store.py (and the store is now fed in the watch
    # stream's order, runtime.Intake). Here: tasks re-created at once run as the new objects.
    names = [f"again-{i}" for i in range(10)]
    for name in names:
        tasks.create(name, {"schedule": "0 0 1 1 *", "handler": "echo"})
    for name in names:
        tasks.wait_status(name, lambda s: s.get("phase") == "Scheduled", timeout=30)
    uids = {}
    for name in names:
        tasks.delete(name)
        uids[name] = tasks.create(name, {"schedule": "*/2 * * * * *", "handler": "echo"})["metadata"]["uid"]
    for name in names:
        status = tasks.wait_status(name, lambda s: s.get("counters", {}).get("runs", 0) >= 1, timeout=30)
        assert tasks.get(name)["metadata"]["uid"] == uids[name], status


def test_failed_phase_recovers_on_the_next_successful_run(tasks: Tasks) -> None:
    tasks.create(
        "recovers",
        {"schedule": "@yearly", "handler": "fail", "maxRetries": 0, "parameters": {"succeedOnAttempt": 99}},
        annotations={"cronlet.dev/run-now": "1"},
    )
    tasks.wait_status("recovers", lambda s: s.get("phase") == "Failed", timeout=30)
    tasks.patch_spec("recovers", {"handler": "echo"})
    tasks.annotate("recovers", {"cronlet.dev/run-now": "2"})
    st = tasks.wait_status(
        "recovers",
        lambda s: s.get("phase") == "Scheduled" and s.get("counters", {}).get("succeeded") == 1,
        timeout=30,
    )
    assert outcomes(st)[:2] == ["Succeeded", "Failed"]
