"""Failed attempts are retried with exponential backoff; exhaustion, permanent failure and timeouts."""

from __future__ import annotations

import pytest
from kit import Tasks, outcomes, ts

pytestmark = pytest.mark.cluster

YEARLY = "@yearly"  # never due during a test: runs are started with run-now, one at a time


def _failed_at(job: object) -> float:
    cond = next(c for c in job.status.conditions if c.type == "Failed" and c.status == "True")  # type: ignore[attr-defined]
    return float(cond.last_transition_time.timestamp())


def test_failing_handler_is_retried_with_backoff_until_it_succeeds(tasks: Tasks) -> None:
    tasks.create(
        "flaky",
        {
            "schedule": YEARLY,
            "handler": "fail",
            "maxRetries": 3,
            "failedJobsHistoryLimit": 5,
            "parameters": {"message": "not yet", "succeedOnAttempt": 3},
            "backoff": {"initialDelay": "2s", "multiplier": 3, "jitter": 0},
        },
        annotations={"cronlet.dev/run-now": "go"},
    )
    st = tasks.wait_status("flaky", lambda s: s.get("counters", {}).get("succeeded") == 1, timeout=60)
    assert st["history"][0]["attempts"] == 3 and st["counters"]["retries"] == 2
    jobs = sorted(tasks.jobs("flaky"), key=lambda j: int(j.metadata.labels["cronlet.dev/attempt"]))
    assert [j.metadata.labels["cronlet.dev/attempt"] for j in jobs] == ["1", "2", "3"]
    assert len({j.metadata.labels["cronlet.dev/run-id"] for j in jobs}) == 1
    # Delay = next attempt's creation - previous attempt's failure; timestamps have 1 s resolution, so a
    # configured delay D reads D-1 .. D+1, plus the latency of noticing the failure. The lower bounds are the
    # proof (no early retry; the second delay is 3x the first, 6 s, which no noticing latency of the first
    # delay's 2 s could fake); the upper bounds only catch a lost retry, so they leave room for a loaded machine.
    d1 = jobs[1].metadata.creation_timestamp.timestamp() - _failed_at(jobs[0])
    d2 = jobs[2].metadata.creation_timestamp.timestamp() - _failed_at(jobs[1])
    assert 1.0 <= d1 <= 12.0, d1
    assert 5.0 <= d2 <= 16.0, d2


def test_retries_exhausted_fail_the_run(tasks: Tasks) -> None:
    tasks.create(
        "doomed",
        {
            "schedule": YEARLY,
            "handler": "fail",
            "maxRetries": 1,
            "parameters": {"message": "database unreachable"},
            "backoff": {"initialDelay": "1s", "jitter": 0},
        },
        annotations={"cronlet.dev/run-now": "go"},
    )
    st = tasks.wait_status("doomed", lambda s: s.get("phase") == "Failed", timeout=45)
    assert outcomes(st) == ["Failed"] and st["history"][0]["attempts"] == 2
    assert "database unreachable" in st["history"][0]["message"]
    assert st["lastResult"] == "Failed"
    cond = next(c for c in st["conditions"] if c["type"] == "LastRunSucceeded")
    assert (cond["status"], cond["reason"]) == ("False", "RetriesExhausted")
    assert st.get("nextRunTime")  # still scheduled
    tasks.wait_event("doomed", "Warning", "RetriesExhausted")


def test_exit_code_2_is_a_permanent_failure(tasks: Tasks) -> None:
    tasks.create(
        "perm",
        {
            "schedule": YEARLY,
            "handler": "fail",
            "maxRetries": 3,
            "parameters": {"message": "bad input", "retryable": False},
        },
        annotations={"cronlet.dev/run-now": "go"},
    )
    st = tasks.wait_status("perm", lambda s: s.get("phase") == "Failed", timeout=30)
    assert st["history"][0]["attempts"] == 1 and st["counters"]["retries"] == 0
    assert len(tasks.jobs("perm")) == 1
    tasks.wait_event("perm", "Warning", "PermanentFailure")


def test_timeout_stops_the_attempt_and_counts_as_a_failure(tasks: Tasks) -> None:
    tasks.create(
        "slowpoke",
        {
            "schedule": YEARLY,
            "handler": "sleep",
            "parameters": {"seconds": 60},
            "timeout": "2s",
            "maxRetries": 0,
        },
        annotations={"cronlet.dev/run-now": "go"},
    )
    st = tasks.wait_status("slowpoke", lambda s: s.get("phase") == "Failed", timeout=40)
    assert "timed out after 2s" in st["history"][0]["message"]
    job = tasks.jobs("slowpoke")[0]
    assert job.spec.active_deadline_seconds == 2
    done, started = ts(st["history"][0]["completionTime"]), ts(st["history"][0]["startTime"])
    # Well before the handler's own 60 s: the deadline killed it (the margin is for pod teardown under load).
    assert (done - started).total_seconds() < 40
