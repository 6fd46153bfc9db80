"""The ScheduledTask resource as typed models: the one source of truth for the CRD schema and the docs.

``cronlet._core.crd`` turns these models into ``crds/scheduledtasks.cronlet.dev.yaml``; a unit test fails when the
committed CRD differs, so the schema the API server enforces and the models the operator reads cannot
drift. Pure data: no I/O, no Kubernetes client.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "cronlet.dev"
VERSION = "v1alpha1"
KIND = "ScheduledTask"
PLURAL = "scheduledtasks"
API_VERSION = f"{GROUP}/{VERSION}"

RUN_NOW_ANNOTATION = "cronlet.dev/run-now"
TASK_LABEL = "cronlet.dev/task"
ATTEMPT_LABEL = "cronlet.dev/attempt"
RUN_ID_LABEL = "cronlet.dev/run-id"
SCHEDULED_TIME_ANNOTATION = "cronlet.dev/scheduled-time"
TASK_NAME_ANNOTATION = "cronlet.dev/task-name"
MAX_PARAMETERS_BYTES = 64 * 1024

# A Go duration as time.ParseDuration (and so metav1.Duration and CEL's duration()) reads it, without a sign:
# 30s, 1h30m, 1.5s, 500ms, .5h, 0. v1alpha1 accepted "d" (days) before; the operator still reads stored values
# with it (schedule.parse_duration), the API server refuses it in new ones (docs/api.md, change 16).
_MICRO = "u\u00b5\u03bc"  # us, the micro sign and the Greek mu: Go reads all three as microseconds
DURATION_PATTERN = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|[" + _MICRO + r"]s|ms|s|m|h))+)$"
DURATION_MAX_LENGTH = 64
_DURATION_HELP = "A Go duration (time.ParseDuration, as metav1.Duration): 30s, 5m, 1h30m, 1.5s, 500ms."

Outcome = Literal["Succeeded", "Failed", "Skipped", "Missed", "Replaced"]
EventKind = Literal["started", "retrying", "succeeded", "failed", "skipped", "missed", "replaced"]
Phase = Literal["Scheduled", "Running", "Retrying", "Suspended", "Failed", "Invalid", "Blocked"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


def json_bytes(value: object) -> bytes:
    """Compact JSON, as the executor receives it in CRONLET_PARAMETERS."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


# CEL rules on durations. has(): the schema's default ({}) is checked before its fields are defaulted. A value
# with "d" is one stored before change 16 (no Go unit has a "d"): CEL's duration() cannot read it, and the API
# server re-runs an object's rules on every write of the object, not only when the field changed, so the rule
# passes it over; the field's pattern still refuses "d" in a new value.
_BACKOFF_RULE = (
    "!has(self.initialDelay) || !has(self.maxDelay) || self.initialDelay.contains('d') || "
    "self.maxDelay.contains('d') || duration(self.maxDelay) >= duration(self.initialDelay)"
)
_INTERVAL_RULE = "self.contains('d') || duration(self) >= duration('1s')"


def _duration(
    default: str | None,
    *,
    alias: str | None = None,
    description: str,
    rules: list[dict[str, str]] | None = None,
) -> Any:
    """A duration field. The pattern is the API server's to enforce (in the CRD), not the model's: the operator
    must go on reading values stored before the pattern was narrowed, which ``schedule.parse_duration`` reads."""
    schema: dict[str, Any] = {"pattern": DURATION_PATTERN, "maxLength": DURATION_MAX_LENGTH}
    if rules:
        schema["x-kubernetes-validations"] = rules
    return Field(
        default, alias=alias, description=f"{description} {_DURATION_HELP}", json_schema_extra=schema
    )


