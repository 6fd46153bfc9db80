"""What the decision reads (a task and its Jobs, as observed) and what it returns (a Plan).

Frozen data only: the controller builds the views from API objects (``manifests``), the decision
(``decision.plan``) returns a Plan, and the controller carries it out. No I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cronlet._core.model import TaskSpec, TaskStatus


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
    started: bool = True  # a pod of it has run (ready, or ended); False while it is pending or not created
    uid: str = ""  # the Job's own uid: deletes carry it as a precondition


@dataclass(frozen=True)
class Tenancy:
    """What the operator's admin allows a task's ``podTemplate`` (``cronlet operator`` flags).

    ``allowed_service_accounts``: the service accounts a podTemplate may name, each ``name`` (in any namespace)
    or ``namespace/name``; None allows any. ``pod_template_selector``: label pairs a task's namespace must all
    carry for its podTemplate to be used; None allows a podTemplate in every namespace.
    """

    allowed_service_accounts: frozenset[str] | None = None
    pod_template_selector: Mapping[str, str] | None = None


@dataclass(frozen=True)
class TaskView:
    """The ScheduledTask as read: identity, raw spec (validated by the decision) and current status."""

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
    status_problem: str | None = None  # why the stored status cannot be read (then ``status`` is empty)
    tenancy: Tenancy = Tenancy()
    namespace_labels: Mapping[str, str] | None = None  # None: not known (read only with a namespace selector)


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


@dataclass(frozen=True)
class EventsDropped:
    count: int  # task events dropped from a full outbox


Observation = RunFinished | AttemptFinished | RetryStarted | EventsDropped


@dataclass(frozen=True)
class Plan:
    """What to do for one task now: Jobs to create and delete, the whole new status, Events, metric
    observations, and when to look again (``wake_at``). ``spec`` is the spec the Jobs are built from."""

    create: tuple[JobToCreate, ...]
    delete: tuple[str, ...]
    status: TaskStatus
    events: tuple[Event, ...]
    observations: tuple[Observation, ...]
    wake_at: datetime | None
    spec: TaskSpec | None
