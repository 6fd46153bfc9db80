"""Claiming ahead: the next run is claimed in a status write made before its due time, so that at the due
time only its Job is created (no write comes first), and nothing else about a run changes.

Each case compares with what the same task does without claiming ahead where the answer must be the same:
a claim that is let go leaves the task as if it had never been claimed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import timedelta

from test_decision import _the_echo_changes_nothing, at, job, task, then

from cronlet._common import times
from cronlet._common.times import rfc3339
from cronlet._core import decision, naming, views

AHEAD = timedelta(seconds=60)
MINUTELY = {"schedule": "0 * * * * *"}  # second 0 of every minute


def step(
    t: views.TaskView,
    jobs: Sequence[views.JobObservation],
    now: float,
    *,
    mine: Collection[tuple[str, str]] = (),
    ahead: timedelta | None = AHEAD,
    alone_since: float | None = None,
) -> views.Plan:
    since = at(alone_since) if alone_since is not None else None
    result = decision.plan(t, jobs, now=at(now), claim_ahead=ahead, mine=mine, alone_since=since)
    # The echo as the reconciler takes it: the claims this pass wrote are its own.
    wrote = set(mine) | (claims(result) - {(a.job_name, a.claim_time) for a in t.status.active})
    _the_echo_changes_nothing(
        t, jobs, now, result, None, None, claim_ahead=ahead, mine=wrote, alone_since=since
    )
    return result


def claims(plan: views.Plan) -> set[tuple[str, str]]:
    return {(a.job_name, a.claim_time) for a in plan.status.active if a.claim_time is not None}


def test_a_run_due_within_the_lead_is_claimed_by_the_write_made_anyway() -> None:
    t = task(MINUTELY)
    r = step(t, [], now=30)  # the task's first status write, 30 s before its first due time
    assert r.create == ()
    [entry] = r.status.active
    assert entry.scheduled_time == rfc3339(at(60)) and entry.claim_time == rfc3339(at(30))
    assert entry.start_time == rfc3339(at(60)) and entry.attempt == 1
    assert decision.ahead(entry)
    assert r.status.last_due_time == rfc3339(at(60))  # handled: the due pass does not start it again
    assert r.status.next_run_time == rfc3339(at(120))
    assert r.status.counters.runs == 1
    assert r.wake_at == at(60)


def test_a_run_due_later_than_the_lead_is_claimed_by_a_pass_at_the_lead() -> None:
    t = task({"schedule": "@hourly"})
    r = step(t, [], now=5)
    assert r.status.active == []
    assert r.wake_at == at(3600) - AHEAD
    r2 = step(then(t, r), [], now=3540)
    assert [a.scheduled_time for a in r2.status.active] == [rfc3339(at(3600))]
    assert r2.wake_at == at(3600)


def test_at_the_due_time_its_claimant_creates_the_job_and_writes_nothing() -> None:
    """The point of it: no write before the create, and none after it while the run goes on."""
    t = task(MINUTELY)
    claimed = then(t, step(t, [], now=30))
    due = step(claimed, [], now=60.01, mine=claims(step(t, [], now=30)))
    assert due.create == (
        views.JobToCreate(run_id=naming.scheduled_run_id(at(60)), attempt=1, scheduled_time=at(60)),
    )
    assert due.status == claimed.status  # nothing to write
    running = step(claimed, [job(60, created=60.05)], now=60.1)
    assert running.create == () and running.status == claimed.status
    assert running.status.phase == "Running" and running.status.active_count == 1


def test_the_end_of_a_run_records_it_and_claims_the_next() -> None:
    t = task(MINUTELY)
    claimed = then(t, step(t, [], now=30))
    done = job(60, created=60.05, state=views.JobState.SUCCEEDED, done=62)
    r = step(claimed, [done], now=62.1)
    [entry] = r.status.history
    assert entry.outcome == "Succeeded" and entry.start_time == rfc3339(at(60))
    assert r.status.counters.runs == 2 and r.status.counters.succeeded == 1
    [nxt] = r.status.active
    assert nxt.scheduled_time == rfc3339(at(120)) and nxt.claim_time == rfc3339(at(62.1))


def test_a_claim_of_another_replica_is_left_to_it_then_taken_over_as_if_never_claimed() -> None:
    """Its claimant creates the Job within CREATE_WINDOW of the due time; after RECLAIM_AFTER the run is let
    go and due decides it again: the same plan as for a task that never claimed it."""
    t = task(MINUTELY)
    claimed = then(t, step(t, [], now=30))
    due = step(claimed, [], now=60.01)  # not ours
    assert due.create == ()
    assert due.wake_at == at(60) + decision.RECLAIM_AFTER
    late = 60 + decision.RECLAIM_AFTER.total_seconds()
    taken = step(claimed, [], now=late)
    never = step(t, [], now=late, ahead=None)
    assert taken.create == never.create
    assert [c.scheduled_time for c in taken.create] == [at(60)]
    assert taken.status.active == never.status.active  # claimed anew, at its own time
    assert taken.status.counters == never.status.counters
    assert taken.status.last_due_time == never.status.last_due_time


def test_a_new_leader_takes_over_at_once_a_claim_due_after_it_began_to_lead() -> None:
    """The old leader creates a claim's Job only while it leads, and it stopped before we began: no wait. A
    claim due before that (or within CREATE_WINDOW of it) may still be created by it: wait it out."""
    t = task(MINUTELY)
    claimed = then(t, step(t, [], now=30))
    r = step(claimed, [], now=60.01, alone_since=50)
    assert [c.scheduled_time for c in r.create] == [at(60)]
    assert r.status.active[0].claim_time == rfc3339(at(60.01))  # claimed anew, by us, before the create
    early = step(claimed, [], now=60.01, alone_since=56)
    assert early.create == () and early.wake_at == at(60) + decision.RECLAIM_AFTER


def test_after_a_long_downtime_missed_runs_are_what_they_are_without_claims() -> None:
    t = task(MINUTELY)
    claimed = then(t, step(t, [], now=30))
    r = step(claimed, [], now=300.5, mine=claims(step(t, [], now=30)))
    never = step(t, [], now=300.5, ahead=None)
    assert [c.scheduled_time for c in r.create] == [at(300)]
    assert r.status.history == never.status.history  # 4 missed, the latest started
    assert r.status.counters == never.status.counters


def test_its_claimant_past_the_create_window_does_not_create() -> None:
    t = task(MINUTELY)
    first = step(t, [], now=30)
    late = step(then(t, first), [], now=60 + decision.CREATE_WINDOW.total_seconds(), mine=claims(first))
    assert late.create == ()


def test_suspending_before_the_due_time_lets_the_claim_go_and_resuming_in_time_runs_it() -> None:
    t = task(MINUTELY)
    claimed = then(t, step(t, [], now=30))
    suspended = then(claimed, step(claimed, [], now=40), spec={**claimed.spec, "suspend": True})
    s = step(suspended, [], now=41)
    assert s.status.active == [] and s.status.counters.runs == 0 and s.create == ()
    assert s.status.phase == "Suspended"
    resumed = then(suspended, s, spec={**claimed.spec, "suspend": False})
    r = step(resumed, [], now=50)
    assert [a.scheduled_time for a in r.status.active] == [rfc3339(at(60))]  # claimed again
    assert step(then(resumed, r), [], now=60.01, mine=claims(r)).create != ()


def test_a_new_schedule_lets_a_claim_of_the_old_one_go() -> None:
    t = task(MINUTELY)
    claimed = then(t, step(t, [], now=30))
    changed = then(claimed, step(claimed, [], now=30), spec={**claimed.spec, "schedule": "30 * * * * *"})
    r = step(changed, [], now=40)
    assert [a.scheduled_time for a in r.status.active] == [rfc3339(at(90))]
    assert r.status.counters.runs == 1


def test_run_now_is_not_held_back_by_a_claim_and_forbid_then_skips_the_claimed_run() -> None:
    t = task({**MINUTELY, "concurrencyPolicy": "Forbid"})
    token = "2026-01-01T00:00:40Z"
    asked = then(t, step(t, [], now=30), run_now_token=token)
    manual = step(asked, [], now=40)
    assert [c.manual for c in manual.create] == [True]  # the run-now starts: the claimed run has not
    assert len(manual.status.active) == 2
    m = manual.status.active[-1]
    running = views.JobObservation(
        name=m.job_name,
        owner_uid=t.uid,
        run_id=m.run_id,
        attempt=1,
        scheduled_time=at(40),
        created=at(40),
        state=views.JobState.ACTIVE,
    )
    after = then(asked, manual)
    due = step(after, [running], now=60.01, mine=claims(manual))
    assert due.create == ()
    assert due.status.history[0].outcome == "Skipped"
    assert [a.run_id for a in due.status.active] == [m.run_id]


def test_without_a_lead_runs_are_claimed_at_their_due_time() -> None:
    t = task(MINUTELY)
    r = step(t, [], now=30, ahead=None)
    assert r.status.active == [] and r.wake_at == at(60)


def _run(t: views.TaskView, *, start: float, end: float, alone_since: float | None) -> views.TaskView:
    """Passes every half second from ``start`` as a replica that holds no claim of the status it starts
    from; the Jobs it creates run for 2 s and succeed."""
    jobs: dict[str, views.JobObservation] = {}
    mine: set[tuple[str, str]] = set()
    now = start
    while now <= end:
        ended = {n: j.created + timedelta(seconds=2) for n, j in jobs.items()}
        seen = [
            j if ended[n] > at(now)
            else dataclasses.replace(j, state=views.JobState.SUCCEEDED, completion_time=ended[n])
            for n, j in jobs.items()
        ]  # fmt: skip
        r = step(t, seen, now, mine=mine, alone_since=alone_since)
        before = {(a.job_name, a.claim_time) for a in t.status.active}
        mine |= {
            (a.job_name, a.claim_time) for a in r.status.active if (a.job_name, a.claim_time) not in before
        }
        for c in r.create:
            made = job(0, run_id=c.run_id, created=now)
            jobs[made.name] = dataclasses.replace(made, scheduled_time=c.scheduled_time)
        t = then(t, r)
        now += 0.5
    return t


def test_a_replica_that_restarts_without_its_claims_counts_every_due_time_once() -> None:
    """Killed just after it claimed the run of :04, back at :08.5 with no memory of its claim: every due time is
    then started, skipped or missed exactly once, and no due time gets two Jobs (found on the real cluster:
    due times handled while the claim waited were handled again when it was let go)."""
    t = task({"schedule": "*/4 * * * * *"})
    claimed = then(t, step(t, [], now=2.5))
    for alone_since in (None, 8.5, 0.0):  # without election; a new leader; our own lease, from a dead process
        end = _run(claimed, start=8.5, end=40, alone_since=alone_since)
        c = end.status.counters
        handled = int((times.parse(end.status.last_due_time or "") - at(4)).total_seconds() // 4) + 1
        assert c.runs + c.skipped + c.missed == handled, (alone_since, c, end.status.history)
        started = [h.scheduled_time for h in end.status.history if h.outcome == "Succeeded"]
        assert len(started) == len(set(started))


def test_an_edited_schedule_that_keeps_the_claimed_time_still_lets_the_claim_go() -> None:
    """Else its due times before the claimed one were never handled: the cursor stood at the claim. (Found by
    review: without claiming ahead, :40 starts.)"""
    t = task(MINUTELY)
    r = step(t, [], now=30)
    tt = then(t, r, spec={**t.spec, "schedule": "*/10 * * * * *"})
    edited = step(tt, [], now=35, mine=claims(r))
    assert [a.scheduled_time for a in edited.status.active] == [rfc3339(at(40))]  # the new schedule's
    due = step(then(tt, edited), [], now=40.01, mine=claims(edited))
    assert [c.scheduled_time for c in due.create] == [at(40)]


def test_an_attempt_claimed_ahead_that_did_not_start_is_retried_as_attempt_2() -> None:
    """Its Job is deleted for not starting; when its deletion is seen it is a failed attempt waiting for its
    retry, not a claim never created (which would create attempt 1 again). Found by review."""
    t = task({**MINUTELY, "startTimeout": "30s"})
    r = step(t, [], now=30)
    claimed = then(t, r)
    step(claimed, [], now=60.01, mine=claims(r))
    pending = job(60, created=60.05, started=False)
    failed = decision.plan(
        claimed, [pending], now=at(90.1), not_started={pending.name: "ImagePullBackOff: no such image"}
    )
    assert failed.delete == (pending.name,)
    gone = step(then(claimed, failed), [], now=90.3)
    assert gone.create == () and gone.status.active[0].next_retry_time is not None
    retried = step(then(claimed, failed), [], now=110)
    assert [(c.run_id, c.attempt) for c in retried.create] == [(naming.scheduled_run_id(at(60)), 2)]
