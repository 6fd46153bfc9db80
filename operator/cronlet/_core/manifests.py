"""Building and reading Kubernetes objects: executor Jobs, Events, and the views the planner reads.

Pure functions from data to manifests and back; sending them is the controller's job (``_controller.kube``).
Nothing here does I/O or imports the Kubernetes client: objects are plain dicts as the API serves them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cronlet._common import times
from cronlet._core import model, naming, schedule
from cronlet._core.model import TaskSpec, TaskStatus
from cronlet._core.views import Event, Failure, JobObservation, JobState, JobToCreate, TaskView, Tenancy

EXECUTOR_CONTAINER = "executor"
# The executor container's own security context; a podTemplate container named "executor" overrides any key
# of it (readOnlyRootFilesystem: false is the documented opt-out), and ``pod_template_problem`` refuses the
# overrides that cannot be merged with what stays of it.
EXECUTOR_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The root filesystem is read-only: handlers write scratch files to /tmp, a fresh emptyDir per attempt. A
# podTemplate volume of this name replaces it (a sizeLimit, medium: Memory); a podTemplate mount at /tmp wins.
TMP_VOLUME = "cronlet-tmp"
TMP_PATH = "/tmp"
# Exit code 2 is a permanent failure: the Job controller fails the Job at once with reason PodFailurePolicy,
# so the Job alone tells us not to retry. Disruptions (node drain, preemption) are not the handler's fault:
# the Job controller replaces the pod without counting it.
POD_FAILURE_POLICY = {
    "rules": [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": EXECUTOR_CONTAINER, "operator": "In", "values": [2]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
}


def build_job(*, task: TaskView, spec: TaskSpec, run: JobToCreate, image: str) -> dict[str, Any]:
    """The executor Job for one attempt of one run."""
    name = naming.job_name(task.name, run.run_id, run.attempt)
    labels = {
        model.TASK_LABEL: naming.label_value(task.name),
        model.ATTEMPT_LABEL: str(run.attempt),
        model.RUN_ID_LABEL: run.run_id,
    }
    annotations = {
        model.SCHEDULED_TIME_ANNOTATION: times.rfc3339(run.scheduled_time),
        model.TASK_NAME_ANNOTATION: task.name,
    }
    env = [
        {"name": "CRONLET_TASK", "value": task.name},
        {"name": "CRONLET_NAMESPACE", "value": task.namespace},
        {"name": "CRONLET_HANDLER", "value": spec.handler},
        {"name": "CRONLET_PARAMETERS", "value": model.json_bytes(spec.parameters).decode()},
        {"name": "CRONLET_SCHEDULED_TIME", "value": times.rfc3339(run.scheduled_time)},
        {"name": "CRONLET_ATTEMPT", "value": str(run.attempt)},
        {"name": "CRONLET_RUN_ID", "value": f"{task.namespace}/{task.name}/{run.run_id}"},
    ]
    container: dict[str, Any] = {
        "name": EXECUTOR_CONTAINER,
        "image": spec.image or image,
        "command": ["cronlet-execute"],
        "env": env,
        "terminationMessagePolicy": "File",
        "securityContext": copy.deepcopy(EXECUTOR_SECURITY_CONTEXT),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP_PATH}],
    }
    pod_meta: dict[str, Any] = {"labels": dict(labels), "annotations": dict(annotations)}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    template_spec = (spec.pod_template or {}).get("spec") or {}
    if not template_spec.get("serviceAccountName"):
        # A handler talks to the Kubernetes API only when its task says as whom: without a service account of
        # its own, the namespace's default token stays out of the pod (podTemplate can still turn it on).
        pod_spec["automountServiceAccountToken"] = False
    if spec.pod_template:
        _merge_template(pod_meta, pod_spec, spec.pod_template)
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # Cronlet retries, with its own backoff; the Job controller must not
        "podFailurePolicy": POD_FAILURE_POLICY,
        "template": {"metadata": pod_meta, "spec": pod_spec},
    }
    if spec.timeout:
        job_spec["activeDeadlineSeconds"] = max(
            1, round(schedule.parse_duration(spec.timeout).total_seconds())
        )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": task.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": model.API_VERSION,
                    "kind": model.KIND,
                    "name": task.name,
                    "uid": task.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def template_executor(template: Mapping[str, Any] | None) -> tuple[int, Mapping[str, Any]] | None:
    """The podTemplate's container named ``executor`` (merged into Cronlet's) and its index, if it has one."""
    pod = (template or {}).get("spec")
    containers = pod.get("containers") if isinstance(pod, Mapping) else None
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if isinstance(container, Mapping) and container.get("name") == EXECUTOR_CONTAINER:
            return index, container
    return None


def sets_image(spec: Mapping[str, Any]) -> bool:
    """Whether a raw spec chooses the executor's image (``image``, or the podTemplate's executor container)."""
    template = spec.get("podTemplate")
    executor = template_executor(template if isinstance(template, Mapping) else None)
    return bool(spec.get("image")) or (executor is not None and bool(executor[1].get("image")))


def _merge_template(meta: dict[str, Any], spec: dict[str, Any], template: Mapping[str, Any]) -> None:
    """Merge the user's podTemplate; Cronlet's own labels, env and restartPolicy win."""
    user_meta = template.get("metadata") or {}
    for key in ("labels", "annotations"):
        meta[key] = {**(user_meta.get(key) or {}), **meta[key]}
    user_spec = copy.deepcopy(dict(template.get("spec") or {}))
    ours = spec["containers"][0]
    others = []
    for c in user_spec.pop("containers", None) or []:
        if c.get("name") == EXECUTOR_CONTAINER:
            merged = {**c, **{k: v for k, v in ours.items() if k not in ("securityContext", "volumeMounts")}}
            merged["securityContext"] = {**ours["securityContext"], **(c.get("securityContext") or {})}
            cronlet_env = {e["name"] for e in ours["env"]}
            merged["env"] = [e for e in c.get("env") or [] if e.get("name") not in cronlet_env] + ours["env"]
            # The user's mounts first; ours at /tmp unless they mount something there themselves (the API
            # server refuses two mounts at one path).
            mounts = list(c.get("volumeMounts") or [])
            if all(m.get("mountPath", "").rstrip("/") != TMP_PATH for m in mounts):
                mounts += ours["volumeMounts"]
            merged["volumeMounts"] = mounts
            if c.get("image"):
                merged["image"] = c["image"]
            ours = merged
        else:
            others.append(c)
    user_spec.pop("restartPolicy", None)
    # The user's volumes and ours; a volume of theirs named like ours replaces it.
    volumes = list(user_spec.pop("volumes", None) or [])
    names = {v.get("name") for v in volumes}
    volumes += [v for v in spec["volumes"] if v["name"] not in names]
    spec.update(user_spec)
    spec["volumes"] = volumes
    spec["containers"] = [ours, *others]
    spec["restartPolicy"] = "Never"


def observe_job(body: Mapping[str, Any]) -> JobObservation | None:
    """The planner's view of a Job; None for a Job that is not one of ours."""
    meta = body.get("metadata") or {}
    owner = next(
        (
            o
            for o in meta.get("ownerReferences") or []
            if o.get("kind") == model.KIND and o.get("apiVersion", "").startswith(model.GROUP + "/")
        ),
        None,
    )
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if owner is None or model.RUN_ID_LABEL not in labels:
        return None
    try:
        attempt = int(labels.get(model.ATTEMPT_LABEL, "1"))
        scheduled = times.parse(annotations[model.SCHEDULED_TIME_ANNOTATION])
        created = times.parse(meta["creationTimestamp"])
    except (KeyError, ValueError):
        return None
    status = body.get("status") or {}
    state, failure, completion, reason = JobState.ACTIVE, None, None, ""
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            state = JobState.SUCCEEDED
            completion = times.parse(status.get("completionTime") or cond.get("lastTransitionTime"))
        elif cond.get("type") == "Failed":
            state = JobState.FAILED
            completion = times.parse(cond.get("lastTransitionTime") or meta["creationTimestamp"])
            why = cond.get("reason", "")
            reason = f"{why}: {cond.get('message', '')}".strip(": ")
            failure = {"DeadlineExceeded": Failure.TIMEOUT, "PodFailurePolicy": Failure.PERMANENT}.get(
                why, Failure.RETRYABLE
            )
    return JobObservation(
        name=meta["name"],
        owner_uid=owner.get("uid", ""),
        run_id=labels[model.RUN_ID_LABEL],
        attempt=attempt,
        scheduled_time=scheduled,
        created=created,
        state=state,
        failure=failure,
        completion_time=completion,
        deleting=bool(meta.get("deletionTimestamp")),
        reason=reason,
        started=state is not JobState.ACTIVE or _pod_has_run(status),
        uid=meta.get("uid") or "",
    )


