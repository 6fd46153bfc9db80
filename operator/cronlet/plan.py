"""The reconcile decision for one ScheduledTask: what it looks like now -> what to do and what to record.

``plan()`` is a pure function of the task (spec + status), its Jobs as observed, and the clock. It returns
the Jobs to create and delete, the complete new status (written once, by the adapter), the Events a user
must see, the metric observations, and when to look again. It never talks to the API and never reads the
clock, so every edge (restart, duplicate create, downtime, retries) is a table-driven unit test.

How restarts stay exact: everything the decision needs is in status or in the Jobs. Job names are derived
from (task, run, attempt), so re-planning after a crash reaches the same names; Jobs the status does not
know yet (created just before a crash) are adopted rather than created again; ``status.lastDueTime`` is
the cursor past which due times are still to be handled.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from cronlet import handlerref, model, schedule
from cronlet.model import ActiveRun, Condition, Counters, HistoryEntry, TaskSpec, TaskStatus, rfc3339

MESSAGE_LIMIT = 1024  # characters of a handler's message kept in history
DEADLINE_GRACE = 1.0  # seconds added to startingDeadlineSeconds for wake-up latency


class JobState(enum.Enum):
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Failure(enum.Enum):
    RETRYABLE = "Retryable"  # exit 1, pod failure, an attempt that vanished
    PERMANENT = "Permanent"  # exit 2
    TIMEOUT = "Timeout"  # spec.timeout (activeDeadlineSeconds) passed; retryable


@dataclass(frozen=True)
class JobObservation:
    """What the planner needs of one executor Job."""

    name: str
    owner_uid: str
    run_id: str
    attempt: int
    scheduled_time: datetime
    created: datetime
    state: JobState
    failure: Failure | None = None
    completion_time: datetime | None = None
    deleting: bool = False
    reason: str = ""  # the Job condition's message, used when the pod left none


@dataclass(frozen=True)
class TaskView:
    """The ScheduledTask as read: identity, raw spec (validated here) and current status."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime
    spec: Mapping[str, object]
    status: TaskStatus
    run_now_token: str | None = None
    known_handlers: frozenset[str] | None = None  # None: do not check short names
    default_image: bool = True


@dataclass(frozen=True)
class JobToCreate:
    run_id: str
    attempt: int
    scheduled_time: datetime
    manual: bool = False


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class RunFinished:
    outcome: str
    duration: float | None = None
    count: int = 1


@dataclass(frozen=True)
class AttemptFinished:
    outcome: str  # Succeeded | Failed


@dataclass(frozen=True)
class RetryStarted:
    pass


Observation = RunFinished | AttemptFinished | RetryStarted


@dataclass(frozen=True)
class Plan:
    create: tuple[JobToCreate, ...]
    delete: tuple[str, ...]
    status: TaskStatus
    events: tuple[Event, ...]
    observations: tuple[Observation, ...]
    wake_at: datetime | None
    spec: TaskSpec | None


