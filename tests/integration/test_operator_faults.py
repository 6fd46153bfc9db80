"""Faults a real cluster produces, on the real control plane: attempts whose pod never starts.

Before ``spec.startTimeout`` such a task stayed Running for ever, and every later due run was Skipped, with no
Event. Now the attempt fails within the limit with the reason the scheduler or the Job controller gives, and
the next due run starts.
"""

from __future__ import annotations

import pytest
from kit import Tasks, outcomes
from kubernetes import client

pytestmark = pytest.mark.cluster

NO_SUCH_NODE = {"cronlet.dev/test-no-such-node": "true"}


def test_an_unschedulable_attempt_fails_with_its_reason_and_the_next_run_starts(tasks: Tasks) -> None:
    tasks.create(
        "unschedulable",
        {
            "schedule": "*/15 * * * * *",
            "handler": "echo",
            "startTimeout": "3s",
            "maxRetries": 0,
            "podTemplate": {"spec": {"nodeSelector": NO_SUCH_NODE}},
        },
    )
    status = tasks.wait_status(
        "unschedulable", lambda s: "Failed" in outcomes(s), timeout=40, what="the first run failed"
    )
    failed = next(h for h in status["history"] if h["outcome"] == "Failed")
    assert "did not start within 3s" in failed["message"] and "Unschedulable" in failed["message"]
    events = tasks.wait_event("unschedulable", "Warning", "AttemptNotStarted")
    assert "Unschedulable" in events[0].message
    first = failed["jobName"]
    # The stuck Job is deleted, and the next due time starts a run of its own (nothing holds it back).
    tasks.wait_status(
        "unschedulable",
        lambda s: (
            any(a["jobName"] != first for a in s.get("active") or [])
            or sum(h["outcome"] == "Failed" for h in s.get("history") or []) >= 2
        ),
        timeout=40,
        what="the next due run started",
    )
    assert "Skipped" not in outcomes(tasks.status("unschedulable"))


def test_an_attempt_whose_pods_admission_refuses_fails_with_failed_create(
    tasks: Tasks, kube: client.ApiClient
) -> None:
    # Pod Security refuses the pods (enforce applies to pods; the Job itself is only warned about).
    client.CoreV1Api(kube).patch_namespace(
        tasks.ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    tasks.create(
        "refused",
        {
            "schedule": "@yearly",
            "handler": "echo",
            "startTimeout": "3s",
            "maxRetries": 0,
            "podTemplate": {"spec": {"hostNetwork": True}},
        },
        annotations={"cronlet.dev/run-now": "go"},
    )
    status = tasks.wait_status(
        "refused", lambda s: "Failed" in outcomes(s), timeout=40, what="the run failed"
    )
    failed = next(h for h in status["history"] if h["outcome"] == "Failed")
    assert "FailedCreate" in failed["message"] and "PodSecurity" in failed["message"], failed["message"]
    assert status["phase"] == "Failed"
    assert tasks.jobs("refused") == [] or all(j.metadata.deletion_timestamp for j in tasks.jobs("refused"))
