"""The reconcile decision, case by case: given a task, its Jobs and a clock, what happens.

No cluster and no clock: every case states ``now``. Status produced by one step feeds the next, the way the
operator chains them, so multi-step stories (fail, back off, retry, succeed) read top to bottom.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemacheck

from cronlet._common.times import rfc3339
from cronlet._core import decision, manifests, model, naming, views
from cronlet._core.model import TaskSpec, TaskStatus

T0 = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
UID = "uid-1"
STATUS_SCHEMA = schemacheck.status_schema()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def task(
    spec: dict[str, Any] | None = None,
    status: TaskStatus | None = None,
    *,
    token: str | None = None,
    created: datetime = T0,
    generation: int = 1,
) -> views.TaskView:
    base = {"schedule": "*/10 * * * * *", "handler": "echo"}
    return views.TaskView(
        namespace="ns",
        name="t",
        uid=UID,
        generation=generation,
        created=created,
        spec={**base, **(spec or {})},
        status=status or TaskStatus(),
        run_now_token=token,
        known_handlers=frozenset({"echo", "fail", "http", "shell", "sleep"}),
    )


def job(
    run_at: float,
    attempt: int = 1,
    *,
    state: views.JobState = views.JobState.ACTIVE,
    done: float | None = None,
    failure: views.Failure | None = None,
    deleting: bool = False,
    run_id: str | None = None,
    created: float | None = None,
    started: bool = True,
) -> views.JobObservation:
    rid = run_id or naming.scheduled_run_id(at(run_at))
    return views.JobObservation(
        name=naming.job_name("t", rid, attempt),
        owner_uid=UID,
        run_id=rid,
        attempt=attempt,
        scheduled_time=at(run_at),
        created=at(created if created is not None else run_at),
        state=state,
        failure=failure,
        completion_time=at(done) if done is not None else None,
        deleting=deleting,
        started=started,
    )


def step(
    t: views.TaskView,
    jobs: Sequence[views.JobObservation],
    now: float,
    messages: dict[str, str] | None = None,
    not_started: dict[str, str] | None = None,
) -> views.Plan:
    result = decision.plan(t, jobs, now=at(now), messages=messages, not_started=not_started)
    # Every status these cases produce must be one the API server accepts (formats, reasons, list keys).
    wrong = list(schemacheck.problems(model.dump(result.status), STATUS_SCHEMA))
    assert not wrong, wrong
    _the_echo_changes_nothing(t, jobs, now, result, messages, not_started)
    return result


def _the_echo_changes_nothing(
    t: views.TaskView,
    jobs: Sequence[views.JobObservation],
    now: float,
    result: views.Plan,
    messages: dict[str, str] | None,
    not_started: dict[str, str] | None,
    **options: Any,
) -> None:
    """The operator takes no pass on the watch's echo of its own writes (it holds their answers): so a pass
    over what this one wrote and created, at the same instant, must find nothing to do and no earlier wake-up.
    Were it otherwise, the work would wait for the next event or timer."""
    if result.status == t.status and not result.create:
        return
    made = [
        views.JobObservation(
            name=naming.job_name(t.name, c.run_id, c.attempt),
            owner_uid=t.uid,
            run_id=c.run_id,
            attempt=c.attempt,
            scheduled_time=c.scheduled_time,
            created=at(now),
            state=views.JobState.ACTIVE,
            started=False,
        )
        for c in result.create
    ]
    seen = [dataclasses.replace(j, deleting=True) if j.name in result.delete else j for j in jobs]
    again = decision.plan(
        then(t, result), [*seen, *made], now=at(now), messages=messages, not_started=not_started, **options
    )
    assert again.create == (), f"a pass on the echo would create {again.create}"
    assert again.status == result.status, "a pass on the echo would write again"
    if again.wake_at is not None:
        assert result.wake_at is not None and result.wake_at <= again.wake_at, (
            f"a pass on the echo would wake at {again.wake_at}, this one at {result.wake_at}"
        )


def then(t: views.TaskView, result: views.Plan, **changes: Any) -> views.TaskView:
    """The task as the next step sees it: with the status this step wrote."""
    return views.TaskView(**{**t.__dict__, "status": result.status, **changes})


# --------------------------------------------------------------------------- scheduling


def test_new_task_waits_for_its_first_due_time() -> None:
    r = step(task(), [], now=3)
    assert r.create == ()
    assert r.status.phase == "Scheduled"
    assert r.status.next_run_time == rfc3339(at(10))
    assert r.wake_at == at(10)
    assert r.status.conditions[0].type == "Ready" and r.status.conditions[0].status == "True"


def test_due_time_starts_one_run_with_a_derived_job_name() -> None:
    r = step(task(), [], now=10.01)
    assert r.create == (
        views.JobToCreate(run_id=naming.scheduled_run_id(at(10)), attempt=1, scheduled_time=at(10)),
    )
    assert r.status.phase == "Running"
    assert r.status.active[0].job_name == f"t-{int(at(10).timestamp())}-1"
    assert r.status.last_schedule_time == rfc3339(at(10))
    assert r.status.last_due_time == rfc3339(at(10))
    assert r.status.counters.runs == 1
    assert r.wake_at == at(20)


def test_planning_twice_at_the_same_moment_creates_nothing_twice() -> None:
    t = task()
    first = step(t, [], now=10.01)
    again = step(then(t, first), [job(10)], now=10.02)
    assert again.create == ()
    assert again.status == first.status


def test_success_is_recorded_in_history_with_the_handler_message() -> None:
    t = task()
    r1 = step(t, [], now=10)
    r2 = step(
        then(t, r1),
        [job(10, state=views.JobState.SUCCEEDED, done=12)],
        now=12.5,
        messages={"t-" + naming.scheduled_run_id(at(10)) + "-1": "processed 100 rows"},
    )
    assert r2.status.phase == "Scheduled"
    assert r2.status.active == []
    h = r2.status.history[0]
    assert (h.outcome, h.attempts, h.message, h.completion_time) == (
        "Succeeded",
        1,
        "processed 100 rows",
        rfc3339(at(12)),
    )
    assert r2.status.last_successful_time == rfc3339(at(12))
    assert r2.status.counters.succeeded == 1
    assert [c.type for c in r2.status.conditions] == ["Ready", "LastRunSucceeded"]
    assert r2.status.conditions[1].status == "True"
    assert views.RunFinished("Succeeded", 2.0) in r2.observations


def test_interval_schedule_runs_at_creation_plus_n_intervals() -> None:
    t = task({"schedule": None, "interval": "7s"}, created=at(3))
    t = views.TaskView(**{**t.__dict__, "spec": {"interval": "7s", "handler": "echo"}})
    assert step(t, [], now=9).wake_at == at(10)
    assert step(t, [], now=10).create[0].scheduled_time == at(10)


# --------------------------------------------------------------------------- retries


def test_failed_attempt_waits_its_backoff_then_retries_until_success() -> None:
    t = task({"maxRetries": 3, "backoff": {"initialDelay": "2s", "multiplier": 2, "jitter": 0}})
    r = step(t, [], now=10)
    assert r.status.current_attempt is None  # a first try is not retrying
    a1 = job(10, 1, state=views.JobState.FAILED, done=11, failure=views.Failure.RETRYABLE)
    r = step(then(t, r), [a1], now=11.1)
    assert r.create == ()
    assert r.status.phase == "Retrying"
    assert r.status.next_retry_time == rfc3339(at(13))  # 11 + 2s
    assert r.status.current_attempt == 1
    assert r.wake_at == at(13)
    r = step(then(t, r), [a1], now=13)
    assert r.create == (
        views.JobToCreate(run_id=naming.scheduled_run_id(at(10)), attempt=2, scheduled_time=at(10)),
    )
    assert r.status.current_attempt == 2 and r.status.phase == "Running"
    assert r.status.counters.retries == 1
    a2 = job(10, 2, state=views.JobState.FAILED, done=14, failure=views.Failure.RETRYABLE, created=13)
    r = step(then(t, r), [a1, a2], now=14.5)
    assert r.status.next_retry_time == rfc3339(at(18))  # 14 + 4s
    r = step(then(t, r), [a1, a2], now=18)
    a3 = job(10, 3, state=views.JobState.SUCCEEDED, done=19, created=18)
    r = step(then(t, r), [a1, a2, a3], now=19.5)
    assert r.status.history[0].outcome == "Succeeded"
    assert r.status.history[0].attempts == 3
    assert r.status.counters.retries == 2 and r.status.counters.succeeded == 1


def test_retries_exhausted_fail_the_run_with_a_warning_event() -> None:
    t = task({"maxRetries": 1, "backoff": {"initialDelay": "1s", "jitter": 0}})
    r = step(t, [], now=10)
    a1 = job(10, 1, state=views.JobState.FAILED, done=11, failure=views.Failure.RETRYABLE)
    r = step(then(t, r), [a1], now=12)  # backoff over: attempt 2 starts in the same pass
    assert [c.attempt for c in r.create] == [2]
    a2 = job(10, 2, state=views.JobState.FAILED, done=13, failure=views.Failure.RETRYABLE, created=12)
    r = step(then(t, r), [a1, a2], now=13.5, messages={a2.name: "boom"})
    assert r.create == ()
    assert r.status.phase == "Failed"
    assert r.status.history[0].outcome == "Failed" and r.status.history[0].message == "boom"
    assert r.status.counters.failed == 1
    assert any(e.reason == "RetriesExhausted" and e.type == "Warning" for e in r.events)
    lrs = r.status.conditions[1]
    assert (lrs.type, lrs.status, lrs.reason) == ("LastRunSucceeded", "False", "RetriesExhausted")
    assert r.status.next_run_time == rfc3339(at(20))  # still scheduled


def test_permanent_failure_is_not_retried() -> None:
    t = task({"maxRetries": 5})
    r = step(t, [], now=10)
    r = step(
        then(t, r), [job(10, state=views.JobState.FAILED, done=11, failure=views.Failure.PERMANENT)], now=11.5
    )
    assert r.create == ()
    assert r.status.history[0].outcome == "Failed" and r.status.history[0].attempts == 1
    assert [e.reason for e in r.events] == ["PermanentFailure"]


def test_timeout_is_a_retryable_failure_with_a_clear_message() -> None:
    t = task({"timeout": "5s", "maxRetries": 0})
    r = step(t, [], now=10)
    r = step(
        then(t, r), [job(10, state=views.JobState.FAILED, done=15, failure=views.Failure.TIMEOUT)], now=15.5
    )
    assert "timed out after 5s" in r.status.history[0].message


def test_a_job_that_vanished_counts_as_a_failed_attempt() -> None:
    # Past the claim grace: the Job was created and is gone now (deleted before its end was seen).
    t = task({"schedule": "@hourly", "maxRetries": 0})
    r = step(t, [], now=3600)
    r = step(then(t, r), [], now=3600 + decision.CLAIM_GRACE.total_seconds() + 1)
    assert r.status.history[0].outcome == "Failed"
    assert "disappeared" in r.status.history[0].message


def test_a_claimed_attempt_without_its_job_is_claimed_and_created_again() -> None:
    """The operator stopped (or the create failed) between the claim write and the create: within the claim
    grace the same attempt is claimed anew, so the create again follows a status write that won."""
    t = task({"schedule": "@hourly", "maxRetries": 0})
    first = step(t, [], now=3600)
    assert first.status.active[0].claim_time == rfc3339(at(3600))
    again = step(then(t, first), [], now=3630)
    assert again.create == first.create  # the same run and attempt: the same Job name
    assert again.status.active[0].claim_time == rfc3339(at(3630))  # a changed status: the claim is written
    assert again.status.history == [] and again.status.counters.runs == 1


def test_a_fresh_claim_without_its_job_is_left_to_its_claimant() -> None:
    """Its claimant may be about to create it (it does so within CREATE_WINDOW of its write): a second
    replica creating it too would run the attempt twice. Wait until RECLAIM_AFTER instead."""
    t = task({"schedule": "@hourly", "maxRetries": 0})
    first = step(t, [], now=3600)
    soon = step(then(t, first), [], now=3605)
    assert soon.create == () and soon.status.history == []
    assert soon.wake_at == at(3600) + decision.RECLAIM_AFTER
    assert decision.RECLAIM_AFTER > decision.CREATE_WINDOW


def test_jitter_is_deterministic_so_a_replan_gives_the_same_retry_time() -> None:
    t = task({"backoff": {"initialDelay": "10s", "jitter": 0.5}})
    r = step(t, [], now=10)
    failed = [job(10, state=views.JobState.FAILED, done=11, failure=views.Failure.RETRYABLE)]
    a = step(then(t, r), failed, now=11.5).status.next_retry_time
    b = step(then(t, r), failed, now=12.5).status.next_retry_time
    assert a == b
    assert a is not None and a != rfc3339(at(21))  # jitter applied


# --------------------------------------------------------------------------- restarts


def test_restart_adopts_a_job_created_before_the_status_write_was_lost() -> None:
    # The operator created the Job for 10s, then died before writing status. Now it is 14s.
    r = step(task(), [job(10)], now=14)
    assert r.create == ()
    assert [a.job_name for a in r.status.active] == [job(10).name]
    assert r.status.counters.runs == 1
    assert r.status.last_due_time == rfc3339(at(10))


def test_restart_adopts_a_retry_attempt_created_before_the_status_write() -> None:
    t = task({"backoff": {"initialDelay": "1s", "jitter": 0}})
    r = step(t, [], now=10)
    a1 = job(10, 1, state=views.JobState.FAILED, done=11, failure=views.Failure.RETRYABLE)
    r = step(then(t, r), [a1], now=11.2)
    a2 = job(10, 2, created=12)
    r = step(then(t, r), [a1, a2], now=12.5)
    assert r.create == ()
    assert r.status.active[0].attempt == 2 and r.status.counters.retries == 1


def test_old_finished_jobs_are_not_adopted_again() -> None:
    t = task()
    r = step(t, [], now=10)
    done = job(10, state=views.JobState.SUCCEEDED, done=11)
    r = step(then(t, r), [done], now=11.5)
    r2 = step(then(t, r), [done], now=12)
    assert r2.status.active == [] and r2.status.counters.runs == 1


def test_downtime_without_deadline_starts_only_the_most_recent_run() -> None:
    t = task()
    r = step(t, [], now=10)
    done = job(10, state=views.JobState.SUCCEEDED, done=11)
    r = step(then(t, r), [done], now=11)
    r = step(then(t, r), [done], now=95)  # operator was down from 11s to 95s: 20..90 fell due
    assert [c.scheduled_time for c in r.create] == [at(90)]
    assert r.status.counters.missed == 7
    missed = r.status.history[0]
    assert missed.outcome == "Missed" and "7 due run(s)" in missed.message
    assert any(e.reason == "MissedSchedule" for e in r.events)


def test_downtime_past_the_starting_deadline_starts_nothing() -> None:
    t = task({"startingDeadlineSeconds": 3})
    r = step(t, [], now=95)
    assert r.create == ()
    assert r.status.counters.missed == 9
    assert r.status.last_due_time == rfc3339(at(90))
    assert r.wake_at == at(100)


def test_late_but_within_the_starting_deadline_still_starts() -> None:
    r = step(task({"startingDeadlineSeconds": 3}), [], now=12)
    assert [c.scheduled_time for c in r.create] == [at(10)]


def test_a_week_of_downtime_is_bounded_work() -> None:
    r = step(task({"schedule": "*/5 * * * * *"}), [], now=7 * 86400 + 2)
    assert [c.scheduled_time for c in r.create] == [at(7 * 86400)]
    assert "more than" in r.status.history[0].message


# --------------------------------------------------------------------------- concurrency


def _busy(policy: str) -> tuple[views.TaskView, list[views.JobObservation]]:
    t = task({"concurrencyPolicy": policy})
    r = step(t, [], now=10)
    return then(t, r), [job(10)]


def test_forbid_skips_a_due_run_while_one_is_active() -> None:
    t, jobs = _busy("Forbid")
    r = step(t, jobs, now=20)
    assert r.create == () and r.delete == ()
    assert r.status.history[0].outcome == "Skipped"
    assert r.status.counters.skipped == 1
    assert r.status.last_due_time == rfc3339(at(20))


def test_allow_starts_alongside() -> None:
    t, jobs = _busy("Allow")
    r = step(t, jobs, now=20)
    assert [c.scheduled_time for c in r.create] == [at(20)]
    assert len(r.status.active) == 2


def test_replace_stops_the_old_run_and_starts_the_new_one() -> None:
    t, jobs = _busy("Replace")
    r = step(t, jobs, now=20)
    assert r.delete == (jobs[0].name,)
    assert [c.scheduled_time for c in r.create] == [at(20)]
    assert r.status.history[0].outcome == "Replaced"
    assert [a.scheduled_time for a in r.status.active] == [rfc3339(at(20))]
    # The replaced Job, now being deleted, is not adopted back.
    gone = job(10, deleting=True)
    r2 = step(then(t, r), [gone, job(20)], now=21)
    assert len(r2.status.active) == 1


# --------------------------------------------------------------------------- suspend and run-now


def test_suspend_starts_nothing_and_resume_does_not_run_what_fell_due_meanwhile() -> None:
    t = task({"suspend": True})
    r = step(t, [], now=35)
    assert r.create == () and r.status.phase == "Suspended" and r.status.next_run_time is None
    resumed = then(t, r, spec={"schedule": "*/10 * * * * *", "handler": "echo", "suspend": False})
    r2 = step(resumed, [], now=47)
    assert r2.create == ()
    assert r2.status.phase == "Scheduled" and r2.status.next_run_time == rfc3339(at(50))
    assert r2.status.counters.missed == 0


def test_run_now_starts_one_run_per_token() -> None:
    t = task(token="2026-01-01T00:00:03Z")
    r = step(t, [], now=3)
    assert [c.manual for c in r.create] == [True]
    assert r.status.last_run_now_token == "2026-01-01T00:00:03Z"
    manual = views.JobObservation(
        name=naming.job_name("t", naming.manual_run_id("2026-01-01T00:00:03Z"), 1),
        owner_uid=UID,
        run_id=naming.manual_run_id("2026-01-01T00:00:03Z"),
        attempt=1,
        scheduled_time=at(3),
        created=at(3),
        state=views.JobState.ACTIVE,
    )
    assert step(then(t, r), [manual], now=4).create == ()


def test_run_now_after_a_crash_does_not_start_twice() -> None:
    token = "again"
    manual = views.JobObservation(
        name=naming.job_name("t", naming.manual_run_id(token), 1),
        owner_uid=UID,
        run_id=naming.manual_run_id(token),
        attempt=1,
        scheduled_time=at(3),
        created=at(3),
        state=views.JobState.ACTIVE,
    )
    r = step(task(token=token), [manual], now=4)
    assert r.create == ()
    assert r.status.last_run_now_token == token and len(r.status.active) == 1


# --------------------------------------------------------------------------- history and cleanup


def test_history_is_trimmed_newest_first_and_old_jobs_are_deleted() -> None:
    t = task({"historyLimit": 2, "successfulJobsHistoryLimit": 1, "concurrencyPolicy": "Allow"})
    jobs: list[views.JobObservation] = []
    r = step(t, [], now=10)
    for k in range(1, 4):
        jobs = [job(10 * j, state=views.JobState.SUCCEEDED, done=10 * j + 1) for j in range(1, k + 1)]
        r = step(then(t, r), jobs, now=10 * k + 5)
        r = step(then(t, r), [*jobs, job(10 * (k + 1))], now=10 * (k + 1))
    assert len(r.status.history) == 2
    assert [h.scheduled_time for h in r.status.history] == [rfc3339(at(30)), rfc3339(at(20))]
    assert set(r.delete) == {job(10).name, job(20).name}


def test_jobs_of_another_task_with_the_same_name_are_ignored() -> None:
    stranger = views.JobObservation(**{**job(10).__dict__, "owner_uid": "other-uid"})
    r = step(task(), [stranger], now=12)
    assert [c.scheduled_time for c in r.create] == [at(10)]


# --------------------------------------------------------------------------- attempts that cannot start

MINUTELY = {"schedule": "0 * * * * *", "startTimeout": "30s"}  # due at 60, 120, ...


def test_a_pending_attempt_wakes_the_task_at_its_start_limit() -> None:
    first = step(task(MINUTELY), [], now=60.01)
    pending = job(60, started=False, created=60.01)
    r = step(then(task(MINUTELY), first), [pending], now=62)
    assert r.status.phase == "Running"
    assert r.wake_at == at(90.01)  # before the next due time: nothing else would wake the task
    waiting = then(task(MINUTELY), r)
    assert decision.overdue_starts(waiting, [pending], now=at(90)) == []
    assert decision.overdue_starts(waiting, [pending], now=at(90.01)) == [pending.name]


def test_the_pass_that_creates_an_attempt_wakes_at_its_start_limit_without_waiting_for_the_job() -> None:
    """The operator ignores the watch's echo of its own create (it holds the answer), so no pass follows
    a create unless the plan asks for one: a Job whose pods never start sends no event either."""
    first = step(task(MINUTELY), [], now=60.01)
    assert len(first.create) == 1
    assert first.wake_at == at(60.01 + 30)


def test_an_attempt_that_did_not_start_fails_with_its_reason_and_is_retried() -> None:
    spec = {**MINUTELY, "maxRetries": 1, "backoff": {"initialDelay": "5s", "jitter": 0}}
    first = step(task(spec), [], now=60.01)
    pending = job(60, started=False, created=60.01)
    why = 'ImagePullBackOff: Back-off pulling image "no-such-image:1"'
    r = step(then(task(spec), first), [pending], now=91, not_started={pending.name: why})
    assert r.delete == (pending.name,)  # the pod would go on pulling
    assert r.status.phase == "Retrying"
    assert r.status.active[0].next_retry_time == rfc3339(at(96))
    assert [(e.type, e.reason) for e in r.events] == [("Warning", "AttemptNotStarted")]
    assert "ImagePullBackOff" in r.events[0].message and "did not start within 30s" in r.events[0].message
    retried = step(then(task(spec), r), [pending], now=96.5)
    assert [c.attempt for c in retried.create] == [2]


def test_an_attempt_that_did_not_start_without_retries_fails_the_run() -> None:
    spec = {**MINUTELY, "maxRetries": 0}
    first = step(task(spec), [], now=60.01)
    pending = job(60, started=False, created=60.01)
    r = step(
        then(task(spec), first), [pending], now=91, not_started={pending.name: "Unschedulable: 0/1 nodes"}
    )
    assert r.status.phase == "Failed"
    assert r.status.history[0].outcome == "Failed"
    assert "Unschedulable: 0/1 nodes" in r.status.history[0].message
    ready = {c.type: c for c in r.status.conditions}["LastRunSucceeded"]
    assert (ready.status, ready.reason) == ("False", "AttemptNotStarted")
    assert r.delete == (pending.name,)
    nxt = step(then(task(spec), r), [], now=120.01)  # the next due run starts: Forbid no longer holds it back
    assert len(nxt.create) == 1


def test_a_started_attempt_is_never_overdue_and_zero_turns_the_limit_off() -> None:
    first = step(task(MINUTELY), [], now=60.01)
    running = job(60, started=True, created=60.01)
    assert decision.overdue_starts(then(task(MINUTELY), first), [running], now=at(500)) == []
    off = {**MINUTELY, "startTimeout": "0s"}
    pending = job(60, started=False, created=60.01)
    assert (
        decision.overdue_starts(then(task(off), step(task(off), [], now=60.01)), [pending], now=at(5000))
        == []
    )


# --------------------------------------------------------------------------- a status reset or unreadable


def test_a_reset_status_does_not_record_old_jobs_again_nor_retry_them() -> None:
    """Measured before the fix: an empty status plus three old Jobs recorded two old successes again and
    created attempt 2 of a two-day-old run."""
    day = 86400
    old = [
        job(10, state=views.JobState.SUCCEEDED, done=12),
        job(20, state=views.JobState.SUCCEEDED, done=22),
        job(30, state=views.JobState.FAILED, done=32, failure=views.Failure.RETRYABLE),
    ]
    r = step(task(), old, now=2 * day + 3)
    assert r.create == ()  # neither attempt 2 of the failed run nor a catch-up run
    assert r.status.history == []
    assert r.status.counters.succeeded == 0 and r.status.counters.missed == 0
    assert [(e.type, e.reason) for e in r.events] == [("Warning", "StatusReset")]
    assert r.status.last_due_time == rfc3339(at(2 * day + 3))
    nxt = step(then(task(), r), old, now=2 * day + 10.01)  # and the next due time runs as usual
    assert len(nxt.create) == 1 and nxt.events == ()


def test_a_job_running_when_the_status_was_lost_is_adopted() -> None:
    r = step(task(), [job(10)], now=11)
    assert r.status.active[0].job_name == job(10).name and r.create == ()
    assert r.events == ()


def test_a_finished_job_of_a_due_time_already_handled_is_never_adopted() -> None:
    handled = TaskStatus.model_validate({"lastDueTime": rfc3339(at(20)), "lastScheduleTime": rfc3339(at(0))})
    r = step(task(status=handled), [job(10, state=views.JobState.SUCCEEDED, done=12)], now=21)
    assert r.status.history == [] and r.status.active == []


# --------------------------------------------------------------------------- invalid specs

INVALID = [
    ("bad cron", {"schedule": "61 * * * *"}, "InvalidSchedule"),
    ("never fires", {"schedule": "0 0 30 2 *"}, "InvalidSchedule"),
    ("unknown zone", {"timeZone": "Mars/Base"}, "UnknownTimeZone"),
    ("unknown handler", {"handler": "nosuch"}, "UnknownHandler"),
    ("bad handler path", {"handler": "a b:c"}, "UnknownHandler"),
    ("parameters over 64 KiB", {"parameters": {"blob": "x" * 70000}}, "ParametersTooLarge"),
]


@pytest.mark.parametrize(("name", "spec", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_sets_ready_false_with_one_event_and_no_wakeups(
    name: str, spec: dict[str, Any], reason: str
) -> None:
    t = task(spec)
    r = step(t, [], now=12)
    assert r.create == () and r.wake_at is None
    assert r.status.phase == "Invalid" and r.status.next_run_time is None
    ready = r.status.conditions[0]
    assert (ready.status, ready.reason) == ("False", reason)
    assert [e.reason for e in r.events] == [reason]
    again = step(then(t, r), [], now=13)
    assert again.events == ()  # the same problem is not announced again


def test_fixing_an_invalid_spec_recovers() -> None:
    t = task({"schedule": "61 * * * *"})
    r = step(t, [], now=12)
    fixed = then(t, r, spec={"schedule": "*/10 * * * * *", "handler": "echo"}, generation=2)
    r2 = step(fixed, [], now=13)
    assert r2.status.phase == "Scheduled"
    assert r2.status.conditions[0].status == "True" and r2.status.observed_generation == 2
    assert r2.wake_at == at(20)
    assert "Stalled" not in [c.type for c in r2.status.conditions]


def test_an_invalid_spec_is_stalled_for_kstatus() -> None:
    # kstatus (Flux, kpt, cli-utils) reports Failed for Stalled=True; Ready=False alone would read as Current.
    r = step(task({"schedule": "61 * * * *"}, generation=4), [], now=12)
    stalled = next(c for c in r.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason, stalled.observed_generation) == ("True", "InvalidSchedule", 4)
    assert r.status.observed_generation == 4


def test_handler_paths_are_not_checked_against_registered_names() -> None:
    r = step(task({"handler": "mypkg.jobs:Nightly"}), [], now=12)
    assert r.status.phase == "Running"


def test_long_task_names_give_job_names_within_63_characters() -> None:
    name = "a" * 253
    names = {naming.job_name(name, naming.scheduled_run_id(at(i)), 1) for i in range(5)}
    assert all(len(n) <= 63 for n in names) and len(names) == 5


# --------------------------------------------------------------------------- found in review


def _job_for(r: views.Plan, k: int = 0, **changes: Any) -> views.JobObservation:
    """The Job a plan asked for, as it would be observed (optionally finished)."""
    c = r.create[k]
    base = views.JobObservation(
        name=naming.job_name("t", c.run_id, c.attempt),
        owner_uid=UID,
        run_id=c.run_id,
        attempt=c.attempt,
        scheduled_time=c.scheduled_time,
        created=c.scheduled_time,
        state=views.JobState.ACTIVE,
    )
    return views.JobObservation(**{**base.__dict__, **changes})


def test_replace_never_stops_a_run_the_same_pass_started() -> None:
    t = task({"concurrencyPolicy": "Replace"})
    first = step(t, [], now=10.01)
    r = step(then(t, first, run_now_token="go"), [job(10)], now=20.01)
    created = {naming.job_name("t", c.run_id, c.attempt) for c in r.create}
    assert not created & set(r.delete)
    assert [c.manual for c in r.create] == [True]
    assert [h.outcome for h in r.status.history] == ["Skipped", "Replaced"]


def test_run_now_while_suspended_is_recorded_as_skipped() -> None:
    r = step(task({"suspend": True}, token="now-please"), [], now=5)
    assert r.create == ()
    assert r.status.history[0].outcome == "Skipped" and "suspended" in r.status.history[0].message
    assert r.status.last_run_now_token == "now-please"


def test_lowering_max_retries_during_a_backoff_ends_the_run() -> None:
    t = task({"maxRetries": 3, "backoff": {"initialDelay": "5s", "jitter": 0}})
    s1 = step(t, [], now=10.01)
    failed = job(10, state=views.JobState.FAILED, done=11, failure=views.Failure.RETRYABLE)
    s2 = step(then(t, s1), [failed], now=11.5)
    t3 = then(t, s2, spec={"schedule": "*/10 * * * * *", "handler": "echo", "maxRetries": 0}, generation=2)
    r = step(t3, [failed], now=16.5)
    assert r.create == ()
    assert r.status.history[0].outcome == "Failed" and "maxRetries is now 0" in r.status.history[0].message


def test_an_earlier_run_now_value_used_again_runs_again() -> None:
    t = task({"schedule": "@yearly"}, token="A")
    a = step(t, [], now=1)
    ja = _job_for(a, state=views.JobState.SUCCEEDED, completion_time=at(2))
    a_done = step(then(t, a), [ja], now=3)
    b = step(then(t, a_done, run_now_token="B"), [ja], now=4)
    jb = _job_for(b, state=views.JobState.SUCCEEDED, completion_time=at(5))
    b_done = step(then(t, b, run_now_token="B"), [ja, jb], now=6)
    again = step(then(t, b_done, run_now_token="A"), [ja, jb], now=7)
    assert len(again.create) == 1 and again.create[0].manual
    assert again.status.last_run_now_token == "A"


def test_changing_the_schedule_does_not_start_a_run_at_once() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    t = views.TaskView(**{**task({"schedule": "0 0 * * *"}, created=day - timedelta(days=1)).__dict__})
    midnight = decision.plan(t, [], now=day + timedelta(seconds=1))
    st = midnight.status.model_copy(update={"active": [], "phase": "Scheduled"})
    edited = views.TaskView(
        **{**t.__dict__, "status": st, "generation": 2, "spec": {"schedule": "0 12 * * *", "handler": "echo"}}
    )
    r = decision.plan(edited, [], now=day + timedelta(hours=15))
    assert r.create == ()
    assert r.status.next_run_time == rfc3339(day + timedelta(days=1, hours=12))
    assert r.status.schedule_key == "0 12 * * * UTC"


def test_a_starting_deadline_of_zero_still_starts_a_run_woken_on_time() -> None:
    r = step(task({"startingDeadlineSeconds": 0}), [], now=10.003)
    assert [c.scheduled_time for c in r.create] == [at(10)]


def test_a_running_job_that_no_run_points_at_is_deleted() -> None:
    # Replace wrote its status, then deleting the replaced run's Job failed: the Job keeps running.
    t = task({"concurrencyPolicy": "Replace"})
    r = step(t, [], now=10.01)
    r = step(then(t, r), [job(10)], now=20.01)
    assert r.delete == (job(10).name,)
    again = step(then(t, r), [job(10), job(20)], now=21)
    assert again.delete == (job(10).name,)
    assert [a.run_id for a in again.status.active] == [naming.scheduled_run_id(at(20))]


def test_sub_millisecond_intervals_are_rejected() -> None:
    t = views.TaskView(**{**task().__dict__, "spec": {"interval": "1.0005s", "handler": "echo"}})
    r = step(t, [], now=2)
    assert r.status.phase == "Invalid" and r.status.conditions[0].reason == "InvalidInterval"


def test_h_hashes_namespace_and_name_so_a_recreated_task_keeps_its_times() -> None:
    spec = {"schedule": "H H * * *"}
    first = step(task(spec), [], now=1)
    again = step(views.TaskView(**{**task(spec).__dict__, "uid": "a-new-uid-after-re-creation"}), [], now=1)
    assert first.status.next_run_time == again.status.next_run_time
    other = step(views.TaskView(**{**task(spec).__dict__, "name": "another-task"}), [], now=1)
    assert other.status.next_run_time != first.status.next_run_time


def test_a_refused_job_keeps_ready_false_until_the_claimed_attempt_gets_its_job() -> None:
    """The API server refused the claimed attempt's Job (Ready=False JobCreateFailed, set by the controller);
    the passes that wait to claim it anew must not write Ready=True over that."""
    t = task({"schedule": "@hourly"})
    first = step(t, [], now=3600)
    refused = first.status.model_copy(
        update={
            "conditions": [
                first.status.conditions[0].model_copy(
                    update={
                        "status": "False",
                        "reason": "JobCreateFailed",
                        "message": "could not create Job ...",
                    }
                )
            ]
        }
    )
    waiting = step(then(t, first, status=refused), [], now=3601)
    ready = {c.type: c for c in waiting.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "JobCreateFailed")
    assert waiting.status.phase == "Blocked"  # not Running: no Job runs
    created = step(then(t, first, status=refused), [job(3600, created=3600)], now=3602)
    ready = {c.type: c for c in created.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("True", "Scheduled")
    assert created.status.phase == "Running"


def test_a_task_stored_with_v1alpha1_day_durations_still_runs() -> None:
    # The API server refuses `1d` in new values now (change 16); a task stored before keeps running as it did.
    spec = {
        "timeout": "1d",
        "startTimeout": "1d",
        "backoff": {"initialDelay": "1d", "maxDelay": "2d", "jitter": 0},
    }
    legacy = task(spec)
    result = step(legacy, [], now=10)  # the first due time (*/10 s)
    assert (result.status.phase, [c.reason for c in result.status.conditions]) == ("Running", ["Scheduled"])
    built = manifests.build_job(
        task=legacy, spec=TaskSpec.model_validate(legacy.spec), run=result.create[0], image="i"
    )
    assert built["spec"]["activeDeadlineSeconds"] == 86400
    failed = step(then(legacy, result), [job(10, state=views.JobState.FAILED, done=11)], now=12)
    assert failed.status.active[0].next_retry_time == rfc3339(at(11) + timedelta(days=1))
