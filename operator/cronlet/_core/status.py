"""Building ``status`` from what one decision pass found: phase, conditions, history, counters, cursors.

Pure: every time comes from the pass (``now``), nothing is read from the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cronlet._common import times
from cronlet._core import model, naming
from cronlet._core.model import (
    CONDITION_MESSAGE_MAX,
    ActiveRun,
    Condition,
    ConditionReason,
    ConditionType,
    Counters,
    HistoryEntry,
    Phase,
    TaskSpec,
    TaskStatus,
)
from cronlet._core.views import TaskView

DEFAULT_HISTORY_LIMIT = 10  # while the spec cannot be read


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a pass decided, as the status needs it."""

    now: datetime
    active: Sequence[ActiveRun]
    counters: Counters
    new_history: Sequence[HistoryEntry]  # oldest first
    cursor: datetime | None
    last_schedule: datetime | None
    last_success: datetime | None
    last_result: str | None
    run_result: tuple[bool, ConditionReason, str] | None  # LastRunSucceeded: (ok, reason, message)
    next_due: datetime | None
    run_now_token: str | None
    awaiting_create: bool = False  # a claimed attempt whose Job is not created yet


def build(
    task: TaskView, *, spec: TaskSpec | None, invalid: tuple[ConditionReason, str] | None, outcome: Outcome
) -> TaskStatus:
    """The complete new status. ``invalid`` is (reason, message) for a spec the operator cannot run."""
    old = task.status
    limit = spec.history_limit if spec is not None else DEFAULT_HISTORY_LIMIT
    history = (list(reversed(outcome.new_history)) + list(old.history))[:limit]
    waiting = [a for a in outcome.active if a.next_retry_time is not None]
    suspended = spec is not None and spec.suspend
    nxt = times.rfc3339(outcome.next_due) if outcome.next_due is not None else None
    previous_ready = next((c for c in old.conditions if c.type == "Ready"), None)
    refused = previous_ready is not None and (previous_ready.status, previous_ready.reason) == (
        "False",
        "JobCreateFailed",
    )
    blocked = invalid is None and refused and outcome.awaiting_create
    if invalid is not None:
        ready = _condition(task, "Ready", "False", *invalid, now=outcome.now)
    elif blocked and previous_ready is not None:
        ready = previous_ready  # the API server refused the claimed attempt's Job: say so until it is created
    elif suspended:
        ready = _condition(
            task, "Ready", "True", "Suspended", "suspended: no new runs start", now=outcome.now
        )
    else:
        message = f"next run at {nxt}" if nxt else "scheduled"
        ready = _condition(task, "Ready", "True", "Scheduled", message, now=outcome.now)
    conditions = [ready]
    if invalid is not None:
        conditions.append(_condition(task, "Stalled", "True", *invalid, now=outcome.now))
    previous_run = next((c for c in old.conditions if c.type == "LastRunSucceeded"), None)
    if outcome.run_result is not None:
        ok, reason, message = outcome.run_result
        conditions.append(
            _condition(task, "LastRunSucceeded", "True" if ok else "False", reason, message, now=outcome.now)
        )
    elif previous_run is not None:
        conditions.append(previous_run)
    retry = min(waiting, key=lambda a: a.next_retry_time or "") if waiting else None
    # A run is retrying once its first attempt failed: waiting for the next attempt, or running a later one.
    retrying = [a.attempt for a in outcome.active if a.attempt > 1 or a.next_retry_time is not None]
    return TaskStatus(
        phase=_phase(outcome, invalid=invalid is not None, blocked=blocked, suspended=suspended),
        conditions=conditions,
        observed_generation=task.generation,
        next_run_time=nxt,
        last_schedule_time=_optional_time(outcome.last_schedule),
        last_successful_time=_optional_time(outcome.last_success),
        last_due_time=_optional_time(outcome.cursor),
        last_result=outcome.last_result,
        active=list(outcome.active),
        active_count=len(outcome.active),
        current_attempt=max(retrying, default=None),
        next_retry_time=retry.next_retry_time if retry else None,
        history=history,
        counters=outcome.counters,
        last_run_now_token=outcome.run_now_token,
        schedule_key=naming.schedule_key(spec) if spec is not None and invalid is None else old.schedule_key,
    )


def _phase(outcome: Outcome, *, invalid: bool, blocked: bool, suspended: bool) -> Phase:
    if invalid:
        return "Invalid"
    if blocked:
        return "Blocked"
    if suspended:
        return "Suspended"
    if any(a.next_retry_time is None for a in outcome.active):
        return "Running"
    if outcome.active:
        return "Retrying"
    if outcome.last_result == "Failed":
        return "Failed"
    return "Scheduled"


def not_ready(
    task: TaskView, *, reason: ConditionReason, message: str, now: datetime
) -> dict[str, object] | None:
    """The status patch that says a run cannot start for a reason outside the spec (``JobCreateFailed``,
    ``StatusUnreadable``): phase ``Blocked`` and Ready=False, nothing else changed. None if it says so already.

    Every Ready=False comes with a phase, so the PHASE column is never blank: ``Invalid`` when the spec must be
    fixed (``build``), ``Blocked`` for these. A status that cannot be read stops the task until someone fixes
    it: Stalled=True too (kstatus reads Failed); a refused Job is retried, so it is not stalled.
    ``observedGeneration`` says which generation was looked at, as kstatus needs.
    """
    message = message[:1024]
    ready = next((c for c in task.status.conditions if c.type == "Ready"), None)
    if (
        task.status.phase == "Blocked"
        and task.status.observed_generation == task.generation
        and ready is not None
        and (ready.status, ready.reason, ready.message) == ("False", reason, message)
    ):
        return None
    new = _condition(task, "Ready", "False", reason, message, now=now)
    conditions = [new, *(c for c in task.status.conditions if c.type not in ("Ready", "Stalled"))]
    if reason == "StatusUnreadable":
        conditions.append(_condition(task, "Stalled", "True", reason, message, now=now))
    return {
        "phase": "Blocked",
        "conditions": [model.dump(c) for c in conditions],
        "observedGeneration": task.generation,
    }


def _condition(
    task: TaskView,
    kind: ConditionType,
    status: Literal["True", "False", "Unknown"],
    reason: ConditionReason,
    message: str,
    *,
    now: datetime,
) -> Condition:
    return condition(
        task.status.conditions,
        kind=kind,
        status=status,
        reason=reason,
        message=message,
        generation=task.generation,
        now=now,
    )


def condition(
    previous: Sequence[Condition],
    *,
    kind: ConditionType,
    status: Literal["True", "False", "Unknown"],
    reason: ConditionReason,
    message: str,
    generation: int,
    now: datetime,
) -> Condition:
    """One condition as metav1.Condition has it; the only place a condition is made, so every one fits the CRD.

    ``lastTransitionTime`` moves only when ``status`` changes (kept from ``previous`` otherwise); the message is
    cut to the schema's 32768 characters; the reason is one of ``model.ConditionReason``, all of which match
    the schema's pattern (tests/unit/core/test_conditions.py).
    """
    old = next((c for c in previous if c.type == kind), None)
    since = old.last_transition_time if old is not None and old.status == status else times.rfc3339(now)
    if len(message) > CONDITION_MESSAGE_MAX:
        message = message[: CONDITION_MESSAGE_MAX - 1] + "…"
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def _optional_time(moment: datetime | None) -> str | None:
    return times.rfc3339(moment) if moment else None