def _pod_has_run(status: Mapping[str, Any]) -> bool:
    """Whether a pod of the Job is running or has run: the start limit stops counting then."""
    uncounted = status.get("uncountedTerminatedPods") or {}
    ended = (status.get("succeeded") or 0) + (status.get("failed") or 0) + sum(map(len, uncounted.values()))
    return bool(status.get("ready") or ended)


def start_problem(*, pods: Sequence[Mapping[str, Any]], warnings: Sequence[Mapping[str, Any]]) -> str:
    """Why an attempt's pod has not started, as ``Reason: message`` a user can act on.

    From the newest pod: a container waiting (ImagePullBackOff, ErrImagePull, CreateContainerConfigError, ...),
    else the scheduler's verdict (Unschedulable). Without any pod, the Job controller's FailedCreate Event
    says why its pods were refused.
    """
    for pod in pods:
        status = pod.get("status") or {}
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "PodInitializing":
                return _reason_text(waiting["reason"], waiting.get("message") or "")
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return _reason_text(
                    condition.get("reason") or "Unschedulable", condition.get("message") or ""
                )
        return _reason_text(
            "NotStarted", f"pod {pod.get('metadata', {}).get('name', '')} is {status.get('phase')}"
        )
    refused = [e for e in warnings if e.get("reason") == "FailedCreate"]
    if refused:
        newest = max(refused, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return _reason_text("FailedCreate", newest.get("message") or "")
    return _reason_text("FailedCreate", "the Job created no pod")


def _reason_text(reason: str, message: str) -> str:
    return f"{reason}: {' '.join(message.split())}" if message.strip() else reason


def owned_by(job: Mapping[str, Any], uid: str) -> bool:
    """Whether the object's owner references name the task with this uid."""
    return any(o.get("uid") == uid for o in (job.get("metadata") or {}).get("ownerReferences") or [])


def task_key_of_job(body: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = body.get("metadata") or {}
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == model.KIND), None)
    if owner is None:
        return None
    return meta.get("namespace", ""), owner.get("name", "")


