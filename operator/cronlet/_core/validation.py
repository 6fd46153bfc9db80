"""What makes a ScheduledTask usable: the checks the API server cannot make, and an offline copy of the
ones it does make.

``compile_task`` is what the operator runs on every decision (cron expression, time zone, interval, handler
reference, parameter size, durations) and raises ``InvalidSpec`` with a CamelCase reason. ``check_manifest``
is what ``kubectl cronlet validate`` runs on a YAML document, without a cluster: the API server's structural
checks (unknown fields, types, enums, patterns, exactly one of schedule/interval), then ``compile_task``, so
the plugin accepts exactly what the operator accepts. Pure: no I/O, the clock is a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from cronlet._common import handlerref, times
from cronlet._core import crd, manifests, model, schedule
from cronlet._core.model import TaskSpec
from cronlet._core.views import TaskView

# metadata.name of a custom resource: a DNS-1123 subdomain, as the API server checks it.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class InvalidSpec(Exception):
    """A spec the operator cannot run. ``reason`` is the CamelCase condition reason shown to the user."""

    def __init__(self, reason: model.ConditionReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_spec(raw: Mapping[str, object], *, strict: bool = False) -> TaskSpec:
    """The spec as the model reads it; raises InvalidSpec naming the first field that is wrong.

    ``strict`` refuses what the API server refuses ("3" for an integer, "true" for a boolean); without it,
    pydantic's lax reading is used on objects the API server has already checked.
    """
    try:
        return TaskSpec.model_validate(dict(raw), strict=strict)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidSpec("InvalidSpec", f"spec.{where}: {first['msg']}") from exc


def compile_task(task: TaskView) -> tuple[TaskSpec, schedule.Schedule]:
    """Validate what the API server cannot (cron, zone, handler, size); raise InvalidSpec."""
    spec = parse_spec(task.spec)
    try:
        sched = _compile_schedule(spec, task)
    except schedule.ScheduleError as exc:
        raise InvalidSpec(exc.reason, exc.message) from exc
    _check_handler(spec, task)
    size = len(model.json_bytes(spec.parameters))
    if size > model.MAX_PARAMETERS_BYTES:
        raise InvalidSpec(
            "ParametersTooLarge",
            f"spec.parameters is {size} bytes as JSON; the limit is {model.MAX_PARAMETERS_BYTES} (64 KiB): pass "
            "large inputs through a ConfigMap or volume in podTemplate",
        )
    durations = (
        ("timeout", spec.timeout),
        ("backoff.initialDelay", spec.backoff.initial_delay),
        ("backoff.maxDelay", spec.backoff.max_delay),
        ("startTimeout", spec.start_timeout),
    )
    for field, text in durations:
        if text is not None:
            try:
                schedule.parse_duration(text)
            except ValueError as exc:
                raise InvalidSpec("InvalidSpec", f"spec.{field}: {exc}") from exc
    if spec.pod_template:
        _check_pod_template(spec, task)
    return spec, sched


def _compile_schedule(spec: TaskSpec, task: TaskView) -> schedule.Schedule:
    if spec.schedule is not None and spec.interval is None:
        # H hashes the task's namespace/name, not its uid: deleting and re-creating it (a GitOps sync, a backup
        # restore) keeps its times.
        return schedule.compile_cron(spec.schedule, time_zone=spec.time_zone, hash_key=hash_key(task))
    if spec.interval is not None and spec.schedule is None:
        schedule.load_zone(spec.time_zone)
        return schedule.compile_interval(spec.interval, anchor=task.created)
    raise InvalidSpec("InvalidSchedule", "set exactly one of spec.schedule or spec.interval")


def hash_key(task: TaskView) -> str:
    """What ``H`` in a cron expression hashes: ``namespace/name``."""
    return f"{task.namespace}/{task.name}"


def _check_handler(spec: TaskSpec, task: TaskView) -> None:
    try:
        ref = handlerref.parse_handler_ref(spec.handler)
    except ValueError as exc:
        raise InvalidSpec("UnknownHandler", str(exc)) from exc
    known = task.known_handlers
    if ref.kind == "entrypoint" and task.default_image and known is not None and spec.handler not in known:
        raise InvalidSpec(
            "UnknownHandler",
            f"handler {spec.handler!r} is not registered in the executor image (known: "
            f"{', '.join(sorted(known))}); use a registered name, a path package.module:Name, or set spec.image "
            "to an image that provides it",
        )


def _check_pod_template(spec: TaskSpec, task: TaskView) -> None:
    """What the operator's admin allows (``task.tenancy``), then what would make the API server refuse the Job
    (or the kubelet its container) only because the podTemplate is merged with the executor's own fields."""
    selector = task.tenancy.pod_template_selector
    if selector is not None:
        labels = task.namespace_labels or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            raise InvalidSpec(
                "PodTemplateNotAllowed",
                f"spec.podTemplate: the operator allows a podTemplate only in namespaces labelled {wanted}, and "
                f"namespace {task.namespace} is not; remove spec.podTemplate or ask a cluster admin to label it",
            )
    template = spec.pod_template or {}
    pod = _object(template.get("spec"), "spec.podTemplate.spec")
    _object(template.get("metadata"), "spec.podTemplate.metadata")
    containers = pod.get("containers")
    if containers is not None and not isinstance(containers, list):
        raise InvalidSpec("InvalidPodTemplate", "spec.podTemplate.spec.containers must be a list")
    for index, container in enumerate(containers or []):
        _object(container, f"spec.podTemplate.spec.containers[{index}]")
    _check_service_accounts(pod, task)
    found = manifests.template_executor(template)
    index, executor = found if found is not None else (0, {})
    where = f"spec.podTemplate.spec.containers[{index}]"
    if spec.image and executor.get("image"):
        raise InvalidSpec(
            "InvalidPodTemplate",
            f"spec.image and {where}.image are both set: choose the executor's image in one place (spec.image)",
        )
    ours = _object(executor.get("securityContext"), f"{where}.securityContext")
    pod_context = _object(pod.get("securityContext"), "spec.podTemplate.spec.securityContext")
    effective = {**manifests.EXECUTOR_SECURITY_CONTEXT, **ours}
    if effective.get("allowPrivilegeEscalation") is False:
        # The API server's own rule (ValidateSecurityContext): our allowPrivilegeEscalation: false stays unless
        # the same securityContext turns it on.
        if effective.get("privileged") is True:
            raise InvalidSpec(
                "InvalidPodTemplate",
                f"{where}.securityContext.privileged: true cannot be merged with the executor's "
                "allowPrivilegeEscalation: false (the API server refuses such a pod); set "
                "allowPrivilegeEscalation: true beside it if the task must run privileged",
            )
        added = _object(effective.get("capabilities"), f"{where}.securityContext.capabilities").get("add")
        for n, cap in enumerate(added if isinstance(added, list) else []):
            if cap == "CAP_SYS_ADMIN":
                raise InvalidSpec(
                    "InvalidPodTemplate",
                    f"{where}.securityContext.capabilities.add[{n}]: CAP_SYS_ADMIN cannot be merged with the "
                    "executor's allowPrivilegeEscalation: false (the API server refuses such a pod); set "
                    "allowPrivilegeEscalation: true beside it if the task needs it",
                )
    # The kubelet's rule (verifyRunAsNonRoot): the container's runAsUser, else the pod's, must not be 0 while
    # runAsNonRoot holds; the pod would never start (CreateContainerConfigError).
    user_field = f"{where}.securityContext.runAsUser"
    user = ours.get("runAsUser")
    if "runAsUser" not in ours:
        user_field, user = "spec.podTemplate.spec.securityContext.runAsUser", pod_context.get("runAsUser")
    if effective.get("runAsNonRoot") is True and type(user) is int and user == 0:
        raise InvalidSpec(
            "InvalidPodTemplate",
            f"{user_field}: 0 cannot be merged with the executor's runAsNonRoot: true (the kubelet refuses to "
            f"start the container); use a non-zero uid, or set {where}.securityContext.runAsNonRoot: false",
        )


