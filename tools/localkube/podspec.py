"""Pure functions of the fake kubelet: reading pod specs and building Node and pod-status documents.

For: deciding what a container runs (command, environment, termination-message path), what a simulated
pod's outcome is, whether a container restarts, and the JSON the kubelet sends. Must not: do I/O, read
the clock or call the API. Times come in as arguments and the one lookup that needs the API (ConfigMaps
and Secrets for the environment) is a callable passed in, so everything here is testable on plain dicts.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Json = dict[str, Any]

OUTCOME_LABEL = "localkube.dev/outcome"
DURATION_LABEL = "localkube.dev/duration-ms"
MESSAGE_ANNOTATION = "localkube.dev/termination-message"
OUTCOME_EXIT_CODES = {"succeed": 0, "fail": 1, "fail-permanent": 2}

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
# The real kubelet's limits (pkg/kubelet/kuberuntime): 4096 bytes of message file; for
# FallbackToLogsOnError, the last 80 lines of the log, at most 2048 bytes.
MAX_MESSAGE_BYTES = 4096
MAX_FALLBACK_LINES = 80
MAX_FALLBACK_BYTES = 2048

# Lookup of a ConfigMap's or Secret's ``data`` (kind, namespace, name); None when it does not exist.
DataLookup = Callable[[str, str, str], Mapping[str, str] | None]


class UnsupportedPod(Exception):
    """The pod cannot run here; ``reason`` is a CamelCase reason for its status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class ContainerPlan:
    """What running one container means here."""

    name: str
    image: str
    argv: tuple[str, ...]  # empty in simulate mode
    env: Mapping[str, str]
    termination_path: str
    fallback_to_logs: bool


@dataclass(frozen=True, kw_only=True)
class Termination:
    """How one run of a container ended."""

    exit_code: int
    message: str
    started_at: datetime
    finished_at: datetime

    @property
    def reason(self) -> str:
        return "Completed" if self.exit_code == 0 else "Error"


@dataclass(frozen=True, kw_only=True)
class ContainerOutcome:
    """How a container ended for good: its last run, its restart count and the run before the last."""

    termination: Termination
    restarts: int
    previous: Termination | None = None


@dataclass(frozen=True, kw_only=True)
class Simulated:
    """The outcome a simulate-mode pod asks for with its labels."""

    exit_code: int
    duration_seconds: float
    message: str


# -- reading pods ------------------------------------------------------------------------------------------


def meta(obj: Json) -> Json:
    value = obj.get("metadata") or {}
    return value if isinstance(value, dict) else {}


def key(pod: Json) -> str:
    return f"{meta(pod).get('namespace', '')}/{meta(pod).get('name', '')}"


def containers(pod: Json) -> list[Json]:
    return list((pod.get("spec") or {}).get("containers") or [])


def phase(pod: Json) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_terminal(pod: Json) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def deleting(pod: Json) -> bool:
    return bool(meta(pod).get("deletionTimestamp"))


def grace_seconds(pod: Json, *, cap: float = 30.0) -> float:
    """How long a deleted pod's processes get between SIGTERM and SIGKILL."""
    value = meta(pod).get("deletionGracePeriodSeconds")
    if value is None:
        value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
    return max(0.0, min(float(value), cap))


def restart_policy(pod: Json) -> str:
    return str((pod.get("spec") or {}).get("restartPolicy") or "Always")


