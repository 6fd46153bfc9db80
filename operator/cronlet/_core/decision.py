"""The reconcile decision for one ScheduledTask: what it looks like now -> what to do and what to record.

``plan()`` is a pure function of the task (spec + status), its Jobs as observed, and the clock. It returns
the Jobs to create and delete, the complete new status (written once, by the controller), the Events a user
must see, the metric observations, and when to look again. It never talks to the API and never reads the
clock, so every edge (restart, duplicate create, downtime, retries) is a table-driven unit test.

How restarts stay exact: everything the decision needs is in status or in the Jobs. Job names are derived
from (task, run, attempt), so re-planning after a crash reaches the same names; Jobs the status does not
know yet (created just before a crash) are adopted rather than created again; ``status.lastDueTime`` is
the cursor past which due times are still to be handled.

One pass (``_Pass``) goes through the steps in order: adopt unknown Jobs, move unfinished runs along, handle
run-now, handle due times, pick Jobs to clean up; then ``status.build`` assembles the new status.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from cronlet._common import times
from cronlet._core import events, naming, schedule, status, validation
from cronlet._core.model import (
    ActiveRun,
    ConditionReason,
    Counters,
    EventKind,
    HistoryEntry,
    OutboxEntry,
    TaskSpec,
)
from cronlet._core.views import (
    AttemptFinished,
    Event,
    EventsDropped,
    Failure,
    JobObservation,
    JobState,
    JobToCreate,
    Observation,
    Plan,
    RetryStarted,
    RunFinished,
    TaskView,
)

MESSAGE_LIMIT = 1024  # characters of a handler's message kept in history
EVENT_MESSAGE_LIMIT = 1000
DEADLINE_GRACE = 1.0  # seconds added to startingDeadlineSeconds for wake-up latency
# An attempt claimed in status whose Job is not there (yet). Whoever claimed it creates its Job at once after
# the claim write, and only within CREATE_WINDOW of it (the controller checks, by its monotonic clock). So:
# - younger than RECLAIM_AFTER: its claimant may still be creating it; wait (never create it beside them);
# - then, up to CLAIM_GRACE: not created (the claimant stopped, or the create failed): claim it anew, with a
#   write of our own, and create it;
# - older: its Job was created and has disappeared (deleted before its end was seen): a failed attempt.
# RECLAIM_AFTER leaves CREATE_WINDOW plus a margin for the replicas' clocks (claimTime is wall time).
CREATE_WINDOW = timedelta(seconds=5)
RECLAIM_AFTER = timedelta(seconds=15)
CLAIM_GRACE = timedelta(seconds=60)
# Claiming ahead (``plan(claim_ahead=...)``): a task with no unfinished run whose next due time is at most
# ``claim_ahead`` away claims that run in the status write it makes anyway (the end of the run before), or in
# one made ``claim_ahead`` before the due time. At the due time the claimant only creates the Job: no write
# comes before it, and the run's start is already recorded. A claim ahead is an entry of ``status.active``
# whose claimTime is before its scheduledTime. For the fence, its claim counts from the due time: its
# claimant creates the Job only within CREATE_WINDOW of the due time (by its monotonic clock, from when the
# claim went out), and anyone else waits RECLAIM_AFTER past the due time before it takes the run over.


def plan(
    task: TaskView,
    jobs: Sequence[JobObservation],
    *,
    now: datetime,
    messages: Mapping[str, str] | None = None,
    not_started: Mapping[str, str] | None = None,
    outbox: events.Policy | None = None,
    claim_ahead: timedelta | None = None,
    mine: Collection[tuple[str, str]] = (),
    alone_since: datetime | None = None,
) -> Plan:
    """Decide what to do for ``task`` at ``now``.

    ``messages`` maps finished Job names to handler messages; ``not_started`` maps the Jobs that
    ``overdue_starts`` named to why their pod has not started (``Reason: message``). ``outbox`` is given
    when the operator publishes task events: each transition of this pass is then recorded in
    ``status.events`` by the same status write, and what the sinks acknowledged is dropped from it.
    ``claim_ahead``: claim the next due run up to this long before it (None: at its due time). ``mine``: the
    claims in ``task.status.active`` that this replica wrote, as (jobName, claimTime); a claim ahead that is
    due is created without a write only by the replica that wrote it. ``alone_since``: under leader election,
    since when no other replica can have acted (None without election): a claim of another replica due later
    than that is not theirs to create any more (only a leader creates), so it is taken over at its due time.
    """
    now = now.astimezone(UTC)
    own = [j for j in jobs if j.owner_uid == task.uid]
    spec: TaskSpec | None = None
    sched: schedule.Schedule | None = None
    invalid: validation.InvalidSpec | None = None
    try:
        spec, sched = validation.compile_task(task)
    except validation.InvalidSpec as exc:
        invalid = exc
        try:  # runs already going still finish and are recorded, with the last spec that parses
            spec = validation.parse_spec(task.spec)
        except validation.InvalidSpec:
            spec = None

    work = _Pass(
        task,
        now=now,
        own=own,
        messages=messages or {},
        not_started=not_started or {},
        claim_ahead=claim_ahead,
        mine=frozenset(mine),
        alone_since=alone_since,
    )
    token = task.status.last_run_now_token
    if spec is not None:
        work.adopt(spec)
        work.after_reset()
        work.progress(spec)
        work.claims_ahead(spec, sched)
    if spec is not None and sched is not None:
        token = work.run_now(spec)
        work.due(spec, sched)
        work.cleanup(spec)

    reason_message = (invalid.reason, invalid.message) if invalid is not None else None
    new_status = status.build(task, spec=spec, invalid=reason_message, outcome=work.outcome(token))
    if outbox is not None:
        folded = events.fold(
            task.status.events,
            work.transitions,
            policy=outbox,
            spec_events=spec.events if spec is not None else None,
        )
        unchanged = new_status.model_copy(update={"events": task.status.events})
        # Acknowledgements alone are no reason for a write: a later one folds them.
        written = not (folded.recorded == 0 and unchanged == task.status)
        new_status = new_status.model_copy(update={"events": folded.outbox}) if written else unchanged
        if folded.dropped and written:
            text = (
                f"the event outbox is full: {folded.dropped} oldest unpublished event(s) dropped "
                f"({folded.outbox.dropped} since creation); are the event sinks reachable?"
            )
            work.events.append(Event("Warning", "EventsDropped", text))
            work.observations.append(EventsDropped(folded.dropped))
    else:
        # An operator without sinks (rolled back, or started without its flags) keeps what is recorded: the
        # next one with sinks sends it, and numbers on from it.
        new_status = new_status.model_copy(update={"events": task.status.events})
    if invalid is not None:
        ready = next((c for c in task.status.conditions if c.type == "Ready"), None)
        if ready is None or ready.status != "False" or ready.message != invalid.message:
            work.events.append(Event("Warning", invalid.reason, invalid.message))
    limit = start_limit(spec) if spec is not None and work.create else None
    if limit is not None:
        # The Jobs to create are not in `jobs` yet: look again when their start limit is over, since no event
        # of theirs wakes a pass while their pods do not start. (They are created a moment after now: a pass
        # that comes a hair early sees them in the store and waits for their own limit.)
        work.wake.append(now + limit)
    return Plan(
        create=tuple(work.create),
        delete=tuple(work.delete),
        status=new_status,
        events=tuple(work.events),
        observations=tuple(work.observations),
        wake_at=min(work.wake) if work.wake else None,
        spec=spec,
    )


def start_limit(spec: TaskSpec) -> timedelta | None:
    """How long an attempt may take to start (``spec.startTimeout``); None when the limit is off."""
    limit = schedule.parse_duration(spec.start_timeout)
    return limit if limit > timedelta(0) else None


def overdue_starts(task: TaskView, jobs: Sequence[JobObservation], *, now: datetime) -> list[str]:
    """Jobs of unfinished runs whose pod has not started within the start limit: the controller reads why
    (their pods, or the Job's Events) and hands the reasons to ``plan`` as ``not_started``."""
    try:
        spec = validation.parse_spec(task.spec)
        limit = start_limit(spec)
    except (validation.InvalidSpec, ValueError):
        return []
    if limit is None:
        return []
    by_name = {j.name: j for j in jobs if j.owner_uid == task.uid}
    overdue = []
    for entry in task.status.active:
        job = by_name.get(entry.job_name)
        if (
            job is not None
            and job.state is JobState.ACTIVE
            and not job.started
            and job.created + limit <= now
        ):
            overdue.append(job.name)
    return overdue


class _Pass:
    """The scratch state of one planning pass; never escapes ``plan``."""

    def __init__(
        self,
        task: TaskView,
        *,
        now: datetime,
        own: Sequence[JobObservation],
        messages: Mapping[str, str],
        not_started: Mapping[str, str],
        claim_ahead: timedelta | None = None,
        mine: frozenset[tuple[str, str]] = frozenset(),
        alone_since: datetime | None = None,
    ) -> None:
        old = task.status
        self.claim_ahead = claim_ahead
        self.mine = mine
        self.alone_since = alone_since
        self.task = task
        self.now = now
        self.own = own
        self.by_name = {j.name: j for j in own}
        self.messages = messages
        self.not_started = not_started
        self.active: list[ActiveRun] = list(old.active)
        self.counters: dict[str, int] = old.counters.model_dump()
        self.history: list[HistoryEntry] = []  # new entries, oldest first
        self.create: list[JobToCreate] = []
        self.delete: list[str] = []
        self.events: list[Event] = []
        self.observations: list[Observation] = []
        self.wake: list[datetime] = []
        self.last_schedule = times.parse_optional(old.last_schedule_time)
        self.last_success = times.parse_optional(old.last_successful_time)
        self.last_result = old.last_result
        self.run_result: tuple[bool, ConditionReason, str] | None = None
        self.next_due: datetime | None = None
        self.cursor = times.parse_optional(old.last_due_time)  # the most recent due time handled
        self.started: set[str] = set()  # run ids started by this pass
        self.forgotten: list[JobObservation] = []  # finished Jobs a reset status knows nothing of
        self.awaiting_create = False  # a claimed attempt has no Job yet (a refused create keeps Ready=False)
        self.transitions: list[OutboxEntry] = []  # run events of this pass, numbered by events.fold

    def emit(
        self,
        kind: EventKind,
        *,
        run_id: str,
        scheduled_time: str,
        attempt: int = 0,
        at: datetime | None = None,
        job_name: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        start_time: str | None = None,
        completion_time: str | None = None,
        next_retry_time: str | None = None,
        count: int | None = None,
    ) -> None:
        """Record one run transition for the task-event outbox (kept only if the operator has sinks)."""
        self.transitions.append(
            OutboxEntry(
                sequence=0,
                kind=kind,
                time=times.rfc3339(at or self.now),
                run_id=run_id,
                attempt=attempt,
                scheduled_time=scheduled_time,
                manual=naming.is_manual(run_id),
                job_name=job_name,
                reason=reason,
                message=message or None,
                start_time=start_time or None,
                completion_time=completion_time,
                next_retry_time=next_retry_time,
                count=count,
            )
        )

    def emit_started(self, entry: ActiveRun, *, at: datetime | None = None) -> None:
        self.emit(
            "started",
            run_id=entry.run_id,
            scheduled_time=entry.scheduled_time,
            attempt=entry.attempt,
            at=at,
            job_name=entry.job_name,
            start_time=entry.start_time,
        )

    def outcome(self, token: str | None) -> status.Outcome:
        return status.Outcome(
            now=self.now,
            active=self.active,
            counters=Counters(**self.counters),
            new_history=self.history,
            cursor=self.cursor,
            last_schedule=self.last_schedule,
            last_success=self.last_success,
            last_result=self.last_result,
            run_result=self.run_result,
            next_due=self.next_due,
            run_now_token=token,
            awaiting_create=self.awaiting_create,
        )

    # ------------------------------------------------------------------ steps

    def adopt(self, spec: TaskSpec) -> None:
        """Take in Jobs the status does not know yet: created just before a crash or a lost status write.

        Under Replace the lost pass had also replaced the runs before it; that is done again here, so an
        adopted run never runs alongside the runs it replaced.
        """
        by_run = {a.run_id: i for i, a in enumerate(self.active)}
        for job in sorted(self.own, key=lambda j: (j.scheduled_time, j.attempt)):
            if job.deleting:
                continue
            if job.run_id in by_run:
                index = by_run[job.run_id]
                known = self.active[index]
                if job.attempt > known.attempt:
                    self.active[index] = known.model_copy(
                        update={"job_name": job.name, "attempt": job.attempt, "next_retry_time": None}
                    )
                    self.counters["retries"] += job.attempt - known.attempt
                    self.emit_started(self.active[index], at=job.created)
                continue
            if self.last_schedule is not None and job.scheduled_time <= self.last_schedule:
                continue  # an old run, already recorded (or trimmed from history)
            manual = naming.is_manual(job.run_id)
            if not manual and self.cursor is not None and job.scheduled_time <= self.cursor:
                continue  # its due time was handled (skipped, missed or run): never a new result
            if self.cursor is None and job.state is not JobState.ACTIVE:
                # No record at all, yet finished Jobs exist: the status was reset or lost. Do not record them
                # again as new results (nor retry their failures); count due times from the newest of them.
                self.forgotten.append(job)
                continue
            if spec.concurrency_policy == "Replace" and self.active:
                self._admit(spec, job.scheduled_time, "run-now" if manual else "due run", run_id=job.run_id)
                by_run = {}
            self.active.append(
                ActiveRun(
                    job_name=job.name,
                    scheduled_time=times.rfc3339(job.scheduled_time),
                    attempt=job.attempt,
                    run_id=job.run_id,
                    start_time=times.rfc3339(job.created),
                )
            )
            self.emit_started(self.active[-1], at=job.created)
            by_run[job.run_id] = len(self.active) - 1
            self.counters["runs"] += 1
            self.last_schedule = job.scheduled_time
            if not manual and (self.cursor is None or job.scheduled_time > self.cursor):
                self.cursor = job.scheduled_time  # its due time is handled: do not start it again

    def after_reset(self) -> None:
        """A reset status with finished Jobs: record none of them again, catch up on nothing, say so once."""
        if not self.forgotten:
            return
        newest = max(j.scheduled_time for j in self.forgotten)
        self.last_schedule = max(self.last_schedule, newest) if self.last_schedule else newest
        # Which due times ran since is unknown (the history limits may have pruned their Jobs): none is
        # started late, none is recorded as missed. Counting continues from now.
        self.cursor = max(self.cursor, self.now) if self.cursor else self.now
        text = (
            f"status has no record of {len(self.forgotten)} finished Job(s) of this task (status reset or lost): "
            "they are not recorded again, and due times count on from now"
        )
        self.events.append(Event("Warning", "StatusReset", text))

    def progress(self, spec: TaskSpec) -> None:
        """Move each unfinished run along: running, finished, failed -> backoff -> next attempt."""
        still: list[ActiveRun] = []
        for entry in self.active:
            kept = self._progress_one(spec, entry)
            if kept is not None:
                still.append(kept)
        self.active = still

    def _progress_one(self, spec: TaskSpec, entry: ActiveRun) -> ActiveRun | None:
        """The run after this pass, or None when it ended."""
        retry_at = times.parse_optional(entry.next_retry_time)
        if retry_at is not None and entry.attempt <= spec.max_retries:
            return self._retry_when_due(entry, retry_at)
        if retry_at is not None:  # maxRetries was lowered while this run waited
            text = (
                f"run of {entry.scheduled_time} failed after {entry.attempt} attempts: maxRetries is now "
                f"{spec.max_retries}"
            )
            self._finish(entry, "Failed", self.by_name.get(entry.job_name), text, reason="RetriesExhausted")
            self.events.append(Event("Warning", "RetriesExhausted", text))
            self.run_result = (False, "RetriesExhausted", text)
            return None
        job = self.by_name.get(entry.job_name)
        if job is None and ahead(entry):
            return entry  # not created yet: claims_ahead decides
        if job is not None and job.state is JobState.ACTIVE and job.name in self.not_started:
            return self._not_started(spec, entry, job)
        if job is not None and job.state is JobState.ACTIVE:
            limit = start_limit(spec)
            if not job.started and limit is not None:
                self.wake.append(job.created + limit)  # nothing else wakes us if the pod never starts
            return entry
        if job is not None and job.state is JobState.SUCCEEDED:
            self.observations.append(AttemptFinished("Succeeded"))
            self._finish(entry, "Succeeded", job, self.messages.get(job.name, ""), reason="Succeeded")
            self.last_success = job.completion_time or self.now
            self.run_result = (True, "Succeeded", f"run of {entry.scheduled_time} succeeded")
            return None
        claimed = times.parse_optional(entry.claim_time)
        if job is None and claimed is not None and self.now - claimed < RECLAIM_AFTER:
            self.wake.append(claimed + RECLAIM_AFTER)  # its claimant may still create it: do not race them
            self.awaiting_create = True
            return entry
        if job is None and claimed is not None and self.now - claimed < CLAIM_GRACE:
            self.awaiting_create = True
            return self._claim_again(entry)
        # Failed, or the Job is gone before we saw it finish (deleted by hand, or lost).
        self.observations.append(AttemptFinished("Failed"))
        if job is None:
            failure, ended = Failure.RETRYABLE, self.now
            message = f"Job {entry.job_name} disappeared before it finished"
        else:
            failure, ended = job.failure or Failure.RETRYABLE, job.completion_time or self.now
            message = self.messages.get(job.name) or job.reason or "attempt failed"
            if failure is Failure.TIMEOUT:
                message = f"attempt timed out after {spec.timeout}" + (f": {message}" if message else "")
        if failure is not Failure.PERMANENT and entry.attempt <= spec.max_retries:
            retry_at = ended + self._backoff(spec, entry)
            entry = entry.model_copy(update={"next_retry_time": times.rfc3339(retry_at)})
            why = "AttemptTimedOut" if failure is Failure.TIMEOUT else "AttemptFailed"
            self._emit_retrying(entry, why, message, at=ended)
            return self._retry_when_due(entry, retry_at)
        reason: ConditionReason
        if failure is Failure.PERMANENT:
            reason, text = "PermanentFailure", f"run of {entry.scheduled_time} failed permanently: {message}"
        else:
            reason = "RetriesExhausted"
            text = f"run of {entry.scheduled_time} failed after {entry.attempt} attempts: {message}"
        self._finish(entry, "Failed", job, message, reason=reason)
        text = _clip(text, EVENT_MESSAGE_LIMIT)
        self.events.append(Event("Warning", reason, text))
        self.run_result = (False, reason, text)
        return None

    def claims_ahead(self, spec: TaskSpec, sched: schedule.Schedule | None) -> None:
        """Runs claimed ahead whose Job is not there: wait for the due time, create, wait, or let go.

        Letting go takes the run out of ``active`` as if it had never been claimed (``_let_go``): its due time
        is not run (suspended, no longer a due time of the schedule), or ``due`` decides it again, with
        concurrencyPolicy, startingDeadlineSeconds and missed runs applied as for any run; or, if later due
        times were handled while it waited, it is recorded missed.
        """
        kept: list[ActiveRun] = []
        others = [a for a in self.active if not ahead(a) or a.job_name in self.by_name]
        edited = self._schedule_edited(spec)
        for entry in self.active:
            if entry in others:
                kept.append(entry)
                continue
            at = times.parse(entry.scheduled_time)
            if spec.suspend or edited or sched is None or not _is_due_time(sched, at):
                # Nothing is owed for that due time now: suspended, or claimed under another schedule (whose
                # due times before the edit were never promised: due() counts the new one's from now).
                self._let_go(entry, decide_again=False)
            elif self.now < at:
                self.wake.append(at)
                kept.append(entry)
            elif others and spec.concurrency_policy != "Allow":
                self._let_go(entry, decide_again=True)  # a run-now started meanwhile: the policy decides
            elif (entry.job_name, entry.claim_time) in self.mine and self.now < at + CREATE_WINDOW:
                self.create.append(JobToCreate(run_id=entry.run_id, attempt=1, scheduled_time=at))
                kept.append(entry)
            elif (entry.job_name, entry.claim_time) not in self.mine and self._led_before(at):
                self._let_go(entry, decide_again=True)  # its claimant stopped leading before it fell due
            elif self.now < at + RECLAIM_AFTER:
                self.wake.append(at + RECLAIM_AFTER)  # its claimant may still create it: do not race them
                self.awaiting_create = True
                kept.append(entry)
            else:
                self._let_go(entry, decide_again=True)  # not created by its claimant: due decides again
        self.active = kept

    def _schedule_edited(self, spec: TaskSpec) -> bool:
        """Whether the schedule (or its zone) differs from the one the status counts due times under."""
        old = self.task.status.schedule_key
        return old is not None and old != naming.schedule_key(spec)

    def _not_due_yet(self, entry: ActiveRun) -> bool:
        """A run claimed ahead whose due time has not come (nor its Job)."""
        return (
            ahead(entry)
            and entry.job_name not in self.by_name
            and self.now < times.parse(entry.scheduled_time)
        )

    def _led_before(self, due: datetime) -> bool:
        """Whether no other replica can have acted since before ``due`` (with CREATE_WINDOW of margin for the
        clocks): only a leader creates the Job of a claim, at its due time."""
        return self.alone_since is not None and due > self.alone_since + CREATE_WINDOW

    def _let_go(self, entry: ActiveRun, *, decide_again: bool) -> None:
        """Forget a run claimed ahead and not created. ``decide_again``: its due time is due again (to
        ``due``), or recorded missed if later due times were handled meanwhile; else the due times up to now
        count as handled (suspended, or no longer a due time)."""
        self.counters["runs"] = max(0, self.counters["runs"] - 1)
        at = times.parse(entry.scheduled_time)
        if not decide_again:
            if self.cursor is not None and self.cursor > self.now:
                self.cursor = self.now
        elif self.cursor is None or self.cursor <= at:
            self.cursor = at - timedelta(microseconds=1)
        else:  # a later due time was handled while it waited (skipped, or started under Allow): missed
            text = f"due run of {entry.scheduled_time} was claimed by another replica, which did not start it"
            self.counters["missed"] += 1
            self.history.append(
                HistoryEntry(scheduled_time=entry.scheduled_time, outcome="Missed", message=text)
            )
            self.events.append(Event("Warning", "MissedSchedule", text))
            self.observations.append(RunFinished("Missed", count=1))
            self.emit(
                "missed",
                run_id=entry.run_id,
                scheduled_time=entry.scheduled_time,
                reason="MissedSchedule",
                message=text,
                count=1,
            )

    def _not_started(self, spec: TaskSpec, entry: ActiveRun, job: JobObservation) -> ActiveRun | None:
        """An attempt whose pod did not start within the start limit: a failed attempt, its Job deleted."""
        why = self.not_started[job.name]
        text = _clip(
            f"attempt {entry.attempt} did not start within {spec.start_timeout}: {why}", MESSAGE_LIMIT
        )
        event = _clip(f"Job {job.name}: {text}", EVENT_MESSAGE_LIMIT)
        self.events.append(Event("Warning", "AttemptNotStarted", event))
        self._delete(job.name)  # its pod would go on waiting (or pulling) otherwise
        self.observations.append(AttemptFinished("Failed"))
        if entry.attempt <= spec.max_retries:
            retry_at = self.now + self._backoff(spec, entry)
            entry = entry.model_copy(update={"next_retry_time": times.rfc3339(retry_at)})
            self._emit_retrying(entry, "AttemptNotStarted", text)
            return self._retry_when_due(entry, retry_at)
        self._finish(entry, "Failed", None, text, reason="AttemptNotStarted")
        summary = f"run of {entry.scheduled_time} failed after {entry.attempt} attempts: {text}"
        summary = _clip(summary, EVENT_MESSAGE_LIMIT)
        reason: ConditionReason = "RetriesExhausted" if entry.attempt > 1 else "AttemptNotStarted"
        self.run_result = (False, reason, summary)
        if entry.attempt > 1:
            self.events.append(Event("Warning", "RetriesExhausted", summary))
        return None

    def _emit_retrying(
        self, entry: ActiveRun, reason: str, message: str, *, at: datetime | None = None
    ) -> None:
        self.emit(
            "retrying",
            run_id=entry.run_id,
            scheduled_time=entry.scheduled_time,
            attempt=entry.attempt,
            at=at,
            job_name=entry.job_name,
            reason=reason,
            message=message,
            start_time=entry.start_time,
            next_retry_time=entry.next_retry_time,
        )

    def _claim_again(self, entry: ActiveRun) -> ActiveRun:
        """Claimed but not created (yet): claim it anew, so that the create again follows a write of ours."""
        scheduled = times.parse(entry.scheduled_time)
        manual = naming.is_manual(entry.run_id)
        self.create.append(
            JobToCreate(run_id=entry.run_id, attempt=entry.attempt, scheduled_time=scheduled, manual=manual)
        )
        return entry.model_copy(update={"claim_time": times.rfc3339(self.now)})

    def _backoff(self, spec: TaskSpec, entry: ActiveRun) -> timedelta:
        return schedule.backoff_delay(
            failed_attempt=entry.attempt,
            initial=schedule.parse_duration(spec.backoff.initial_delay),
            multiplier=spec.backoff.multiplier,
            max_delay=schedule.parse_duration(spec.backoff.max_delay),
            jitter=spec.backoff.jitter,
            rand=schedule.stable_fraction(f"{self.task.uid}/{entry.run_id}/{entry.attempt}"),
        )

    def _retry_when_due(self, entry: ActiveRun, retry_at: datetime) -> ActiveRun:
        """Start the next attempt if its backoff is over, else wake up when it is."""
        if retry_at <= self.now:
            return self._next_attempt(entry)
        self.wake.append(retry_at)
        return entry

    def _next_attempt(self, entry: ActiveRun) -> ActiveRun:
        attempt = entry.attempt + 1
        scheduled = times.parse(entry.scheduled_time)
        self.create.append(
            JobToCreate(
                run_id=entry.run_id,
                attempt=attempt,
                scheduled_time=scheduled,
                manual=naming.is_manual(entry.run_id),
            )
        )
        self.counters["retries"] += 1
        self.observations.append(RetryStarted())
        started = entry.model_copy(
            update={
                "job_name": naming.job_name(self.task.name, entry.run_id, attempt),
                "attempt": attempt,
                "next_retry_time": None,
                "claim_time": times.rfc3339(self.now),
            }
        )
        self.emit_started(started)
        return started

    def _finish(
        self, entry: ActiveRun, outcome: str, job: JobObservation | None, message: str, *, reason: str
    ) -> None:
        ended = (job.completion_time if job is not None else None) or self.now
        self.emit(
            "succeeded" if outcome == "Succeeded" else "failed",
            run_id=entry.run_id,
            scheduled_time=entry.scheduled_time,
            attempt=entry.attempt,
            at=ended,
            job_name=entry.job_name,
            reason=reason,
            message=message,
            start_time=entry.start_time,
            completion_time=times.rfc3339(ended),
        )
        started = times.parse_optional(entry.start_time)
        self.history.append(
            HistoryEntry(
                scheduled_time=entry.scheduled_time,
                start_time=entry.start_time or None,
                completion_time=times.rfc3339(ended),
                attempts=entry.attempt,
                outcome=outcome,  # type: ignore[arg-type]
                message=_clip(message, MESSAGE_LIMIT),
                job_name=entry.job_name,
            )
        )
        self.counters["succeeded" if outcome == "Succeeded" else "failed"] += 1
        self.last_result = outcome
        duration = (ended - started).total_seconds() if started else None
        self.observations.append(RunFinished(outcome, duration))

    def run_now(self, spec: TaskSpec) -> str | None:
        """Start a run for a new value of the run-now annotation; returns the value handled last."""
        token = self.task.run_now_token
        previous = self.task.status.last_run_now_token
        if not token or token == previous:
            return previous
        run_id = naming.manual_run_id(token, previous)
        if (
            any(a.run_id == run_id for a in self.active)
            or naming.job_name(self.task.name, run_id, 1) in self.by_name
        ):
            return token  # already started (adopted after a restart)
        if spec.suspend:
            self.counters["skipped"] += 1
            self.history.append(
                HistoryEntry(
                    scheduled_time=times.rfc3339(self.now),
                    outcome="Skipped",
                    message="run-now ignored: the task is suspended",
                )
            )
            self.observations.append(RunFinished("Skipped"))
            self.emit(
                "skipped",
                run_id=run_id,
                scheduled_time=times.rfc3339(self.now),
                reason="Suspended",
                message="run-now ignored: the task is suspended",
            )
            return token
        if self._admit(spec, self.now, "run-now", run_id=run_id):
            self._start(run_id, self.now, manual=True)
        return token

    def due(self, spec: TaskSpec, sched: schedule.Schedule) -> None:
        """Handle due times in (cursor, now], move the cursor, and ask to wake at the next one."""
        if spec.suspend:
            return
        cursor = self.cursor if self.cursor is not None else self.task.created
        old = self.task.status
        changed = self._schedule_edited(spec)
        if old.phase in ("Suspended", "Invalid") or changed:
            # Just resumed or repaired, or a new schedule: what fell due before now is not run later (under a
            # new schedule, due times before the change were never promised).
            cursor = max(cursor, schedule.latest_at_or_before(sched, self.now) or cursor)
        due = schedule.due_runs(sched, since=cursor, now=self.now)
        if due.latest is not None:
            self._missed_and_latest(spec, sched, due)
            cursor = due.latest
        self.cursor = cursor
        self.next_due = schedule.next_after(sched, cursor)
        if self.next_due is None:
            return
        self.wake.append(self.next_due)
        if self.claim_ahead is None or self.active:
            return  # a run still going: its end (or the due time) decides, with concurrencyPolicy
        if self.next_due - self.now > self.claim_ahead:
            self.wake.append(self.next_due - self.claim_ahead)
            return
        self._claim(self.next_due)
        self.cursor = self.next_due
        self.next_due = schedule.next_after(sched, self.cursor)
        if self.next_due is not None:
            self.wake.append(self.next_due)

    def _claim(self, due: datetime) -> None:
        """Claim the run of ``due`` (after now) in this pass's write; its Job is created at ``due``."""
        self._first_attempt(naming.scheduled_run_id(due), due, start=due)
        self.wake.append(due)

    def _first_attempt(self, run_id: str, due: datetime, *, start: datetime) -> None:
        """Record the run's first attempt in ``active``, claimed now."""
        self.active.append(
            ActiveRun(
                job_name=naming.job_name(self.task.name, run_id, 1),
                scheduled_time=times.rfc3339(due),
                attempt=1,
                run_id=run_id,
                start_time=times.rfc3339(start),
                claim_time=times.rfc3339(self.now),
            )
        )
        self.counters["runs"] += 1
        self.last_schedule = max(self.last_schedule, due) if self.last_schedule else due

    def _missed_and_latest(self, spec: TaskSpec, sched: schedule.Schedule, due: schedule.DueRuns) -> None:
        """Record the due runs that will not start as Missed, and start the latest if it is still in time."""
        assert due.latest is not None
        deadline = spec.starting_deadline_seconds
        # A second of grace: the wake-up itself comes a few milliseconds after the due time.
        late = (self.now - due.latest).total_seconds()
        start_latest = deadline is None or late <= deadline + DEADLINE_GRACE
        missed = due.count - (1 if start_latest else 0)
        if start_latest:
            last_missed = schedule.latest_at_or_before(sched, due.latest - timedelta(microseconds=1))
        else:
            last_missed = due.latest
        if missed > 0 and last_missed is not None:
            many = "more than " if due.kind is schedule.DueKind.MANY else ""
            if deadline is not None:
                why = f"not started within startingDeadlineSeconds={deadline}"
            else:
                why = "fell due while the operator was not running; only the most recent is started"
            text = f"{many}{missed} due run(s) up to {times.rfc3339(last_missed)} {why}"
            self.counters["missed"] += missed
            self.history.append(
                HistoryEntry(scheduled_time=times.rfc3339(last_missed), outcome="Missed", message=text)
            )
            self.events.append(Event("Warning", "MissedSchedule", text))
            self.observations.append(RunFinished("Missed", count=missed))
            self.emit(
                "missed",
                run_id=naming.scheduled_run_id(last_missed),
                scheduled_time=times.rfc3339(last_missed),
                reason="MissedSchedule",
                message=text,
                count=missed,
            )
        run_id = naming.scheduled_run_id(due.latest)
        if start_latest and self._admit(spec, due.latest, "due run", run_id=run_id):
            self._start(run_id, due.latest, manual=False)

    def _admit(self, spec: TaskSpec, due: datetime, what: str, *, run_id: str) -> bool:
        """Apply concurrencyPolicy to a run about to start; True when it may start."""
        # A run claimed ahead and not due yet does not count: at its due time the policy is applied to it.
        going = [a for a in self.active if not self._not_due_yet(a)]
        if not going or spec.concurrency_policy == "Allow":
            return True
        fresh = [a for a in going if a.run_id in self.started]
        if spec.concurrency_policy == "Forbid" or fresh:
            # Replace never stops a run this same pass started (a run-now and a due time at one moment).
            if fresh:
                why = "a run started at the same moment (run-now) is unfinished"
            else:
                why = "an earlier run is unfinished (concurrencyPolicy Forbid)"
            self.counters["skipped"] += 1
            self.history.append(
                HistoryEntry(
                    scheduled_time=times.rfc3339(due), outcome="Skipped", message=f"{what} skipped: {why}"
                )
            )
            self.observations.append(RunFinished("Skipped"))
            reason = "StartedAtTheSameMoment" if fresh else "ConcurrencyForbid"
            self.emit("skipped", run_id=run_id, scheduled_time=times.rfc3339(due), reason=reason, message=why)
            return False
        for entry in going:  # Replace
            if entry.next_retry_time is None:
                self.delete.append(entry.job_name)
            self.history.append(
                HistoryEntry(
                    scheduled_time=entry.scheduled_time,
                    start_time=entry.start_time or None,
                    completion_time=times.rfc3339(self.now),
                    attempts=entry.attempt,
                    outcome="Replaced",
                    message=f"replaced by the {what} of {times.rfc3339(due)} (concurrencyPolicy Replace)",
                    job_name=entry.job_name,
                )
            )
            self.observations.append(RunFinished("Replaced"))
            self.last_result = "Replaced"
            self.emit(
                "replaced",
                run_id=entry.run_id,
                scheduled_time=entry.scheduled_time,
                attempt=entry.attempt,
                job_name=entry.job_name,
                reason="Replaced",
                message=f"replaced by the {what} of {times.rfc3339(due)}",
                start_time=entry.start_time,
                completion_time=times.rfc3339(self.now),
            )
        text = f"stopped {len(going)} unfinished run(s) for the {what} of {times.rfc3339(due)}"
        self.events.append(Event("Normal", "Replaced", text))
        self.active = [a for a in self.active if a not in going]
        return True

    def _start(self, run_id: str, due: datetime, *, manual: bool) -> None:
        if any(a.run_id == run_id for a in self.active):
            return  # already running (adopted): the derived name would collide anyway
        self.started.add(run_id)
        self.create.append(JobToCreate(run_id=run_id, attempt=1, scheduled_time=due, manual=manual))
        self._first_attempt(run_id, due, start=self.now)
        self.emit_started(self.active[-1])

    def cleanup(self, spec: TaskSpec) -> None:
        """Delete finished Jobs beyond the history limits (never one an unfinished run still points at)."""
        keep = {a.job_name for a in self.active}
        # A Job still running that no unfinished run points at: its run was replaced or has ended, and deleting
        # it failed after the status write (Jobs are deleted only after it). Delete it again.
        for job in self.own:
            orphan = job.state is JobState.ACTIVE and not job.deleting and job.name not in keep
            if orphan and self.last_schedule is not None and job.scheduled_time <= self.last_schedule:
                self._delete(job.name)
        limits = (
            (JobState.SUCCEEDED, spec.successful_jobs_history_limit),
            (JobState.FAILED, spec.failed_jobs_history_limit),
        )
        for state, limit in limits:
            done = [j for j in self.own if j.state is state and not j.deleting and j.name not in keep]
            done.sort(key=lambda j: (j.completion_time or j.created, j.name), reverse=True)
            for job in done[limit:]:
                self._delete(job.name)

    def _delete(self, name: str) -> None:
        if name not in self.delete:
            self.delete.append(name)


def ahead(entry: ActiveRun) -> bool:
    """A run claimed ahead of its due time: its first attempt was claimed before it was due (and has not
    failed: an attempt that failed, its Job deleted for not starting, waits for its retry)."""
    if entry.attempt != 1 or entry.claim_time is None or entry.next_retry_time is not None:
        return False
    if naming.is_manual(entry.run_id):
        return False
    return times.parse(entry.claim_time) < times.parse(entry.scheduled_time)


def _is_due_time(sched: schedule.Schedule, moment: datetime) -> bool:
    """Whether ``moment`` (as recorded, to the millisecond) is one of the schedule's due times."""
    latest = schedule.latest_at_or_before(sched, moment + timedelta(milliseconds=1))
    return latest is not None and abs(latest - moment) < timedelta(milliseconds=1)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