class InvalidSpec(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


# --------------------------------------------------------------------------- names


def job_name(task: str, run_id: str, attempt: int) -> str:
    """``<task>-<run>-<attempt>``, at most 63 characters: the name is the lock against double creation."""
    suffix = f"-{run_id}-{attempt}"
    if len(task) + len(suffix) <= 63:
        return task + suffix
    digest = hashlib.sha256(task.encode()).hexdigest()[:8]
    return f"{task[: 63 - len(suffix) - 9].rstrip('-.')}-{digest}{suffix}"


def schedule_key(spec: TaskSpec) -> str:
    """What the due-time cursor counts from: the schedule (or interval) and the zone."""
    return f"{spec.schedule} {spec.time_zone}" if spec.schedule is not None else f"every {spec.interval}"


def scheduled_run_id(due: datetime) -> str:
    return str(int(due.timestamp()))


def manual_run_id(token: str, previous: str | None = None) -> str:
    """Derived from the new value and the one handled before it: stable when a plan is replayed after a
    crash, yet different when an earlier value is used again (A, B, A)."""
    return "m" + hashlib.sha256(f"{token}\0{previous or ''}".encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- validation


def compile_task(task: TaskView) -> tuple[TaskSpec, schedule.Schedule]:
    """Validate what the API server cannot (cron, zone, handler, size); raise InvalidSpec."""
    try:
        spec = TaskSpec.model_validate(dict(task.spec))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidSpec("InvalidSpec", f"spec.{where}: {first['msg']}") from exc
    try:
        if spec.schedule is not None and spec.interval is None:
            sched: schedule.Schedule = schedule.compile_cron(spec.schedule, time_zone=spec.time_zone,
                                                             hash_key=task.uid)
        elif spec.interval is not None and spec.schedule is None:
            schedule.load_zone(spec.time_zone)
            sched = schedule.compile_interval(spec.interval, anchor=task.created)
        else:
            raise InvalidSpec("InvalidSchedule", "set exactly one of spec.schedule or spec.interval")
    except schedule.ScheduleError as exc:
        raise InvalidSpec(exc.reason, exc.message) from exc
    try:
        ref = handlerref.parse_handler_ref(spec.handler)
    except ValueError as exc:
        raise InvalidSpec("UnknownHandler", str(exc)) from exc
    if (ref.kind == "entrypoint" and task.default_image and task.known_handlers is not None
            and spec.handler not in task.known_handlers):
        known = ", ".join(sorted(task.known_handlers))
        raise InvalidSpec("UnknownHandler", f"handler {spec.handler!r} is not registered in the executor image "
                          f"(known: {known}); use a registered name, a path package.module:Name, or set "
                          "spec.image to an image that provides it")
    size = len(model.json_bytes(spec.parameters))
    if size > model.MAX_PARAMETERS_BYTES:
        raise InvalidSpec("ParametersTooLarge", f"spec.parameters is {size} bytes as JSON; the limit is "
                          f"{model.MAX_PARAMETERS_BYTES} (64 KiB): pass large inputs through a ConfigMap or "
                          "volume in podTemplate")
    for what, text in (("timeout", spec.timeout), ("backoff.initialDelay", spec.backoff.initial_delay),
                       ("backoff.maxDelay", spec.backoff.max_delay)):
        if text is not None:
            try:
                schedule.parse_duration(text)
            except ValueError as exc:
                raise InvalidSpec("InvalidSpec", f"spec.{what}: {exc}") from exc
    return spec, sched


# --------------------------------------------------------------------------- the plan


@dataclass
class _Work:
    """Mutable scratch state of one planning pass (never escapes ``plan``)."""

    now: datetime
    active: list[ActiveRun]
    counters: dict[str, int]
    history: list[HistoryEntry] = field(default_factory=list)  # new entries, oldest first
    create: list[JobToCreate] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    wake: list[datetime] = field(default_factory=list)
    last_schedule: datetime | None = None
    last_success: datetime | None = None
    last_result: str | None = None
    run_result: tuple[bool, str, str] | None = None  # LastRunSucceeded: (ok, reason, message)
    next_due: datetime | None = None
    cursor: datetime | None = None  # the most recent due time handled (status.lastDueTime)
    started: set[str] = field(default_factory=set)  # run ids started by this pass

    def record(self, entry: HistoryEntry) -> None:
        self.history.append(entry)


def plan(task: TaskView, jobs: Sequence[JobObservation], *, now: datetime,
         messages: Mapping[str, str] | None = None) -> Plan:
    """Decide what to do for ``task`` at ``now``. ``messages`` maps finished Job names to handler messages."""
    now = now.astimezone(UTC)
    messages = messages or {}
    st = task.status
    w = _Work(now=now, active=list(st.active), counters=st.counters.model_dump(),
              last_schedule=_t(st.last_schedule_time), last_success=_t(st.last_successful_time),
              last_result=st.last_result, cursor=_t(st.last_due_time))
    own = [j for j in jobs if j.owner_uid == task.uid]
    by_name = {j.name: j for j in own}

    spec: TaskSpec | None = None
    sched: schedule.Schedule | None = None
    invalid: InvalidSpec | None = None
    try:
        spec, sched = compile_task(task)
    except InvalidSpec as exc:
        invalid = exc
        try:  # runs already going still finish and are recorded, with the last spec that parses
            spec = TaskSpec.model_validate(dict(task.spec))
        except ValidationError:
            spec = None

    if spec is not None:
        _adopt(task, spec, own, w)
        _progress(task, spec, by_name, messages, w)
    token = st.last_run_now_token
    if spec is not None and sched is not None:
        token = _run_now(task, spec, by_name, w)
        _due(task, spec, sched, w)
        _cleanup(spec, own, w)

    status = _status(task, spec, invalid, w.cursor, token, w)
    if invalid is not None:
        ready = next((c for c in st.conditions if c.type == "Ready"), None)
        if ready is None or ready.status != "False" or ready.message != invalid.message:
            w.events.append(Event("Warning", invalid.reason, invalid.message))
    return Plan(create=tuple(w.create), delete=tuple(w.delete), status=status, events=tuple(w.events),
                observations=tuple(w.observations), wake_at=min(w.wake) if w.wake else None,
                spec=spec)


def _adopt(task: TaskView, spec: TaskSpec, own: Sequence[JobObservation], w: _Work) -> None:
    """Take in Jobs the status does not know yet: created just before a crash or a lost status write.

    Under Replace the lost pass had also replaced the runs before it; that is done again here, so an adopted
    run never runs alongside the runs it replaced.
    """
    by_run = {a.run_id: i for i, a in enumerate(w.active)}
    for j in sorted(own, key=lambda j: (j.scheduled_time, j.attempt)):
        if j.deleting:
            continue
        if j.run_id in by_run:
            i = by_run[j.run_id]
            old = w.active[i]
            if j.attempt > old.attempt:
                w.active[i] = old.model_copy(update={"job_name": j.name, "attempt": j.attempt,
                                                     "next_retry_time": None})
                w.counters["retries"] += j.attempt - old.attempt
            continue
        if w.last_schedule is not None and j.scheduled_time <= w.last_schedule:
            continue  # an old run, already recorded (or trimmed from history)
        if spec.concurrency_policy == "Replace" and w.active:
            _admit(task, spec, j.scheduled_time, "run-now" if j.run_id.startswith("m") else "due run", w)
            by_run = {}
        w.active.append(ActiveRun(job_name=j.name, scheduled_time=rfc3339(j.scheduled_time), attempt=j.attempt,
                                  run_id=j.run_id, start_time=rfc3339(j.created)))
        by_run[j.run_id] = len(w.active) - 1
        w.counters["runs"] += 1
        w.last_schedule = j.scheduled_time
        if not j.run_id.startswith("m") and (w.cursor is None or j.scheduled_time > w.cursor):
            w.cursor = j.scheduled_time  # its due time is handled: do not start it again


def _progress(task: TaskView, spec: TaskSpec, by_name: Mapping[str, JobObservation],
              messages: Mapping[str, str], w: _Work) -> None:
    """Move each unfinished run along: running, finished, failed -> backoff -> next attempt."""
    still: list[ActiveRun] = []
    for entry in w.active:
        if entry.next_retry_time is not None and entry.attempt <= spec.max_retries:
            retry_at = _t(entry.next_retry_time)
            assert retry_at is not None
            still.append(_retry_when_due(task, entry, retry_at, w))
            continue
        if entry.next_retry_time is not None:  # maxRetries was lowered while this run waited
            text = f"run of {entry.scheduled_time} failed after {entry.attempt} attempts: maxRetries is now " \
                   f"{spec.max_retries}"
            _finish(entry, "Failed", by_name.get(entry.job_name), text, w)
            w.events.append(Event("Warning", "RetriesExhausted", text))
            w.run_result = (False, "RetriesExhausted", text)
            continue
        job = by_name.get(entry.job_name)
        if job is not None and job.state is JobState.ACTIVE:
            still.append(entry)
            continue
        if job is not None and job.state is JobState.SUCCEEDED:
            w.observations.append(AttemptFinished("Succeeded"))
            _finish(entry, "Succeeded", job, messages.get(job.name, ""), w)
            w.last_success = job.completion_time or w.now
            w.run_result = (True, "Succeeded", f"run of {entry.scheduled_time} succeeded")
            continue
        # Failed, or the Job is gone before we saw it finish (deleted by hand, or lost).
        w.observations.append(AttemptFinished("Failed"))
        if job is None:
            failure, ended, msg = Failure.RETRYABLE, w.now, f"Job {entry.job_name} disappeared before it finished"
        else:
            failure, ended = job.failure or Failure.RETRYABLE, job.completion_time or w.now
            msg = messages.get(job.name) or job.reason or "attempt failed"
            if failure is Failure.TIMEOUT:
                msg = f"attempt timed out after {spec.timeout}" + (f": {msg}" if msg else "")
        if failure is not Failure.PERMANENT and entry.attempt <= spec.max_retries:
            delay = schedule.backoff_delay(
                failed_attempt=entry.attempt,
                initial=schedule.parse_duration(spec.backoff.initial_delay),
                multiplier=spec.backoff.multiplier,
                max_delay=schedule.parse_duration(spec.backoff.max_delay),
                jitter=spec.backoff.jitter,
                rand=schedule.stable_fraction(f"{task.uid}/{entry.run_id}/{entry.attempt}"))
            retry_at = ended + delay
            entry = entry.model_copy(update={"next_retry_time": rfc3339(retry_at)})
            still.append(_retry_when_due(task, entry, retry_at, w))
            continue
        _finish(entry, "Failed", job, msg, w)
        if failure is Failure.PERMANENT:
            reason, text = "PermanentFailure", f"run of {entry.scheduled_time} failed permanently: {msg}"
        else:
            reason = "RetriesExhausted"
            text = f"run of {entry.scheduled_time} failed after {entry.attempt} attempts: {msg}"
        w.events.append(Event("Warning", reason, _clip(text, 1000)))
        w.run_result = (False, reason, _clip(text, 1000))
    w.active = still


def _retry_when_due(task: TaskView, entry: ActiveRun, retry_at: datetime, w: _Work) -> ActiveRun:
    """Start the next attempt if its backoff is over, else wake up when it is."""
    if retry_at <= w.now:
        return _next_attempt(task, entry, w)
    w.wake.append(retry_at)
    return entry


def _next_attempt(task: TaskView, entry: ActiveRun, w: _Work) -> ActiveRun:
    attempt = entry.attempt + 1
    scheduled = _t(entry.scheduled_time)
    assert scheduled is not None
    w.create.append(JobToCreate(run_id=entry.run_id, attempt=attempt, scheduled_time=scheduled,
                                manual=entry.run_id.startswith("m")))
    w.counters["retries"] += 1
    w.observations.append(RetryStarted())
    return entry.model_copy(update={"job_name": job_name(task.name, entry.run_id, attempt), "attempt": attempt,
                                    "next_retry_time": None})


def _finish(entry: ActiveRun, outcome: str, job: JobObservation | None, message: str, w: _Work) -> None:
    ended = (job.completion_time if job is not None else None) or w.now
    started = _t(entry.start_time)
    w.record(HistoryEntry(scheduled_time=entry.scheduled_time, start_time=entry.start_time or None,
                          completion_time=rfc3339(ended), attempts=entry.attempt, outcome=outcome,  # type: ignore[arg-type]
                          message=_clip(message, MESSAGE_LIMIT), job_name=entry.job_name))
    w.counters["succeeded" if outcome == "Succeeded" else "failed"] += 1
    w.last_result = outcome
    w.observations.append(RunFinished(outcome, (ended - started).total_seconds() if started else None))


def _run_now(task: TaskView, spec: TaskSpec, by_name: Mapping[str, JobObservation], w: _Work) -> str | None:
    token = task.run_now_token
    if not token or token == task.status.last_run_now_token:
        return task.status.last_run_now_token
    run_id = manual_run_id(token, task.status.last_run_now_token)
    if any(a.run_id == run_id for a in w.active) or job_name(task.name, run_id, 1) in by_name:
        return token  # already started (adopted after a restart)
    if spec.suspend:
        w.counters["skipped"] += 1
        w.record(HistoryEntry(scheduled_time=rfc3339(w.now), outcome="Skipped",
                              message="run-now ignored: the task is suspended"))
        w.observations.append(RunFinished("Skipped"))
        return token
    if _admit(task, spec, w.now, "run-now", w):
        _start(task, run_id, w.now, w, manual=True)
    return token


def _due(task: TaskView, spec: TaskSpec, sched: schedule.Schedule, w: _Work) -> None:
    """Handle due times in (cursor, now], move the cursor, and ask to wake at the next one."""
    if spec.suspend:
        return
    cursor = w.cursor
    if cursor is None:
        cursor = task.created
    changed = task.status.schedule_key is not None and task.status.schedule_key != schedule_key(spec)
    if task.status.phase in ("Suspended", "Invalid") or changed:
        # Just resumed or repaired, or a new schedule: what fell due before now is not run later (under a
        # new schedule, due times before the change were never promised).
        cursor = max(cursor, schedule.latest_at_or_before(sched, w.now) or cursor)
    due = schedule.due_runs(sched, since=cursor, now=w.now)
    if due.latest is not None:
        deadline = spec.starting_deadline_seconds
        # A second of grace: the wake-up itself comes a few milliseconds after the due time.
        start_latest = deadline is None or (w.now - due.latest).total_seconds() <= deadline + DEADLINE_GRACE
        missed = due.count - (1 if start_latest else 0)
        last_missed = due.latest if not start_latest else schedule.latest_at_or_before(
            sched, due.latest - timedelta(microseconds=1))
        if missed > 0 and last_missed is not None:
            many = "more than " if due.kind is schedule.DueKind.MANY else ""
            why = (f"not started within startingDeadlineSeconds={deadline}" if deadline is not None
                   else "fell due while the operator was not running; only the most recent is started")
            text = f"{many}{missed} due run(s) up to {rfc3339(last_missed)} {why}"
            w.counters["missed"] += missed
            w.record(HistoryEntry(scheduled_time=rfc3339(last_missed), outcome="Missed", message=text))
            w.events.append(Event("Warning", "MissedSchedule", text))
            w.observations.append(RunFinished("Missed", count=missed))
        if start_latest and _admit(task, spec, due.latest, "due run", w):
            _start(task, scheduled_run_id(due.latest), due.latest, w, manual=False)
        cursor = due.latest
    w.cursor = cursor
    w.next_due = schedule.next_after(sched, cursor)
    if w.next_due is not None:
        w.wake.append(w.next_due)


def _admit(task: TaskView, spec: TaskSpec, due: datetime, what: str, w: _Work) -> bool:
    """Apply concurrencyPolicy to a run about to start; True when it may start."""
    if not w.active or spec.concurrency_policy == "Allow":
        return True
    fresh = [a for a in w.active if a.run_id in w.started]
    if spec.concurrency_policy == "Forbid" or fresh:
        # Replace never stops a run this same pass started (a run-now and a due time at one moment).
        why = "an earlier run is unfinished (concurrencyPolicy Forbid)" if not fresh else \
            "a run started at the same moment (run-now) is unfinished"
        w.counters["skipped"] += 1
        w.record(HistoryEntry(scheduled_time=rfc3339(due), outcome="Skipped", message=f"{what} skipped: {why}"))
        w.observations.append(RunFinished("Skipped"))
        return False
    for entry in w.active:  # Replace
        if entry.next_retry_time is None:
            w.delete.append(entry.job_name)
        w.record(HistoryEntry(scheduled_time=entry.scheduled_time, start_time=entry.start_time or None,
                              completion_time=rfc3339(w.now), attempts=entry.attempt, outcome="Replaced",
                              message=f"replaced by the {what} of {rfc3339(due)} (concurrencyPolicy Replace)",
                              job_name=entry.job_name))
        w.observations.append(RunFinished("Replaced"))
        w.last_result = "Replaced"
    w.events.append(Event("Normal", "Replaced", f"stopped {len(w.active)} unfinished run(s) for the {what} of "
                                                f"{rfc3339(due)}"))
    w.active = []
    return True


def _start(task: TaskView, run_id: str, due: datetime, w: _Work, *, manual: bool) -> None:
    if any(a.run_id == run_id for a in w.active):
        return  # already running (adopted): the derived name would collide anyway
    w.started.add(run_id)
    w.create.append(JobToCreate(run_id=run_id, attempt=1, scheduled_time=due, manual=manual))
    w.active.append(ActiveRun(job_name=job_name(task.name, run_id, 1), scheduled_time=rfc3339(due), attempt=1,
                              run_id=run_id, start_time=rfc3339(w.now)))
    w.counters["runs"] += 1
    w.last_schedule = max(w.last_schedule, due) if w.last_schedule else due


def _cleanup(spec: TaskSpec, own: Sequence[JobObservation], w: _Work) -> None:
    """Delete finished Jobs beyond the history limits (never one an unfinished run still points at)."""
    keep = {a.job_name for a in w.active}
    # A Job still running that no unfinished run points at: its run was replaced or has ended, and deleting
    # it failed after the status write (Jobs are deleted only after it). Delete it again.
    orphans = [j for j in own if j.state is JobState.ACTIVE and not j.deleting and j.name not in keep
               and w.last_schedule is not None and j.scheduled_time <= w.last_schedule]
    w.delete.extend(j.name for j in orphans if j.name not in w.delete)
    for state, limit in ((JobState.SUCCEEDED, spec.successful_jobs_history_limit),
                         (JobState.FAILED, spec.failed_jobs_history_limit)):
        done = [j for j in own if j.state is state and not j.deleting and j.name not in keep]
        done.sort(key=lambda j: (j.completion_time or j.created, j.name), reverse=True)
        w.delete.extend(j.name for j in done[limit:] if j.name not in w.delete)


def _status(task: TaskView, spec: TaskSpec | None, invalid: InvalidSpec | None, cursor: datetime | None,
            token: str | None, w: _Work) -> TaskStatus:
    st = task.status
    limit = spec.history_limit if spec is not None else 10
    history = (list(reversed(w.history)) + list(st.history))[:limit]
    waiting = [a for a in w.active if a.next_retry_time is not None]
    running = [a for a in w.active if a.next_retry_time is None]
    if invalid is not None:
        phase = "Invalid"
    elif spec is not None and spec.suspend:
        phase = "Suspended"
    elif running:
        phase = "Running"
    elif waiting:
        phase = "Retrying"
    elif w.last_result == "Failed":
        phase = "Failed"
    else:
        phase = "Scheduled"
    nxt = rfc3339(w.next_due) if w.next_due is not None else None
    if invalid is not None:
        ready = _condition(st, "Ready", "False", invalid.reason, invalid.message, task.generation, w.now)
    elif spec is not None and spec.suspend:
        ready = _condition(st, "Ready", "True", "Suspended", "suspended: no new runs start", task.generation,
                           w.now)
    else:
        ready = _condition(st, "Ready", "True", "Scheduled", f"next run at {nxt}" if nxt else "scheduled",
                           task.generation, w.now)
    conditions = [ready]
    previous_run = next((c for c in st.conditions if c.type == "LastRunSucceeded"), None)
    if w.run_result is not None:
        ok, reason, message = w.run_result
        conditions.append(_condition(st, "LastRunSucceeded", "True" if ok else "False", reason, message,
                                     task.generation, w.now))
    elif previous_run is not None:
        conditions.append(previous_run)
    retry = min(waiting, key=lambda a: a.next_retry_time or "") if waiting else None
    # A run is retrying once its first attempt failed: waiting for the next attempt, or running a later one.
    retrying = [a.attempt for a in w.active if a.attempt > 1 or a.next_retry_time is not None]
    return TaskStatus(
        phase=phase, conditions=conditions, observed_generation=task.generation, next_run_time=nxt,  # type: ignore[arg-type]
        last_schedule_time=rfc3339(w.last_schedule) if w.last_schedule else None,
        last_successful_time=rfc3339(w.last_success) if w.last_success else None,
        last_due_time=rfc3339(cursor) if cursor else None, last_result=w.last_result, active=w.active,
        current_attempt=max(retrying, default=None),
        next_retry_time=retry.next_retry_time if retry else None, history=history,
        counters=Counters(**w.counters), last_run_now_token=token,
        schedule_key=schedule_key(spec) if spec is not None and invalid is None else st.schedule_key)


def _condition(st: TaskStatus, kind: str, status: str, reason: str, message: str, generation: int,
               now: datetime) -> Condition:
    old = next((c for c in st.conditions if c.type == kind), None)
    since = old.last_transition_time if old is not None and old.status == status else rfc3339(now)
    return Condition(type=kind, status=status, reason=reason, message=message,  # type: ignore[arg-type]
                     last_transition_time=since, observed_generation=generation)


def _t(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