class Backoff(_Model):
    """How long to wait between the attempts of one run."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _BACKOFF_RULE,
                    "message": "backoff.maxDelay must not be shorter than backoff.initialDelay",
                    "reason": "FieldValueInvalid",
                    "fieldPath": ".maxDelay",
                }
            ]
        }
    )

    initial_delay: str = _duration("10s", alias="initialDelay", description="Delay before the first retry.")
    multiplier: float = Field(
        2.0,
        ge=1,
        le=100,
        description="Each further retry waits this many times longer than the one before "
        "(1 = a constant delay).",
    )
    max_delay: str = _duration(
        "10m",
        alias="maxDelay",
        description="Upper bound on one delay, whatever the multiplier gives; at least initialDelay.",
    )
    jitter: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Random fraction (plus or minus) applied to each delay so that retries of many "
        "tasks do not fall on the same instant. 0 disables it.",
    )


class TaskEvents(_Model):
    """This task's share of the operator's task events."""

    publish: bool = Field(True, description="Publish this task's run events (false opts the task out).")
    types: list[EventKind] | None = Field(
        None,
        description=(
            "Publish only these kinds of run event: started, retrying, succeeded, failed, skipped, missed, "
            "replaced (CloudEvents type dev.cronlet.run.<kind>.v1). Unset: all of them."
        ),
    )


class TaskSpec(_Model):
    """What to run and when."""

    schedule: str | None = Field(
        None,
        max_length=256,
        description=(
            "Cron expression. 5 fields (min hour dom mon dow), or 6 fields with seconds first "
            "(sec min hour dom mon dow: '*/5 * * * * *' runs every 5 seconds). Macros @yearly @monthly @weekly "
            "@daily @hourly. L (last), W (nearest weekday), # (nth weekday, 5#2) and H (a stable per-task hash "
            "that spreads load: 'H H * * *') are accepted. Read in timeZone. Set exactly one of schedule or "
            "interval."
        ),
    )
    interval: str | None = _duration(
        None,
        description="Fixed-rate schedule: due at the task's creation time + n x interval, n >= 1; at least 1s, "
        "whole milliseconds. Set exactly one of schedule or interval.",
        rules=[{"rule": _INTERVAL_RULE, "message": "interval must be at least 1s"}],
    )
    time_zone: str = Field(
        "UTC",
        alias="timeZone",
        max_length=64,
        description=(
            "IANA time zone in which schedule is read (Europe/Berlin). A wall time skipped by a "
            "daylight-saving jump runs once, at the first instant after the gap. In an hour repeated when clocks "
            "go back, a schedule with fixed minute and hour fields runs once (first occurrence); one with * or a "
            "step in its minute or hour field runs at every matching instant."
        ),
    )
    handler: str = Field(
        ...,
        min_length=1,
        max_length=253,
        description=(
            "What the executor runs: a registered handler name (http, shell, echo, sleep, fail, or one from the "
            "cronlet.handlers entry-point group of the executor image) or a Python path package.module:Name."
        ),
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Free-form JSON object handed to the handler as context.parameters (at most 64 KiB). Not for "
            "secrets: put those in podTemplate env/envFrom."
        ),
    )
    image: str | None = Field(
        None,
        max_length=512,
        description=(
            "Image of the executor container, for handlers shipped in your own image. Defaults to the "
            "operator's executor image. Not together with an image on podTemplate's executor container (the "
            "task is then Invalid, reason InvalidPodTemplate)."
        ),
    )
    pod_template: dict[str, Any] | None = Field(
        None,
        alias="podTemplate",
        description=(
            "Optional PodTemplateSpec merged into each executor pod: labels, annotations, serviceAccountName, "
            "resources, env/envFrom (secrets go here), volumes, nodeSelector, tolerations, affinity. A container "
            "named 'executor' is merged into the executor container: its securityContext keys win (the root "
            "filesystem is read-only with an emptyDir at /tmp unless it sets readOnlyRootFilesystem: false), "
            "but one that cannot be merged (privileged or CAP_SYS_ADMIN without allowPrivilegeEscalation: true, "
            "runAsUser 0 without runAsNonRoot: false) makes the task Invalid (InvalidPodTemplate) before any "
            "Job is created. The operator's admin may restrict service accounts and the namespaces that may "
            "use podTemplate. Checked by the API server against "
            "Kubernetes' PodTemplateSpec schema (metadata: labels and annotations only; containers may be left "
            "out)."
        ),
    )
    max_retries: int = Field(
        3,
        alias="maxRetries",
        ge=0,
        le=100,
        description=("Retries after the first failed attempt of a run (0 = never retry)."),
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Delays between retries.")
    timeout: str | None = _duration(
        None,
        description="Limit on one attempt (the Job's activeDeadlineSeconds, whole seconds, at least 1). A "
        "timed-out attempt is a retryable failure.",
    )
    start_timeout: str = _duration(
        "10m",
        alias="startTimeout",
        description="Limit on the time from an attempt's Job being created until its pod runs (scheduled, image "
        "pulled, container started). An attempt that has not started by then fails with the reason "
        "(Unschedulable, ImagePullBackOff, ErrImagePull, CreateContainerConfigError, FailedCreate, ...), its "
        "Job is deleted, and it is retried like any failed attempt. 0s turns the limit off.",
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        "Forbid",
        alias="concurrencyPolicy",
        description=(
            "What a due run does while an earlier run (with its retries) is unfinished: Allow starts anyway, "
            "Forbid skips it (recorded as Skipped), Replace stops the old run (recorded as Replaced) and starts."
        ),
    )
    starting_deadline_seconds: int | None = Field(
        None,
        alias="startingDeadlineSeconds",
        ge=0,
        description=(
            "A run not started within this many seconds of its due time is recorded as Missed instead of "
            "started. After downtime without a deadline only the most recent missed run is started."
        ),
    )
    suspend: bool = Field(
        False,
        description=(
            "No new runs while true; active runs finish. Due times that pass while suspended are not run "
            "later."
        ),
    )
    successful_jobs_history_limit: int = Field(
        3, alias="successfulJobsHistoryLimit", ge=0, le=1000, description="Finished successful Jobs kept."
    )
    failed_jobs_history_limit: int = Field(
        1, alias="failedJobsHistoryLimit", ge=0, le=1000, description="Finished failed Jobs kept."
    )
    history_limit: int = Field(
        10, alias="historyLimit", ge=0, le=100, description="Entries kept in status.history."
    )
    events: TaskEvents | None = Field(
        None,
        description=(
            "Which of this task's run events the operator publishes to its event sinks (Kafka, HTTP), when the "
            "operator has any. Sinks and their credentials are the operator's, never the task's."
        ),
    )


# metav1.Condition's own validation (k8s.io/apimachinery/pkg/apis/meta/v1/types.go), copied into the CRD so the
# API server refuses what `kubectl wait --for=condition=...`, kstatus and Argo CD could not read.
_DNS_PREFIX = r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
CONDITION_TYPE_PATTERN = rf"^{_DNS_PREFIX}(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_REASON_MAX = 1024
CONDITION_MESSAGE_MAX = 32768

# Stalled is kstatus' (and Flux's) "abnormal-true" condition: present, True, only while the task cannot run
# until someone changes it (an invalid spec, an unreadable status); kstatus then reports Failed, not Current.
ConditionType = Literal["Ready", "LastRunSucceeded", "Stalled"]
# Every reason the operator can put in a condition: mypy refuses any other string where a reason goes
# (InvalidSpec, ScheduleError, the status builder), and a unit test checks each against the pattern above.
ConditionReason = Literal[
    # Ready=True
    "Scheduled",
    "Suspended",
    # Ready=False: the spec cannot be run (cronlet._core.validation, cronlet._core.schedule)
    "InvalidSchedule",
    "UnknownTimeZone",
    "InvalidInterval",
    "UnknownHandler",
    "ParametersTooLarge",
    "InvalidSpec",
    "InvalidPodTemplate",
    "PodTemplateNotAllowed",
    "ServiceAccountNotAllowed",
    # Ready=False: the operator cannot act (cronlet._controller.reconciler)
    "JobCreateFailed",
    "StatusUnreadable",
    # LastRunSucceeded
    "Succeeded",
    "RetriesExhausted",
    "PermanentFailure",
    "AttemptNotStarted",
]


def _time(description: str, *, alias: str, required: bool = False) -> Any:
    """A field holding an RFC 3339 instant: ``format: date-time`` in the CRD, as metav1.Time fields have."""
    extra: dict[str, Any] = {"format": "date-time"}
    if required:
        return Field(..., alias=alias, description=description, json_schema_extra=extra)
    return Field(None, alias=alias, description=description, json_schema_extra=extra)


class Condition(_Model):
    """One condition, in the shape of metav1.Condition."""

    type: str = Field(
        ...,
        pattern=CONDITION_TYPE_PATTERN,
        max_length=316,
        description="Ready (the task is scheduled and the operator can act on it), LastRunSucceeded, or Stalled "
        "(True while the task cannot run until its spec or status is fixed).",
    )
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None,
        alias="observedGeneration",
        ge=0,
        description="metadata.generation of the task when this condition was set; older than the task's "
        "generation means the condition is out of date.",
    )
    last_transition_time: str = _time(
        "When status last changed from one value to another (RFC 3339).",
        alias="lastTransitionTime",
        required=True,
    )
    reason: str = Field(
        ...,
        min_length=1,
        max_length=CONDITION_REASON_MAX,
        pattern=CONDITION_REASON_PATTERN,
        description="CamelCase reason for the last transition, such as Scheduled, InvalidSchedule or "
        "RetriesExhausted.",
    )
    message: str = Field(
        ..., max_length=CONDITION_MESSAGE_MAX, description="Human-readable explanation (may be empty)."
    )


class ActiveRun(_Model):
    job_name: str = Field(..., alias="jobName", description="Job of the current (or last failed) attempt.")
    scheduled_time: str = _time("Due time of the run (RFC 3339).", alias="scheduledTime", required=True)
    attempt: int = Field(..., description="Attempt number of jobName (1 = first try).")
    run_id: str = Field("", alias="runId", description="Identifier of the run, shared by its attempts.")
    start_time: str | None = _time(
        "When the first attempt started (RFC 3339); for a run claimed ahead, its due time.", alias="startTime"
    )
    next_retry_time: str | None = _time(
        "Set while the run waits out a backoff: when the next attempt starts (RFC 3339).",
        alias="nextRetryTime",
    )
    claim_time: str | None = _time(
        "When this attempt was claimed (RFC 3339): the operator writes the attempt here before it creates its "
        "Job, so a replica with a stale view, whose write is refused, creates nothing. Before scheduledTime for "
        "a run claimed ahead (the operator's --claim-ahead): its Job is created at scheduledTime.",
        alias="claimTime",
    )


class HistoryEntry(_Model):
    scheduled_time: str = _time("Due time of the run (RFC 3339).", alias="scheduledTime", required=True)
    start_time: str | None = _time("First attempt start (RFC 3339).", alias="startTime")
    completion_time: str | None = _time("When the run ended (RFC 3339).", alias="completionTime")
    attempts: int = Field(0, description="Attempts made (0 for Skipped and Missed).")
    outcome: Outcome = Field(..., description="Succeeded, Failed, Skipped, Missed or Replaced.")
    message: str = Field("", description="The handler's result message (truncated), or why it did not run.")
    job_name: str | None = Field(None, alias="jobName", description="Job of the last attempt.")


class OutboxEntry(_Model):
    """One run transition recorded for publishing, in the same status write that records the transition."""

    sequence: int = Field(..., description="Per task, 1 for its first event; the CloudEvents sequence.")
    kind: EventKind = Field(
        ..., description="started, retrying, succeeded, failed, skipped, missed or replaced."
    )
    time: str = _time("When the transition happened (RFC 3339).", alias="time", required=True)
    run_id: str = Field(..., alias="runId", description="The run's identifier.")
    attempt: int = Field(0, description="The attempt the event is about (0 when none started).")
    scheduled_time: str = _time("Due time of the run (RFC 3339).", alias="scheduledTime", required=True)
    manual: bool = Field(False, description="A run started by run-now.")
    job_name: str | None = Field(None, alias="jobName", description="The attempt's Job.")
    reason: str | None = Field(None, description="Why (for retrying, failed, skipped, missed, replaced).")
    message: str | None = Field(None, description="The handler's message or the operator's, clipped.")
    start_time: str | None = _time("When the run's first attempt started (RFC 3339).", alias="startTime")
    completion_time: str | None = _time("When the run ended (RFC 3339).", alias="completionTime")
    next_retry_time: str | None = _time(
        "For retrying: when the next attempt starts (RFC 3339).", alias="nextRetryTime"
    )
    count: int | None = Field(None, description="For missed: how many due times one entry stands for.")


class EventOutbox(_Model):
    """Run events recorded but not yet acknowledged by every sink (the outbox), oldest first."""

    sequence: int = Field(0, description="The sequence number given to this task's latest event.")
    dropped: int = Field(
        0, description="Events dropped, oldest first, because the outbox was full (since creation)."
    )
    pending: list[OutboxEntry] = Field(
        default_factory=list,
        description=(
            "Events not yet known to be acknowledged. Acknowledged ones are removed in a later status write, "
            "so some may already have been delivered; after a restart these are sent again with the same ids."
        ),
    )


class Counters(_Model):
    runs: int = Field(0, description="Runs started, and the next run once it is claimed ahead.")
    succeeded: int = Field(0, description="Runs that succeeded.")
    failed: int = Field(0, description="Runs that failed after their retries.")
    retries: int = Field(0, description="Retry attempts started.")
    skipped: int = Field(0, description="Due runs skipped by concurrencyPolicy Forbid.")
    missed: int = Field(0, description="Due runs not started (deadline passed, or downtime).")


class TaskStatus(_Model):
    """What the operator observed and did. Written only by the operator."""

    phase: Phase | None = Field(
        None,
        description=(
            "Scheduled, Running (an attempt is active, or the next run is claimed ahead), Retrying (waiting out "
            "a backoff), Suspended, Failed (the last run exhausted its retries; the next due time is still "
            "scheduled), Invalid (the spec cannot run: fix it) or Blocked (the API server refuses the executor "
            "Job, or the status cannot be read: no run starts until that is resolved). The Ready condition's "
            "reason says why."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, LastRunSucceeded and, while the task cannot run, Stalled; as metav1.Condition (one of "
        "each type at most).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        None, alias="observedGeneration", description="Generation of the spec last acted on."
    )
    next_run_time: str | None = _time(
        "Next due time (RFC 3339, UTC); absent while suspended or invalid. Once the next run is claimed ahead "
        "(it is in active), the due time after it.",
        alias="nextRunTime",
    )
    last_schedule_time: str | None = _time(
        "Due time of the most recent run started or claimed ahead (RFC 3339).", alias="lastScheduleTime"
    )
    last_successful_time: str | None = _time(
        "Completion time of the most recent successful run (RFC 3339).", alias="lastSuccessfulTime"
    )
    last_due_time: str | None = _time(
        "Most recent due time handled (started, claimed ahead, skipped or recorded missed); the next one is "
        "computed after it, so a restart neither repeats nor loses a due time.",
        alias="lastDueTime",
    )
    last_result: str | None = Field(
        None, alias="lastResult", description="Outcome of the most recent finished run."
    )
    active: list[ActiveRun] = Field(
        default_factory=list,
        description="Unfinished runs, and the next run from when it is claimed ahead (up to the operator's "
        "--claim-ahead, 60 s by default, before its due time; its claimTime is before its scheduledTime).",
    )
    active_count: int | None = Field(
        None,
        alias="activeCount",
        ge=0,
        description="Number of entries in active (the ACTIVE column: a printer column cannot count a list).",
    )
    current_attempt: int | None = Field(
        None,
        alias="currentAttempt",
        description=(
            "For a run that is retrying: its attempt number (1 = the first "
            "try, which failed, while the run waits for attempt 2). Absent "
            "while no run is retrying. With several, the highest."
        ),
    )
    next_retry_time: str | None = _time(
        "For a run that is retrying: when the next attempt starts (RFC 3339).", alias="nextRetryTime"
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, description="Newest first, at most spec.historyLimit entries."
    )
    counters: Counters = Field(default_factory=Counters, description="Totals since creation.")
    last_run_now_token: str | None = Field(
        None, alias="lastRunNowToken", description="Value of the cronlet.dev/run-now annotation handled last."
    )
    events: EventOutbox | None = Field(
        None, description="The outbox of task events, present once the operator has had event sinks."
    )
    schedule_key: str | None = Field(
        None,
        alias="scheduleKey",
        description=(
            "The schedule (or interval) and time zone that lastDueTime counts from. When the spec changes them, "
            "counting restarts at the change: no due time from before it is run."
        ),
    )


def dump(model: BaseModel) -> dict[str, Any]:
    """The wire form: camelCase keys, no nulls."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")