def task_view(
    body: Mapping[str, Any],
    *,
    known_handlers: frozenset[str] | None,
    tenancy: Tenancy | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> TaskView:
    meta = body.get("metadata") or {}
    raw_status = body.get("status") or {}
    status, problem = read_status(raw_status)
    spec = body.get("spec") or {}
    return TaskView(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        created=times.parse(meta["creationTimestamp"]),
        spec=spec,
        status=status,
        run_now_token=(meta.get("annotations") or {}).get(model.RUN_NOW_ANNOTATION),
        known_handlers=known_handlers,
        default_image=not sets_image(spec),
        status_problem=problem,
        tenancy=tenancy or Tenancy(),
        namespace_labels=namespace_labels,
    )


def read_status(raw: Mapping[str, Any]) -> tuple[TaskStatus, str | None]:
    """The status as the decision needs it, or an empty one and what is wrong with it.

    A status that does not read (edited by hand, written by another tool) must not be taken for an empty one:
    the decision would then forget which due times it handled and adopt old Jobs as new results.
    """
    try:
        status = TaskStatus.model_validate(raw)
        for moment in (status.last_due_time, status.last_schedule_time, status.last_successful_time):
            times.parse_optional(moment)
        for run in status.active:
            times.parse(run.scheduled_time)
            times.parse_optional(run.start_time)
            times.parse_optional(run.next_retry_time)
    except ValueError as exc:
        first = str(exc).strip().splitlines()
        return TaskStatus(), " ".join(first[:3])[:500]
    return status, None


def build_event(*, task: TaskView, event: Event, now: datetime, component: str) -> dict[str, Any]:
    """A core/v1 Event about the task. The name is derived so that repeats can be counted, not stacked."""
    name = naming.event_name(task=task.name, uid=task.uid, reason=event.reason, message=event.message)
    stamp = times.rfc3339(now.replace(microsecond=0))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": task.namespace},
        "involvedObject": {
            "apiVersion": model.API_VERSION,
            "kind": model.KIND,
            "name": task.name,
            "namespace": task.namespace,
            "uid": task.uid,
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def termination_message(pod: Mapping[str, Any]) -> tuple[str, int | None]:
    """The handler's message and exit code from a finished executor pod."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != EXECUTOR_CONTAINER:
            continue
        term = (cs.get("state") or {}).get("terminated") or {}
        raw = term.get("message") or ""
        code = term.get("exitCode")
        reason = term.get("reason") or ""
        if reason == "OOMKilled" or (not raw and reason and reason != "Completed"):
            # Killed before the executor could write its result (the memory limit, most often): the kubelet's
            # reason is all there is, and what a user needs to see.
            limit = (
                "the container exceeded its memory limit" if reason == "OOMKilled" else "the container ended"
            )
            return f"{reason}: {limit} (exit code {code})", code
        try:
            data = json.loads(raw)
            return str(data.get("message", raw)), code
        except (ValueError, AttributeError):
            return raw, code
    return "", None
