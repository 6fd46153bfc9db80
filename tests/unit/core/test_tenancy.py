"""What the operator's admin allows a podTemplate (``cronlet operator --allowed-service-accounts``,
``--pod-template-namespace-selector``): a task that asks for more is Invalid, with a reason, before any Job."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronlet._core import decision, model, validation, views

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALLOW = views.Tenancy(allowed_service_accounts=frozenset({"reporter", "ns/etl", "other/deployer"}))
LABELLED = views.Tenancy(pod_template_selector={"cronlet.dev/allow-pod-template": "true"})


def task(
    template: dict[str, Any] | None,
    tenancy: views.Tenancy,
    *,
    labels: Mapping[str, str] | None = None,
    namespace: str = "ns",
) -> views.TaskView:
    spec: dict[str, Any] = {"schedule": "*/10 * * * * *", "handler": "echo"}
    if template is not None:
        spec["podTemplate"] = template
    return views.TaskView(
        namespace=namespace,
        name="t",
        uid="uid-1",
        generation=1,
        created=T0,
        spec=spec,
        status=model.TaskStatus(),
        tenancy=tenancy,
        namespace_labels=labels,
    )


def reason(view: views.TaskView) -> str | None:
    try:
        validation.compile_task(view)
    except validation.InvalidSpec as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(
    ("name", "pod", "where", "expected"),
    [
        ("no account named", {"nodeSelector": {"pool": "batch"}}, "ns", None),
        ("an allowed name, any namespace", {"serviceAccountName": "reporter"}, "elsewhere", None),
        ("allowed in its namespace", {"serviceAccountName": "etl"}, "ns", None),
        (
            "allowed in another namespace only",
            {"serviceAccountName": "etl"},
            "elsewhere",
            "ServiceAccountNotAllowed",
        ),
        ("not listed", {"serviceAccountName": "deployer"}, "ns", "ServiceAccountNotAllowed"),
        ("the deprecated field counts too", {"serviceAccount": "deployer"}, "ns", "ServiceAccountNotAllowed"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_only_allowed_service_accounts_may_be_named(
    name: str, pod: dict[str, Any], where: str, expected: str | None
) -> None:
    assert reason(task({"spec": pod}, ALLOW, namespace=where)) == expected
    assert reason(task({"spec": pod}, views.Tenancy(), namespace=where)) is None  # the default allows any


def test_the_message_names_the_field_and_only_what_this_namespace_may_use() -> None:
    with pytest.raises(validation.InvalidSpec) as err:
        validation.compile_task(task({"spec": {"serviceAccountName": "deployer"}}, ALLOW))
    assert err.value.message.startswith("spec.podTemplate.spec.serviceAccountName:")
    assert "allowed here: etl, reporter" in err.value.message and "other" not in err.value.message
    nothing = views.Tenancy(allowed_service_accounts=frozenset())
    with pytest.raises(validation.InvalidSpec, match="none but the namespace default"):
        validation.compile_task(task({"spec": {"serviceAccountName": "reporter"}}, nothing))


@pytest.mark.parametrize(
    ("name", "template", "labels", "expected"),
    [
        ("no podTemplate, unlabelled", None, {}, None),
        ("podTemplate, labelled", {"spec": {}}, {"cronlet.dev/allow-pod-template": "true"}, None),
        ("podTemplate, unlabelled", {"spec": {}}, {"team": "a"}, "PodTemplateNotAllowed"),
        (
            "podTemplate, label false",
            {"spec": {}},
            {"cronlet.dev/allow-pod-template": "false"},
            "PodTemplateNotAllowed",
        ),
        ("podTemplate, namespace not known", {"spec": {}}, None, "PodTemplateNotAllowed"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_namespace_selector_allows_pod_template_only_where_it_matches(
    name: str, template: dict[str, Any] | None, labels: dict[str, str] | None, expected: str | None
) -> None:
    assert reason(task(template, LABELLED, labels=labels)) == expected


def test_a_refused_task_is_invalid_with_one_warning_and_starts_when_allowed() -> None:
    refused = task({"metadata": {"labels": {"a": "b"}}}, LABELLED, labels={})
    first = decision.plan(refused, [], now=T0 + timedelta(seconds=10.01))
    assert first.create == () and first.status.phase == "Invalid"
    ready = first.status.conditions[0]
    assert (ready.status, ready.reason) == ("False", "PodTemplateNotAllowed")
    assert "cronlet.dev/allow-pod-template=true" in ready.message and "namespace ns" in ready.message
    assert [e.reason for e in first.events] == ["PodTemplateNotAllowed"]
    labelled = views.TaskView(
        **{
            **refused.__dict__,
            "status": first.status,
            "namespace_labels": {"cronlet.dev/allow-pod-template": "true"},
        }
    )
    after = decision.plan(labelled, [], now=T0 + timedelta(seconds=11))
    assert after.status.phase == "Scheduled" and after.events == ()
    assert decision.plan(
        views.TaskView(**{**labelled.__dict__, "status": after.status}), [], now=T0 + timedelta(seconds=20.01)
    ).create