def _check_service_accounts(pod: Mapping[str, Any], task: TaskView) -> None:
    allowed = task.tenancy.allowed_service_accounts
    if allowed is None:
        return
    # serviceAccount is the deprecated spelling, still honoured by the API server when serviceAccountName is
    # unset: both are checked, or it would be a way around the list.
    for field in ("serviceAccountName", "serviceAccount"):
        name = pod.get(field)
        if not name or name in allowed or f"{task.namespace}/{name}" in allowed:
            continue
        here = sorted(
            a.split("/", 1)[-1] for a in allowed if "/" not in a or a.startswith(f"{task.namespace}/")
        )
        raise InvalidSpec(
            "ServiceAccountNotAllowed",
            f"spec.podTemplate.spec.{field}: the operator does not allow service account {name!r} "
            f"(allowed here: {', '.join(here) or 'none but the namespace default'}); remove it, or ask a "
            "cluster admin to allow it (--allowed-service-accounts)",
        )


def _object(value: object, where: str) -> Mapping[str, Any]:
    """A podTemplate part that must be an object (absent: empty). The CRD keeps podTemplate free-form."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec("InvalidPodTemplate", f"{where} must be an object")
    return value


# --------------------------------------------------------------------------- offline manifest check


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one ScheduledTask document. ``reason`` is None when it is valid."""

    name: str
    reason: str | None
    message: str = ""
    next_due: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def line(self) -> str:
        if self.reason is None:
            nxt = times.rfc3339(self.next_due) if self.next_due else "none"
            return f"{self.name}: ok (next: {nxt})"
        return f"{self.name}: {self.reason}: {self.message}"


