"""Bad input: rejected by the API server where it can be, else Invalid with a reason, one Event, no hot loop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kit import OperatorProcess, Tasks, stopped
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

CASES = [
    ("bad-cron", {"schedule": "61 * * * * *"}, "InvalidSchedule", "invalid cron expression"),
    ("never", {"schedule": "0 0 30 2 *"}, "InvalidSchedule", "never fires"),
    ("bad-zone", {"schedule": "@daily", "timeZone": "Mars/Olympus"}, "UnknownTimeZone", "unknown time zone"),
    ("bad-handler", {"schedule": "@daily", "handler": "no-such-handler"}, "UnknownHandler", "not registered"),
    ("too-big", {"schedule": "@daily", "parameters": {"blob": "x" * 70000}}, "ParametersTooLarge", "64 KiB"),
]


@pytest.mark.parametrize(("name", "spec", "reason", "text"), CASES, ids=[c[0] for c in CASES])
def test_invalid_spec_is_reported_once_and_recovers_when_fixed(
    tasks: Tasks, operator: OperatorProcess, name: str, spec: dict[str, object], reason: str, text: str
) -> None:
    tasks.create(name, {"handler": "echo", **spec})
    st = tasks.wait_status(name, lambda s: s.get("phase") == "Invalid", timeout=20)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert text in ready["message"]
    assert "nextRunTime" not in st
    reconciles, version = _reconciles(operator), tasks.get(name)["metadata"]["resourceVersion"]
    time.sleep(3)  # a window long enough to see a hot retry loop, were there one
    assert tasks.get(name)["metadata"]["resourceVersion"] == version  # no rewrites
    # All tasks of the shared operator together (earlier tests' tasks may still run while their namespaces go):
    # a few passes per run each; a hot loop makes thousands. The resourceVersion check above is the sharp one.
    assert _reconciles(operator) - reconciles < 1000
    warnings = tasks.wait_event(name, "Warning", reason)
    assert len(warnings) == 1 and (warnings[0].count or 1) == 1
    tasks.patch_spec(
        name,
        {
            "schedule": "*/2 * * * * *",
            "timeZone": "UTC",
            "handler": "echo",
            "parameters": {"blob": None, "ok": True},
        },
    )  # merge patch: null removes
    st = tasks.wait_status(
        name,
        lambda s: s.get("phase") in ("Scheduled", "Running") and s.get("counters", {}).get("runs", 0) >= 1,
        timeout=30,
    )
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert st["observedGeneration"] == 2


def _reconciles(op: OperatorProcess) -> float:
    line = next(x for x in op.metrics().splitlines() if x.startswith("cronlet_reconciles_total "))
    return float(line.split()[1])


API_REJECTED = [
    ("both-schedules", {"schedule": "@daily", "interval": "5m", "handler": "echo"}, "exactly one of"),
    ("no-schedule", {"handler": "echo"}, "exactly one of"),
    (
        "bad-policy",
        {"schedule": "@daily", "handler": "echo", "concurrencyPolicy": "Sometimes"},
        "Unsupported value",
    ),
    ("bad-interval", {"interval": "5 minutes", "handler": "echo"}, "spec.interval"),
    ("negative-retries", {"schedule": "@daily", "handler": "echo", "maxRetries": -1}, "spec.maxRetries"),
    ("no-handler", {"schedule": "@daily"}, "spec.handler"),
]


@pytest.mark.parametrize(("name", "spec", "text"), API_REJECTED, ids=[c[0] for c in API_REJECTED])
def test_api_server_rejects_what_the_schema_can_check(
    tasks: Tasks, name: str, spec: dict[str, object], text: str
) -> None:
    with pytest.raises(ApiException) as err:
        tasks.create(name, spec)
    assert err.value.status == 422
    assert text in str(err.value.body)


def test_a_job_the_api_server_refuses_sets_ready_false_and_recovers(tasks: Tasks) -> None:
    # The CRD checks podTemplate's shape (PodTemplateSpec's schema), not what only the Job's validation checks,
    # such as the syntax of a label key; that is found when the Job is created.
    tasks.create(
        "bad-template",
        {
            "schedule": "*/2 * * * * *",
            "handler": "echo",
            "podTemplate": {"spec": {"nodeSelector": {"bad key!": "x"}}},
        },
    )
    st = tasks.wait_status(
        "bad-template",
        lambda s: any(c["type"] == "Ready" and c["status"] == "False" for c in s.get("conditions") or []),
        timeout=30,
    )
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "JobCreateFailed" and "nodeSelector" in ready["message"]
    assert st.get("phase") == "Blocked"  # never a blank PHASE column, and not Running: no Job runs
    assert tasks.jobs("bad-template") == []
    tasks.wait_event("bad-template", "Warning", "JobCreateFailed")
    tasks.patch_spec("bad-template", {"podTemplate": {"spec": {"nodeSelector": {"bad key!": None}}}})
    st = tasks.wait_status(
        "bad-template", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=60
    )
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_a_pod_template_that_cannot_merge_is_invalid_before_any_job_and_recovers(
    tasks: Tasks, operator: OperatorProcess
) -> None:
    # Before: the API server refused the Job ("cannot set `allowPrivilegeEscalation` to false and `privileged`
    # to true"), and the task went on retrying, Ready=False JobCreateFailed.
    tasks.create(
        "privileged",
        {
            "schedule": "*/2 * * * * *",
            "handler": "echo",
            "podTemplate": {
                "spec": {"containers": [{"name": "executor", "securityContext": {"privileged": True}}]}
            },
        },
    )
    st = tasks.wait_status("privileged", lambda s: s.get("phase") == "Invalid", timeout=20)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidPodTemplate")
    assert "spec.podTemplate.spec.containers[0].securityContext.privileged" in ready["message"]
    version = tasks.get("privileged")["metadata"]["resourceVersion"]
    time.sleep(3)  # due times pass: no Job, no rewrite
    assert tasks.get("privileged")["metadata"]["resourceVersion"] == version
    assert tasks.jobs("privileged") == []
    warnings = tasks.wait_event("privileged", "Warning", "InvalidPodTemplate")
    assert len(warnings) == 1 and (warnings[0].count or 1) == 1
    assert not [e for e in tasks.events("privileged") if e.reason == "JobCreateFailed"]
    tasks.patch_spec("privileged", {"podTemplate": None})
    st = tasks.wait_status("privileged", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=60)
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_the_admin_s_tenancy_flags_are_enforced_and_a_namespace_label_allows_pod_template(
    operator_process: OperatorProcess, kubeconfig: str, tasks: Tasks, tmp_path: Path, kube: ApiClient
) -> None:
    core = client.CoreV1Api(kube)
    with stopped(operator_process):  # the shared operator has no such flags and would run these tasks
        strict = OperatorProcess(
            kubeconfig,
            tmp_path,
            [
                "--namespace",
                tasks.ns,
                "--allowed-service-accounts",
                "reporter",
                "--pod-template-namespace-selector",
                "cronlet.dev/allow-pod-template=true",
            ],
        )
        strict.start()
        try:
            spec = {"schedule": "*/2 * * * * *", "handler": "echo"}
            tasks.create("plain", spec)
            tasks.create("templated", {**spec, "podTemplate": {"metadata": {"labels": {"team": "a"}}}})
            st = tasks.wait_status("templated", lambda s: s.get("phase") == "Invalid", timeout=20)
            ready = next(c for c in st["conditions"] if c["type"] == "Ready")
            assert ready["reason"] == "PodTemplateNotAllowed" and tasks.ns in ready["message"]
            tasks.wait_event("templated", "Warning", "PodTemplateNotAllowed")
            tasks.wait_status("plain", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=60)
            # The admin labels the namespace: the waiting task is looked at again at once, and runs.
            core.patch_namespace(
                tasks.ns, {"metadata": {"labels": {"cronlet.dev/allow-pod-template": "true"}}}
            )
            tasks.wait_status(
                "templated", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=60
            )
            core.create_namespaced_service_account(tasks.ns, {"metadata": {"name": "deployer"}})
            tasks.create("as-deployer", {**spec, "podTemplate": {"spec": {"serviceAccountName": "deployer"}}})
            st = tasks.wait_status("as-deployer", lambda s: s.get("phase") == "Invalid", timeout=20)
            ready = next(c for c in st["conditions"] if c["type"] == "Ready")
            assert ready["reason"] == "ServiceAccountNotAllowed" and "reporter" in ready["message"]
            assert tasks.jobs("as-deployer") == []
        finally:
            code = strict.stop()
        assert code == 0, strict.log_tail()