def should_restart(policy: str, exit_code: int) -> bool:
    """The container restart rule of the pod's restartPolicy."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def restart_delay(restarts: int) -> float:
    """Back-off before restart number ``restarts`` (1, 2, 4 ... 30 s; the real kubelet starts at 10 s)."""
    return float(min(2 ** max(restarts - 1, 0), 30))


def check_supported(pod: Json) -> None:
    """Reject what the fake kubelet cannot honestly run, rather than pretend."""
    spec = pod.get("spec") or {}
    if spec.get("initContainers"):
        raise UnsupportedPod("Unsupported", "localkube's fake kubelet does not run initContainers")
    if spec.get("ephemeralContainers"):
        raise UnsupportedPod("Unsupported", "localkube's fake kubelet does not run ephemeralContainers")
    if not containers(pod):
        raise UnsupportedPod("Unsupported", "the pod has no containers")


def simulated(pod: Json) -> Simulated:
    """The outcome asked for by the ``localkube.dev/outcome`` and ``localkube.dev/duration-ms`` labels."""
    labels = meta(pod).get("labels") or {}
    outcome = labels.get(OUTCOME_LABEL, "succeed")
    if outcome not in OUTCOME_EXIT_CODES:
        raise UnsupportedPod(
            "InvalidOutcome",
            f"label {OUTCOME_LABEL}={outcome!r}; expected one of {', '.join(OUTCOME_EXIT_CODES)}",
        )
    raw_duration = labels.get(DURATION_LABEL, "0")
    try:
        duration_ms = int(raw_duration)
    except ValueError:
        duration_ms = -1
    if duration_ms < 0:
        raise UnsupportedPod(
            "InvalidDuration", f"label {DURATION_LABEL}={raw_duration!r}; expected milliseconds >= 0"
        )
    message = str((meta(pod).get("annotations") or {}).get(MESSAGE_ANNOTATION, ""))
    return Simulated(
        exit_code=OUTCOME_EXIT_CODES[outcome], duration_seconds=duration_ms / 1000, message=message
    )


def plan_container(
    pod: Json, container: Json, *, base_env: Mapping[str, str], lookup: DataLookup, with_command: bool
) -> ContainerPlan:
    """The environment and command line of one container, as the real kubelet would compute them."""
    defined = container_env(pod, container, lookup=lookup)
    argv: tuple[str, ...] = ()
    if with_command:
        command = [str(part) for part in container.get("command") or []]
        if not command:
            raise UnsupportedPod(
                "Unsupported",
                f"container {container.get('name')!r} has no command: execute mode runs the command "
                "locally and cannot read an image's entrypoint",
            )
        argv = tuple(expand(part, defined) for part in [*command, *map(str, container.get("args") or [])])
    return ContainerPlan(
        name=str(container.get("name")),
        image=str(container.get("image") or ""),
        argv=argv,
        # The kubelet's own environment first, so PATH still finds local console scripts.
        env={**base_env, **defined},
        termination_path=str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH),
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
    )


def container_env(pod: Json, container: Json, *, lookup: DataLookup) -> dict[str, str]:
    """The variables the pod defines for one container (HOSTNAME, envFrom, env), in Kubernetes' order."""
    namespace = str(meta(pod).get("namespace") or "default")
    # $(VAR) expands only to variables the pod itself defines, as in Kubernetes, not to the host's.
    defined: dict[str, str] = {"HOSTNAME": str(meta(pod).get("name") or "")}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(field)
            if ref is None:
                continue
            data = lookup(kind, namespace, str(ref.get("name")))
            if data is None:
                if ref.get("optional"):
                    continue
                raise UnsupportedPod(
                    "CreateContainerConfigError", f"{kind.lower()} {ref.get('name')!r} not found"
                )
            for data_key, data_value in data.items():
                defined[prefix + data_key] = _decode(kind, data_value)
    for var in container.get("env") or []:
        name = str(var.get("name"))
        if "valueFrom" in var and var["valueFrom"] is not None:
            resolved = _value_from(pod, var["valueFrom"], namespace=namespace, lookup=lookup, name=name)
            if resolved is None:
                continue  # optional and absent: the variable is not set at all
            defined[name] = resolved
        else:
            defined[name] = expand(str(var.get("value") or ""), defined)
    return defined


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: ``$$`` escapes, unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return variables.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)", replace, text)


def termination_message(raw: bytes) -> str:
    return raw[:MAX_MESSAGE_BYTES].decode(errors="replace")


def fallback_message(log: bytes) -> str:
    """The tail of a container's log, used as its message under FallbackToLogsOnError."""
    lines = log.splitlines(keepends=True)[-MAX_FALLBACK_LINES:]
    return b"".join(lines)[-MAX_FALLBACK_BYTES:].decode(errors="replace")


def exit_code_of(returncode: int) -> int:
    """A Popen return code as a container exit code: death by signal N reads as 128+N."""
    return 128 - returncode if returncode < 0 else returncode


