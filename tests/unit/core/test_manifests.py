"""Building executor Jobs and reading Jobs back: pure functions, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cronlet._core import manifests, model, naming, views

T = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)


def view(name: str = "nightly") -> views.TaskView:
    return views.TaskView(
        namespace="ns", name=name, uid="uid-9", generation=1, created=T, spec={}, status=model.TaskStatus()
    )


def build(spec: dict[str, Any], *, attempt: int = 1, name: str = "nightly") -> dict[str, Any]:
    s = model.TaskSpec.model_validate({"schedule": "@daily", "handler": "echo", **spec})
    run = views.JobToCreate(run_id=naming.scheduled_run_id(T), attempt=attempt, scheduled_time=T)
    return manifests.build_job(task=view(name), spec=s, run=run, image="cronlet:1")


def test_job_carries_identity_owner_and_executor_environment() -> None:
    job = build({"parameters": {"batchSize": 100}}, attempt=2)
    meta = job["metadata"]
    assert meta["name"] == "nightly-1767225605-2"
    assert meta["labels"] == {
        "cronlet.dev/task": "nightly",
        "cronlet.dev/attempt": "2",
        "cronlet.dev/run-id": "1767225605",
    }
    assert meta["annotations"]["cronlet.dev/scheduled-time"] == "2026-01-01T00:00:05Z"
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ScheduledTask", "uid-9", True)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and "activeDeadlineSeconds" not in spec
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert (container["name"], container["image"], container["command"]) == (
        "executor",
        "cronlet:1",
        ["cronlet-execute"],
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "CRONLET_TASK": "nightly",
        "CRONLET_NAMESPACE": "ns",
        "CRONLET_HANDLER": "echo",
        "CRONLET_PARAMETERS": '{"batchSize":100}',
        "CRONLET_SCHEDULED_TIME": "2026-01-01T00:00:05Z",
        "CRONLET_ATTEMPT": "2",
        "CRONLET_RUN_ID": "ns/nightly/1767225605",
    }
    assert container["securityContext"]["runAsNonRoot"] is True


def test_timeout_becomes_active_deadline_and_image_can_be_overridden() -> None:
    job = build({"timeout": "1m30s", "image": "acme/handlers:2"})
    assert job["spec"]["activeDeadlineSeconds"] == 90
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "acme/handlers:2"


def test_pod_template_is_merged_but_cronlet_keeps_its_own_fields() -> None:
    job = build(
        {
            "podTemplate": {
                "metadata": {
                    "labels": {"team": "data", "cronlet.dev/task": "spoofed"},
                    "annotations": {"a": "b"},
                },
                "spec": {
                    "serviceAccountName": "etl",
                    "restartPolicy": "Always",
                    "nodeSelector": {"pool": "batch"},
                    "containers": [
                        {
                            "name": "executor",
                            "env": [
                                {
                                    "name": "DB_URL",
                                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
                                },
                                {"name": "CRONLET_TASK", "value": "spoofed"},
                            ],
                            "resources": {"limits": {"memory": "256Mi"}},
                        },
                        {"name": "proxy", "image": "envoy:1"},
                    ],
                },
            }
        }
    )
    tmpl = job["spec"]["template"]
    assert tmpl["metadata"]["labels"]["team"] == "data"
    assert tmpl["metadata"]["labels"]["cronlet.dev/task"] == "nightly"
    pod = tmpl["spec"]
    assert (pod["serviceAccountName"], pod["restartPolicy"], pod["nodeSelector"]) == (
        "etl",
        "Never",
        {"pool": "batch"},
    )
    executor, proxy = pod["containers"]
    assert proxy["name"] == "proxy"
    assert executor["resources"] == {"limits": {"memory": "256Mi"}}
    names = [e["name"] for e in executor["env"]]
    assert names[0] == "DB_URL" and names.count("CRONLET_TASK") == 1
    assert {e["name"]: e.get("value") for e in executor["env"]}["CRONLET_TASK"] == "nightly"
    assert executor["command"] == ["cronlet-execute"]


def test_long_task_names_give_valid_names_and_label_values() -> None:
    name = "x" * 200
    job = build({}, name=name)
    assert len(job["metadata"]["name"]) <= 63
    assert len(job["metadata"]["labels"]["cronlet.dev/task"]) <= 63
    assert job["metadata"]["annotations"]["cronlet.dev/task-name"] == name


def _observed(conditions: list[dict[str, Any]], **status: Any) -> views.JobObservation:
    job = build({})
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:05Z"
    job["status"] = {"conditions": conditions, **status}
    obs = manifests.observe_job(job)
    assert obs is not None
    return obs


def test_reading_job_outcomes() -> None:
    running = _observed([])
    assert running.state is views.JobState.ACTIVE and running.owner_uid == "uid-9" and running.attempt == 1
    done = _observed(
        [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"}],
        completionTime="2026-01-01T00:00:08Z",
    )
    assert done.state is views.JobState.SUCCEEDED and done.completion_time == datetime(
        2026, 1, 1, 0, 0, 8, tzinfo=UTC
    )
    cases = {
        "BackoffLimitExceeded": views.Failure.RETRYABLE,
        "DeadlineExceeded": views.Failure.TIMEOUT,
        "PodFailurePolicy": views.Failure.PERMANENT,
    }
    for reason, failure in cases.items():
        failed = _observed(
            [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": "m",
                    "lastTransitionTime": "2026-01-01T00:00:09Z",
                }
            ]
        )
        assert (failed.state, failed.failure) == (views.JobState.FAILED, failure)


def test_jobs_not_ours_are_ignored() -> None:
    job = build({})
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:05Z"
    job["metadata"]["ownerReferences"] = [
        {"kind": "CronJob", "apiVersion": "batch/v1", "name": "x", "uid": "u"}
    ]
    assert manifests.observe_job(job) is None


def test_termination_message_is_read_from_the_executor_container() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "proxy", "state": {"terminated": {"exitCode": 0, "message": "nope"}}},
                {
                    "name": "executor",
                    "state": {
                        "terminated": {"exitCode": 1, "message": '{"success": false, "message": "db down"}'}
                    },
                },
            ]
        }
    }
    assert manifests.termination_message(pod) == ("db down", 1)
    raw = {
        "status": {
            "containerStatuses": [
                {"name": "executor", "state": {"terminated": {"exitCode": 137, "message": "OOMKilled"}}}
            ]
        }
    }
    assert manifests.termination_message(raw) == ("OOMKilled", 137)


# --------------------------------------------------------------------------- attempts that have not started


def _job_with(status: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {
            "name": "t-1-1",
            "namespace": "ns",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {model.RUN_ID_LABEL: "1", model.ATTEMPT_LABEL: "1"},
            "annotations": {model.SCHEDULED_TIME_ANNOTATION: "2026-01-01T00:00:00Z"},
            "ownerReferences": [
                {"apiVersion": model.API_VERSION, "kind": model.KIND, "name": "t", "uid": "u"}
            ],
        },
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "started"),
    [
        ({}, False),  # no pod yet, or refused
        ({"active": 1}, False),  # pending: scheduled or not, pulling, creating
        ({"active": 1, "ready": 0}, False),
        ({"active": 1, "ready": 1}, True),  # running
        ({"failed": 1}, True),  # ran and failed (the Job's Failed condition may come later)
        ({"active": 1, "uncountedTerminatedPods": {"succeeded": ["p"]}}, True),
    ],
)
def test_a_job_counts_as_started_once_a_pod_runs(status: dict[str, object], started: bool) -> None:
    observed = manifests.observe_job(_job_with(status))
    assert observed is not None and observed.started is started


def _pod(status: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "t-1-1-abcde"}, "status": status}


@pytest.mark.parametrize(
    ("pods", "warnings", "expected"),
    [
        (
            [
                _pod(
                    {
                        "phase": "Pending",
                        "containerStatuses": [
                            {
                                "name": "executor",
                                "state": {
                                    "waiting": {
                                        "reason": "ImagePullBackOff",
                                        "message": 'Back-off pulling image "nope:1"',
                                    }
                                },
                            }
                        ],
                    }
                )
            ],
            [],
            'ImagePullBackOff: Back-off pulling image "nope:1"',
        ),
        (
            [
                _pod(
                    {
                        "phase": "Pending",
                        "containerStatuses": [
                            {
                                "name": "executor",
                                "state": {
                                    "waiting": {
                                        "reason": "CreateContainerConfigError",
                                        "message": "container has runAsNonRoot and image will run as root",
                                    }
                                },
                            }
                        ],
                    }
                )
            ],
            [],
            "CreateContainerConfigError: container has runAsNonRoot and image will run as root",
        ),
        (
            [
                _pod(
                    {
                        "phase": "Pending",
                        "conditions": [
                            {
                                "type": "PodScheduled",
                                "status": "False",
                                "reason": "Unschedulable",
                                "message": "0/1 nodes are available:\n 1 Insufficient cpu.",
                            }
                        ],
                    }
                )
            ],
            [],
            "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.",
        ),
        (
            [],
            [
                {
                    "reason": "FailedCreate",
                    "message": "pods is forbidden: violates PodSecurity",
                    "lastTimestamp": "x",
                }
            ],
            "FailedCreate: pods is forbidden: violates PodSecurity",
        ),
        ([], [], "FailedCreate: the Job created no pod"),
        ([_pod({"phase": "Pending"})], [], "NotStarted: pod t-1-1-abcde is Pending"),
    ],
)
def test_why_an_attempt_has_not_started(
    pods: list[dict[str, object]], warnings: list[dict[str, object]], expected: str
) -> None:
    assert manifests.start_problem(pods=pods, warnings=warnings) == expected


@pytest.mark.parametrize(
    "status",
    [
        {"lastDueTime": "yesterday"},
        {"active": [{"jobName": "t-1-1", "scheduledTime": "2026-01-01T00:00:00", "attempt": 1}]},  # no offset
        {"counters": {"runs": "many"}},
        {"phase": "Exploded"},
    ],
)
def test_an_unreadable_status_is_reported_not_taken_for_an_empty_one(status: dict[str, object]) -> None:
    body = {**_job_with({}), "spec": {}, "status": status}
    view = manifests.task_view(body, known_handlers=None)
    assert view.status_problem
    assert manifests.task_view({**body, "status": {}}, known_handlers=None).status_problem is None


def test_executor_pods_mount_no_service_account_token_unless_the_task_names_one() -> None:
    def pod_spec(template: dict[str, Any] | None) -> dict[str, Any]:
        spec = model.TaskSpec.model_validate(
            {"schedule": "@daily", "handler": "echo", "podTemplate": template}
        )
        task = views.TaskView(
            namespace="ns", name="t", uid="u", generation=1, created=T, spec={}, status=model.TaskStatus()
        )
        run = views.JobToCreate(run_id="1", attempt=1, scheduled_time=T)
        job = manifests.build_job(task=task, spec=spec, run=run, image="img")
        result: dict[str, Any] = job["spec"]["template"]["spec"]
        return result

    assert pod_spec(None)["automountServiceAccountToken"] is False
    named = pod_spec({"spec": {"serviceAccountName": "reporter"}})
    assert "automountServiceAccountToken" not in named and named["serviceAccountName"] == "reporter"
    assert pod_spec({"spec": {"automountServiceAccountToken": True}})["automountServiceAccountToken"] is True


def test_an_oom_killed_attempt_says_so() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "executor", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
            ]
        }
    }
    assert manifests.termination_message(pod) == (
        "OOMKilled: the container exceeded its memory limit (exit code 137)",
        137,
    )
    done = {
        "status": {
            "containerStatuses": [
                {
                    "name": "executor",
                    "state": {
                        "terminated": {"reason": "Completed", "exitCode": 0, "message": '{"message": "ok"}'}
                    },
                }
            ]
        }
    }
    assert manifests.termination_message(done) == ("ok", 0)


def test_the_executor_root_filesystem_is_read_only_with_an_empty_dir_at_tmp() -> None:
    pod = build({})["spec"]["template"]["spec"]
    (executor,) = pod["containers"]
    assert executor["securityContext"]["readOnlyRootFilesystem"] is True
    assert executor["volumeMounts"] == [{"name": "cronlet-tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "cronlet-tmp", "emptyDir": {}}]


def test_a_task_opts_out_of_the_read_only_root_through_its_executor_container() -> None:
    template = {
        "spec": {"containers": [{"name": "executor", "securityContext": {"readOnlyRootFilesystem": False}}]}
    }
    (executor,) = build({"podTemplate": template})["spec"]["template"]["spec"]["containers"]
    assert executor["securityContext"]["readOnlyRootFilesystem"] is False
    assert executor["securityContext"]["allowPrivilegeEscalation"] is False  # the rest of ours stays


def test_the_tmp_volume_is_merged_with_the_task_s_volumes_and_mounts() -> None:
    config = {"name": "config", "configMap": {"name": "etl"}}
    mount = {"name": "config", "mountPath": "/etc/etl"}
    pod = build(
        {
            "podTemplate": {
                "spec": {"volumes": [config], "containers": [{"name": "executor", "volumeMounts": [mount]}]}
            }
        }
    )["spec"]["template"]["spec"]
    assert pod["volumes"] == [config, {"name": "cronlet-tmp", "emptyDir": {}}]
    assert pod["containers"][0]["volumeMounts"] == [mount, {"name": "cronlet-tmp", "mountPath": "/tmp"}]


def test_a_task_s_own_tmp_volume_or_mount_at_tmp_replaces_cronlet_s() -> None:
    sized = {"name": "cronlet-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    pod = build({"podTemplate": {"spec": {"volumes": [sized]}}})["spec"]["template"]["spec"]
    assert pod["volumes"] == [sized]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "cronlet-tmp", "mountPath": "/tmp"}]
    scratch = {"name": "scratch", "mountPath": "/tmp/"}
    pod = build(
        {
            "podTemplate": {
                "spec": {
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "containers": [{"name": "executor", "volumeMounts": [scratch]}],
                }
            }
        }
    )["spec"]["template"]["spec"]
    assert pod["containers"][0]["volumeMounts"] == [scratch]  # one mount at /tmp: the API server wants no two
