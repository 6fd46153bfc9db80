"""A podTemplate the executor's own fields cannot be merged with is Invalid before any Job is created.

The rules are the API server's (``ValidateSecurityContext``: allowPrivilegeEscalation false with privileged or
CAP_SYS_ADMIN) and the kubelet's (``verifyRunAsNonRoot``: runAsUser 0 under runAsNonRoot), applied to the
executor container as ``manifests.build_job`` merges it; each case names the field to change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronlet._core import decision, manifests, model, naming, validation, views

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def task(spec: dict[str, Any], status: model.TaskStatus | None = None, generation: int = 1) -> views.TaskView:
    return views.TaskView(
        namespace="ns",
        name="t",
        uid="uid-1",
        generation=generation,
        created=T0,
        spec={"schedule": "*/10 * * * * *", "handler": "echo", **spec},
        status=status or model.TaskStatus(),
        known_handlers=frozenset({"echo"}),
        default_image=not manifests.sets_image(spec),
    )


def executor(**fields: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "executor", **fields}]}}


def with_sidecar_first(**fields: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}, {"name": "executor", **fields}]}}


REFUSED = [
    (
        "privileged",
        executor(securityContext={"privileged": True}),
        "spec.podTemplate.spec.containers[0].securityContext.privileged",
        "allowPrivilegeEscalation: false",
    ),
    (
        "privileged, executor second",
        with_sidecar_first(securityContext={"privileged": True}),
        "spec.podTemplate.spec.containers[1].securityContext.privileged",
        "allowPrivilegeEscalation: false",
    ),
    (
        "CAP_SYS_ADMIN added",
        executor(securityContext={"capabilities": {"add": ["NET_BIND_SERVICE", "CAP_SYS_ADMIN"]}}),
        "spec.podTemplate.spec.containers[0].securityContext.capabilities.add[1]",
        "CAP_SYS_ADMIN",
    ),
    (
        "runAsUser 0 in the container",
        executor(securityContext={"runAsUser": 0}),
        "spec.podTemplate.spec.containers[0].securityContext.runAsUser",
        "runAsNonRoot: true",
    ),
    (
        "runAsUser 0 for the pod",
        {"spec": {"securityContext": {"runAsUser": 0}}},
        "spec.podTemplate.spec.securityContext.runAsUser",
        "runAsNonRoot: true",
    ),
    (
        "runAsNonRoot true for the pod too",
        {"spec": {"securityContext": {"runAsUser": 0, "runAsNonRoot": True}}},
        "spec.podTemplate.spec.securityContext.runAsUser",
        "runAsNonRoot: true",
    ),
    ("spec not an object", {"spec": "privileged"}, "spec.podTemplate.spec must be an object", ""),
    (
        "containers not a list",
        {"spec": {"containers": {"name": "executor"}}},
        "spec.podTemplate.spec.containers must be a list",
        "",
    ),
    (
        "securityContext not an object",
        executor(securityContext=["privileged"]),
        "spec.podTemplate.spec.containers[0].securityContext must be an object",
        "",
    ),
]


@pytest.mark.parametrize(("name", "template", "field", "why"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_pod_template_that_cannot_merge_is_invalid_naming_the_field(
    name: str, template: dict[str, Any], field: str, why: str
) -> None:
    with pytest.raises(validation.InvalidSpec) as err:
        validation.compile_task(task({"podTemplate": template}))
    assert err.value.reason == "InvalidPodTemplate"
    assert err.value.message.startswith(field) and why in err.value.message


ACCEPTED = [
    ("no securityContext", executor(resources={"limits": {"memory": "64Mi"}})),
    (
        "privileged with escalation on",
        executor(securityContext={"privileged": True, "allowPrivilegeEscalation": True}),
    ),
    (
        "CAP_SYS_ADMIN with escalation on",
        executor(
            securityContext={"allowPrivilegeEscalation": True, "capabilities": {"add": ["CAP_SYS_ADMIN"]}}
        ),
    ),
    ("another capability added", executor(securityContext={"capabilities": {"add": ["NET_BIND_SERVICE"]}})),
    ("root with runAsNonRoot off", executor(securityContext={"runAsUser": 0, "runAsNonRoot": False})),
    (
        "root for the pod, a uid for the container",
        {
            "spec": {
                "securityContext": {"runAsUser": 0},
                "containers": [{"name": "executor", "securityContext": {"runAsUser": 1000}}],
            }
        },
    ),
    ("a non-root uid", {"spec": {"securityContext": {"runAsUser": 1000}}}),
    ("a privileged sidecar is the API server's to judge", {"spec": {"containers": [{"name": "vpn"}]}}),
    ("read-only root turned off", executor(securityContext={"readOnlyRootFilesystem": False})),
]


@pytest.mark.parametrize(("name", "template"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_a_pod_template_that_merges_is_accepted(name: str, template: dict[str, Any]) -> None:
    validation.compile_task(task({"podTemplate": template}))


def test_an_unmergeable_pod_template_is_reported_once_creates_no_job_and_recovers_when_fixed() -> None:
    bad = task({"podTemplate": executor(securityContext={"privileged": True})})
    first = decision.plan(bad, [], now=T0 + timedelta(seconds=10.01))  # a due time: still no Job
    assert first.create == () and first.wake_at is None
    assert first.status.phase == "Invalid" and first.status.next_run_time is None
    ready = first.status.conditions[0]
    assert (ready.type, ready.status, ready.reason) == ("Ready", "False", "InvalidPodTemplate")
    assert "containers[0].securityContext.privileged" in ready.message
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "InvalidPodTemplate")]
    again = decision.plan(
        views.TaskView(**{**bad.__dict__, "status": first.status}), [], now=T0 + timedelta(seconds=20.01)
    )
    assert again.events == () and again.create == ()  # no second Warning, no retry
    fixed = task({"podTemplate": executor(securityContext={"privileged": False})}, first.status, generation=2)
    after = decision.plan(fixed, [], now=T0 + timedelta(seconds=21))
    assert after.status.phase == "Scheduled" and after.status.conditions[0].status == "True"
    due = decision.plan(
        views.TaskView(**{**fixed.__dict__, "status": after.status}), [], now=T0 + timedelta(seconds=30.01)
    )
    assert [c.run_id for c in due.create] == [naming.scheduled_run_id(T0 + timedelta(seconds=30))]


def test_the_offline_check_refuses_what_the_operator_refuses() -> None:
    doc = {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": "t"},
        "spec": {
            "schedule": "@daily",
            "handler": "echo",
            "podTemplate": executor(securityContext={"capabilities": {"add": ["CAP_SYS_ADMIN"]}}),
        },
    }
    verdict = validation.check_manifest(doc, index=0, namespace="ns", now=T0, handlers=frozenset({"echo"}))
    assert isinstance(verdict, validation.Verdict)
    assert verdict.reason == "InvalidPodTemplate" and "capabilities.add[0]" in verdict.message


# --------------------------------------------------------------------------- which image


def test_spec_image_and_the_executor_container_image_are_not_both_accepted() -> None:
    with pytest.raises(validation.InvalidSpec) as err:
        validation.compile_task(task({"image": "acme/a:1", "podTemplate": executor(image="acme/b:1")}))
    assert err.value.reason == "InvalidPodTemplate"
    assert err.value.message.startswith(
        "spec.image and spec.podTemplate.spec.containers[0].image are both set"
    )


def test_the_executor_container_image_alone_is_the_executor_s_image_like_spec_image() -> None:
    # Like spec.image, it is an image of the task's own: short handler names are the image's to know.
    spec = {"handler": "nightly", "podTemplate": executor(image="acme/handlers:2")}
    _, _ = validation.compile_task(task(spec))
    with pytest.raises(validation.InvalidSpec, match="not registered"):
        validation.compile_task(task({"handler": "nightly"}))
    job = manifests.build_job(
        task=task(spec),
        spec=model.TaskSpec.model_validate(task(spec).spec),
        run=views.JobToCreate(run_id="1", attempt=1, scheduled_time=T0),
        image="cronlet:1",
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "acme/handlers:2"
    assert (
        manifests.task_view(
            {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}, known_handlers=None
        ).default_image
        is False
    )
