"""The API server holds conditions to the metav1.Condition schema, and accepts every condition the operator makes.

No operator runs here: the test writes the status itself, through the status subresource, as the operator does.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from cronlet._core import model, status

pytestmark = pytest.mark.cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _task(kube: client.ApiClient, namespace: str, name: str) -> client.CustomObjectsApi:
    custom = client.CustomObjectsApi(kube)
    body = {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": name},
        "spec": {"schedule": "@daily", "handler": "echo", "suspend": True},
    }
    custom.create_namespaced_custom_object(model.GROUP, model.VERSION, namespace, model.PLURAL, body)
    return custom


def _write_status(
    custom: client.CustomObjectsApi, namespace: str, name: str, new: dict[str, Any]
) -> dict[str, Any]:
    return dict(
        custom.patch_namespaced_custom_object_status(
            model.GROUP, model.VERSION, namespace, model.PLURAL, name, {"status": new}
        )
    )


def test_every_condition_the_operator_can_make_is_accepted(
    kube: client.ApiClient, namespace: str, crd: str
) -> None:
    custom = _task(kube, namespace, "all-reasons")
    for reason in typing.get_args(model.ConditionReason):
        ready = status.condition(
            [], kind="Ready", status="False", reason=reason, message="m" * 40000, generation=1, now=NOW
        )
        last = status.condition(
            [], kind="LastRunSucceeded", status="True", reason=reason, message="", generation=1, now=NOW
        )
        full = model.TaskStatus(
            conditions=[ready, last],
            phase="Scheduled",
            observed_generation=1,
            last_due_time="2026-03-01T12:00:00Z",
            active=[
                model.ActiveRun(
                    job_name="j",
                    scheduled_time="2026-03-01T12:00:00Z",
                    attempt=1,
                    start_time="2026-03-01T12:00:00.250Z",
                    claim_time="2026-03-01T12:00:00.250Z",
                )
            ],
        )
        written = _write_status(custom, namespace, "all-reasons", model.dump(full))
        assert [c["reason"] for c in written["status"]["conditions"]] == [reason, reason]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"reason": "Not A Reason"}, "status.conditions[0].reason"),
        ({"reason": ""}, "status.conditions[0].reason"),
        ({"status": "Maybe"}, "status.conditions[0].status"),
        ({"lastTransitionTime": "yesterday"}, "status.conditions[0].lastTransitionTime"),
        ({"message": "x" * 32769}, "status.conditions[0].message"),
    ],
    ids=["reason-spaces", "reason-empty", "status-enum", "time-format", "message-length"],
)
def test_a_condition_outside_the_schema_is_refused(
    kube: client.ApiClient, namespace: str, crd: str, change: dict[str, str], complaint: str
) -> None:
    custom = _task(kube, namespace, "bad")
    good = {
        "type": "Ready",
        "status": "True",
        "reason": "Scheduled",
        "message": "",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
    }
    with pytest.raises(ApiException) as refused:
        _write_status(custom, namespace, "bad", {"conditions": [{**good, **change}]})
    assert refused.value.status == 422
    assert complaint in str(refused.value.body)


def test_two_conditions_of_one_type_are_refused(kube: client.ApiClient, namespace: str, crd: str) -> None:
    custom = _task(kube, namespace, "twice")
    one = {
        "type": "Ready",
        "status": "True",
        "reason": "Scheduled",
        "message": "",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
    }
    with pytest.raises(ApiException) as refused:
        _write_status(custom, namespace, "twice", {"conditions": [one, {**one, "status": "False"}]})
    assert refused.value.status == 422
    assert "Duplicate value" in str(refused.value.body)


def test_a_time_field_of_the_status_must_be_a_date_time(
    kube: client.ApiClient, namespace: str, crd: str
) -> None:
    custom = _task(kube, namespace, "times")
    with pytest.raises(ApiException) as refused:
        _write_status(custom, namespace, "times", {"lastScheduleTime": "soon"})
    assert refused.value.status == 422
    assert "status.lastScheduleTime" in str(refused.value.body)