# -- documents the kubelet sends ---------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_manifest(name: str, *, now: datetime, kubelet_version: str) -> Json:
    """A Ready, untainted node with room for many pods; status may be set on create."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "localkube.dev/fake": "true",
            },
        },
        "spec": {},
        "status": node_status(now=now, kubelet_version=kubelet_version, resources=resources),
    }


def node_status(*, now: datetime, kubelet_version: str, resources: Mapping[str, str]) -> Json:
    stamp = rfc3339(now)
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "localkube fake kubelet",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        ],
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": kubelet_version,
            "containerRuntimeVersion": "localkube://fake",
            "kernelVersion": "",
            "osImage": "localkube",
            "kubeProxyVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def running_status(pod: Json, *, now: datetime) -> Json:
    """Pod status patch: Running, ready, every container running (a strategic merge patch body)."""
    stamp = rfc3339(now)
    return {
        "status": {
            "phase": "Running",
            "startTime": stamp,
            "conditions": _conditions(ready=True, stamp=stamp, reason=None),
            "containerStatuses": [
                running_container(c, started_at=now, restarts=0, last=None) for c in containers(pod)
            ],
        }
    }


def running_container(
    container: Json, *, started_at: datetime, restarts: int, last: Termination | None
) -> Json:
    status: Json = {
        **_container_identity(container),
        "ready": True,
        "started": True,
        "restartCount": restarts,
        "state": {"running": {"startedAt": rfc3339(started_at)}},
    }
    if last is not None:
        status["lastState"] = {"terminated": _terminated(last)}
    return status


def terminated_container(container: Json, outcome: ContainerOutcome) -> Json:
    status: Json = {
        **_container_identity(container),
        "ready": False,
        "started": False,
        "restartCount": outcome.restarts,
        "state": {"terminated": _terminated(outcome.termination)},
    }
    if outcome.previous is not None:
        status["lastState"] = {"terminated": _terminated(outcome.previous)}
    return status


def terminal_status(pod: Json, outcomes: Mapping[str, ContainerOutcome]) -> Json:
    """Pod status patch for the end: Succeeded when every container's last run exited 0, else Failed.

    A container killed for a deletion has exit code 143 or 137 and so fails the pod, unless it caught
    SIGTERM and exited 0, which a real kubelet reports as Succeeded too.
    """
    succeeded = all(o.termination.exit_code == 0 for o in outcomes.values())
    stamp = rfc3339(max(o.termination.finished_at for o in outcomes.values()))
    return {
        "status": {
            "phase": "Succeeded" if succeeded else "Failed",
            "conditions": _conditions(ready=False, stamp=stamp, reason="PodCompleted"),
            # Always the whole list: containerStatuses has no merge key, so a patch replaces it.
            "containerStatuses": [
                terminated_container(c, outcomes[str(c.get("name"))]) for c in containers(pod)
            ],
        }
    }


def unsupported_status(pod: Json, error: UnsupportedPod, *, now: datetime) -> Json:
    """Pod status patch for a pod this kubelet refuses: Failed, with the reason on pod and containers.

    A real kubelet would keep such a pod Pending and retry; failing it makes the problem visible at once.
    """
    stamp = rfc3339(now)
    return {
        "status": {
            "phase": "Failed",
            "reason": error.reason,
            "message": error.message,
            "conditions": _conditions(ready=False, stamp=stamp, reason="PodFailed"),
            "containerStatuses": [
                {
                    **_container_identity(c),
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 128,
                            "reason": error.reason,
                            "message": error.message,
                            "startedAt": stamp,
                            "finishedAt": stamp,
                        }
                    },
                }
                for c in containers(pod)
            ],
        }
    }


def delete_options(pod: Json) -> Json:
    """Delete at once (grace 0), and only this pod: a new pod of the same name has another uid."""
    return {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": meta(pod).get("uid")},
    }


def pod_dir_name(pod: Json) -> Path:
    m = meta(pod)
    return Path(str(m.get("namespace"))) / f"{m.get('name')}-{str(m.get('uid'))[:8]}"


# -- helpers -----------------------------------------------------------------------------------------------


def _container_identity(container: Json) -> Json:
    return {"name": container.get("name"), "image": container.get("image") or "", "imageID": ""}


def _terminated(termination: Termination) -> Json:
    state: Json = {
        "exitCode": termination.exit_code,
        "reason": termination.reason,
        "startedAt": rfc3339(termination.started_at),
        "finishedAt": rfc3339(termination.finished_at),
    }
    if termination.message:
        state["message"] = termination.message
    return state


def _conditions(*, ready: bool, stamp: str, reason: str | None) -> list[Json]:
    status = "True" if ready else "False"
    conditions: list[Json] = [
        {"type": "PodReadyToStartContainers", "status": status, "lastTransitionTime": stamp},
        {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
        {"type": "ContainersReady", "status": status, "lastTransitionTime": stamp},
        {"type": "Ready", "status": status, "lastTransitionTime": stamp},
    ]
    if reason is not None:
        for condition in conditions[2:]:
            condition["reason"] = reason
    return conditions


def _decode(kind: str, value: str) -> str:
    if kind != "Secret":
        return value
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise UnsupportedPod("CreateContainerConfigError", f"undecodable secret value: {error}") from error


def _value_from(pod: Json, source: Json, *, namespace: str, name: str, lookup: DataLookup) -> str | None:
    if "fieldRef" in source:
        return _field(pod, str(source["fieldRef"].get("fieldPath")))
    for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
        ref = source.get(field)
        if ref is None:
            continue
        data = lookup(kind, namespace, str(ref.get("name")))
        wanted = str(ref.get("key"))
        if data is None or wanted not in data:
            if ref.get("optional"):
                return None
            raise UnsupportedPod(
                "CreateContainerConfigError",
                f"env {name}: key {wanted!r} of {kind.lower()} {ref.get('name')!r} not found",
            )
        return _decode(kind, data[wanted])
    raise UnsupportedPod("CreateContainerConfigError", f"env {name}: unsupported valueFrom {sorted(source)}")


_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _field(pod: Json, path: str) -> str:
    m = meta(pod)
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": m.get("name"),
        "metadata.namespace": m.get("namespace"),
        "metadata.uid": m.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        # The processes run on this machine: loopback is where they are reachable.
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = _FIELD.match(path)
    if match:
        return str((m.get(match.group(1)) or {}).get(match.group(2), ""))
    raise UnsupportedPod("CreateContainerConfigError", f"unsupported fieldRef {path!r}")