@dataclass(frozen=True)
class Skipped:
    """A document that is not a ScheduledTask."""

    what: str


def check_manifest(
    doc: object, *, index: int, namespace: str, now: datetime, handlers: frozenset[str]
) -> Verdict | Skipped | None:
    """Check one YAML document the way the API server and then the operator would. None: an empty document."""
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        return Verdict(f"document {index}", "InvalidResource", "not a YAML mapping (an object)")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    raw_meta = doc.get("metadata")
    meta: Mapping[str, object] = raw_meta if isinstance(raw_meta, Mapping) else {}
    raw_name = meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else None)
    name = str(raw_name) if raw_name else f"document {index}"
    ours = (isinstance(api_version, str) and api_version.split("/")[0] == model.GROUP) or (
        kind == model.KIND and not api_version
    )
    if not ours:
        return Skipped(f"{kind or 'document'}/{meta.get('name') or index} ({api_version or 'no apiVersion'})")
    problem = _resource_problem(api_version=api_version, kind=kind, meta=meta, has_name=bool(raw_name))
    if problem is not None:
        return Verdict(name, "InvalidResource", problem)
    raw_spec = _wire(doc.get("spec"))
    if not isinstance(raw_spec, Mapping):
        return Verdict(name, "InvalidSpec", "spec is required and must be an object")
    spec = _drop_nulls(raw_spec)
    unknown = list(_unknown_fields(spec, _spec_schema(), "spec"))
    if unknown:
        return Verdict(name, "InvalidSpec", "; ".join(unknown))
    try:
        parsed = parse_spec(spec, strict=True)
    except InvalidSpec as exc:
        return Verdict(name, exc.reason, exc.message)
    refused = _api_server_rules(parsed)
    if refused is not None:
        return Verdict(name, "InvalidSpec", refused)
    if ("schedule" in spec) == ("interval" in spec):
        return Verdict(name, "InvalidSchedule", "set exactly one of spec.schedule or spec.interval")
    view = TaskView(
        namespace=str(meta.get("namespace") or namespace),
        name=name,
        uid="validate",
        generation=1,
        created=now,
        spec=spec,
        status=model.TaskStatus(),
        known_handlers=handlers,
        default_image=not manifests.sets_image(spec),
    )
    try:
        _, sched = compile_task(view)
    except InvalidSpec as exc:
        return Verdict(name, exc.reason, exc.message)
    return Verdict(name, None, next_due=schedule.next_after(sched, now))


