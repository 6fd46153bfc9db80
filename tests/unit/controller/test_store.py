"""What the store keeps of a task: what the planner reads, not the API server's or kubectl's bookkeeping."""

from __future__ import annotations

import sys
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


def test_only_a_newer_copy_or_another_object_of_the_name_is_news() -> None:
    s = store.Store()
    assert s.task_is_news(task())  # not held yet
    s.put_task(task())
    assert not s.task_is_news(task())  # the echo of a write whose answer is held
    assert not s.task_is_news(task(resourceVersion="4"))
    assert s.task_is_news(task(resourceVersion="6"))
    assert s.task_is_news(task(uid="u2", resourceVersion="1"))  # deleted and created again


def job(version: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "t-1-1",
            "uid": "j1",
            "resourceVersion": str(version),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"cronlet.dev/run-id": "1", "cronlet.dev/attempt": "1"},
            "annotations": {"cronlet.dev/scheduled-time": "2026-01-01T00:00:00Z"},
            "ownerReferences": [
                {"apiVersion": "cronlet.dev/v1alpha1", "kind": "ScheduledTask", "name": "t", "uid": "u1"}
            ],
        },
        "status": status or {},
    }


def test_a_job_update_is_news_only_when_it_changes_what_the_planner_reads() -> None:
    s = store.Store()
    assert s.job_is_news(job(10))
    s.put_job(job(10))  # our create's answer
    assert not s.job_is_news(job(10))  # its ADDED event
    assert not s.job_is_news(job(11, {"active": 1}))  # a pod created, not running yet
    assert s.job_is_news(job(12, {"active": 1, "ready": 1}))  # it runs: the start limit no longer applies
    s.put_job(job(12, {"active": 1, "ready": 1}))
    assert not s.job_is_news(job(13, {"active": 1, "ready": 1, "uncountedTerminatedPods": {}}))
    done = {
        "succeeded": 1,
        "completionTime": "2026-01-01T00:00:05Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    assert s.job_is_news(job(14, done))
    assert not s.job_is_news(job(9, done))  # an older copy than one held


# -- deleted and created again under the same name -----------------------------------------------------------
# kopf handles each object (uid) in its own worker, so the old object's DELETED event can come after the new
# one's ADDED. Before the fix the late DELETED dropped the new task: no pass ever scheduled it.


def test_a_late_delete_of_the_old_task_keeps_the_new_one_of_the_name() -> None:
    s = store.Store()
    key = s.put_task(task(uid="u2", resourceVersion="9"))  # the new object's ADDED, handled first
    s.drop_task(key, uid="u1")  # the old object's DELETED
    assert s.tasks[key]["metadata"]["uid"] == "u2"
    s.drop_task(key, uid="u2")
    assert key not in s.tasks


def test_a_late_delete_of_the_old_job_keeps_the_new_one_of_the_name() -> None:
    s = store.Store()
    new = job(20)
    new["metadata"]["uid"] = "j2"
    key = s.put_job(new)
    assert s.drop_job(job(15)) is None  # the old Job (uid j1) of the same name
    assert key is not None and s.jobs[key]["t-1-1"].uid == "j2"
    assert s.drop_job(new) == key
    assert key not in s.jobs


def test_a_body_read_is_a_copy_changing_it_changes_nothing_held() -> None:
    s = store.Store()
    key = s.put_task(task())
    read = s.tasks[key]
    read["status"]["lastDueTime"] = "2030-01-01T00:00:00Z"
    read["metadata"]["resourceVersion"] = "99"
    assert s.tasks[key]["status"] == task()["status"]
    assert s.tasks.version(key) == 5


def test_a_task_is_held_as_compact_text_smaller_than_its_parsed_body() -> None:
    parameters = {f"p{i}": {"value": f"v{i}", "list": [i, i + 1]} for i in range(40)}
    body = {**task(), "spec": {**task()["spec"], "parameters": parameters}}
    s = store.Store()
    key = s.put_task(body)
    held = s.tasks._held[key][2]
    assert isinstance(held, str) and held.isascii()
    assert _deep_size(s.tasks[key]) > 2 * len(held)  # the reason the store holds text, not dicts
    assert s.tasks[key] == store.slim(body)


def test_uid_and_version_are_known_without_reading_a_body() -> None:
    s = store.Store()
    key = s.put_task(task(uid="u7", resourceVersion="12"))
    assert (s.tasks.uid(key), s.tasks.version(key)) == ("u7", 12)
    assert (s.tasks.uid(("ns", "other")), s.tasks.version(("ns", "other"))) == (None, None)
    assert dict(s.tasks.versions()) == {key: 12}


def test_a_namespace_a_list_did_not_return_is_forgotten_with_its_tasks_named() -> None:
    s = store.Store()
    for namespace in ("kept", "gone"):
        s.put_namespace({"metadata": {"name": namespace, "labels": {"team": namespace}}})
        s.put_task(task(namespace=namespace, name="t", uid=f"u-{namespace}"))
    assert s.converge_namespaces(frozenset({"kept"})) == [("gone", "t")]
    assert s.namespace_labels == {"kept": {"team": "kept"}}
    assert s.converge_namespaces(frozenset({"kept"})) == []


def _deep_size(value: object) -> int:
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k) + _deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(_deep_size(v) for v in value)
    return size
