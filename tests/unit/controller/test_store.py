"""What the store keeps of a task: what the planner reads, not the API server's or kubectl's bookkeeping."""

from __future__ import annotations

from typing import Any

from cronlet._controller import store
from cronlet._core import model


def task(**meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {
            "namespace": "ns",
            "name": "t",
            "uid": "u1",
            "resourceVersion": "5",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            **meta,
        },
        "spec": {"schedule": "* * * * *", "handler": "echo"},
        "status": {"lastDueTime": "2026-01-01T00:01:00Z"},
    }


def test_managed_fields_and_the_last_applied_copy_are_not_kept() -> None:
    s = store.Store()
    key = s.put_task(
        task(
            managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            annotations={
                "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {}}',
                model.RUN_NOW_ANNOTATION: "1",
            },
            labels={"team": "a"},
        )
    )
    kept = s.tasks[key]
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {model.RUN_NOW_ANNOTATION: "1"}  # run-now is read
    assert kept["metadata"]["labels"] == {"team": "a"}
    assert kept["spec"] == task()["spec"] and kept["status"] == task()["status"]


def test_the_body_given_is_left_as_it_was() -> None:
    body = task(managedFields=[{"manager": "kubectl"}])
    store.Store().put_task(body)
    assert body["metadata"]["managedFields"] == [{"manager": "kubectl"}]


def test_an_older_copy_still_does_not_replace_a_newer_one() -> None:
    s = store.Store()
    key = s.put_task(task(resourceVersion="7"))
    s.put_task({**task(resourceVersion="6"), "status": {}})
    assert s.tasks[key]["metadata"]["resourceVersion"] == "7"