def _api_server_rules(spec: TaskSpec) -> str | None:
    """The CRD's duration pattern and CEL rules, as the API server applies them to a new object."""
    durations = (
        ("interval", spec.interval),
        ("timeout", spec.timeout),
        ("startTimeout", spec.start_timeout),
        ("backoff.initialDelay", spec.backoff.initial_delay),
        ("backoff.maxDelay", spec.backoff.max_delay),
    )
    for field, text in durations:
        if text is not None and not re.fullmatch(model.DURATION_PATTERN, text):
            return f"spec.{field}: {text!r} is not a Go duration (such as 30s, 1h30m, 1.5s or 500ms)"
    if spec.interval is not None and schedule.parse_duration(spec.interval) < timedelta(seconds=1):
        return "spec.interval: interval must be at least 1s"
    if schedule.parse_duration(spec.backoff.max_delay) < schedule.parse_duration(spec.backoff.initial_delay):
        return "spec.backoff.maxDelay: backoff.maxDelay must not be shorter than backoff.initialDelay"
    return None


def _resource_problem(
    *, api_version: object, kind: object, meta: Mapping[str, object], has_name: bool
) -> str | None:
    if api_version != model.API_VERSION:
        return f"apiVersion {api_version!r} is not served: use {model.API_VERSION}"
    if kind != model.KIND:
        return f"kind {kind!r} is not served by {model.API_VERSION}: use {model.KIND}"
    if not has_name:
        return "metadata.name is required"
    given = meta.get("name")
    if given and (len(str(given)) > 253 or not _DNS_SUBDOMAIN.fullmatch(str(given))):
        return (
            "metadata.name must be a DNS subdomain: lowercase letters, digits, '-' and '.', starting and ending "
            "with a letter or digit, at most 253 characters"
        )
    return None


def _wire(value: object) -> object:
    """A YAML value as the API server receives it: kubectl sends JSON, where dates are strings and keys text."""
    if isinstance(value, Mapping):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _unknown_fields(value: object, node: Mapping[str, object], path: str) -> Iterator[str]:
    """Fields the CRD schema does not know. kubectl's default (strict field validation) rejects them."""
    items = node.get("items")
    if isinstance(value, list) and isinstance(items, Mapping):
        for i, item in enumerate(value):
            yield from _unknown_fields(item, items, f"{path}[{i}]")
        return
    if not isinstance(value, Mapping) or node.get("x-kubernetes-preserve-unknown-fields"):
        return
    values = node.get("additionalProperties")
    if isinstance(values, Mapping):  # a map (labels, nodeSelector, resources.limits): any key, typed values
        for key, sub in value.items():
            yield from _unknown_fields(sub, values, f"{path}.{key}")
        return
    props = node.get("properties") or {}
    assert isinstance(props, Mapping)
    for key, sub in value.items():
        if key not in props:
            yield f'unknown field "{path}.{key}"'
        else:
            yield from _unknown_fields(sub, props[key], f"{path}.{key}")


def _drop_nulls(spec: Mapping[str, object]) -> dict[str, object]:
    # The API server prunes null values of non-nullable fields before defaulting: `suspend: null` is "unset".
    out = {k: v for k, v in spec.items() if v is not None}
    backoff = out.get("backoff")
    if isinstance(backoff, Mapping):
        out["backoff"] = {k: v for k, v in backoff.items() if v is not None}
    return out


def _spec_schema() -> Mapping[str, object]:
    version = crd.build_crd()["spec"]["versions"][0]
    schema: Mapping[str, object] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema
