"""Derived names: the same inputs always give the same name, so a repeated create is harmless.

A Job's name is its lock against double creation (``<task>-<run>-<attempt>``); a run's id comes from its due
time or from the run-now value; an Event's name from what it says, so a repeat is counted, not stacked.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from cronlet._core.model import TaskSpec

MAX_NAME = 63  # a Job name is also a label value on its pods, which may not be longer


def job_name(task: str, run_id: str, attempt: int) -> str:
    """``<task>-<run>-<attempt>``, at most 63 characters (long task names are shortened with a hash)."""
    suffix = f"-{run_id}-{attempt}"
    if len(task) + len(suffix) <= MAX_NAME:
        return task + suffix
    return f"{task[: MAX_NAME - len(suffix) - 9].rstrip('-.')}-{_digest(task, 8)}{suffix}"


def scheduled_run_id(due: datetime) -> str:
    """A scheduled run's id: its due time in Unix seconds."""
    return str(int(due.timestamp()))


def manual_run_id(token: str, previous: str | None = None) -> str:
    """A run-now's id, derived from the new value and the one handled before it: stable when a plan is
    replayed after a crash, yet different when an earlier value is used again (A, B, A)."""
    return "m" + _digest(f"{token}\0{previous or ''}", 10)


def is_manual(run_id: str) -> bool:
    return run_id.startswith("m")


def schedule_key(spec: TaskSpec) -> str:
    """What the due-time cursor counts from: the schedule (or interval) and the zone."""
    if spec.schedule is not None:
        return f"{spec.schedule} {spec.time_zone}"
    return f"every {spec.interval}"


def label_value(text: str) -> str:
    """A label value (at most 63 characters) that stays unique for long names."""
    if len(text) <= MAX_NAME:
        return text
    return f"{text[:54].rstrip('-_.')}-{_digest(text, 8)}"


def event_name(*, task: str, uid: str, reason: str, message: str) -> str:
    """An Event's name: the same event about the same task gets the same name (and is counted)."""
    return f"{task[:200]}.{_digest(f'{uid}/{reason}/{message}', 12)}"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]
