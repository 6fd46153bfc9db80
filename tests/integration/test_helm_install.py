"""The chart installed by the real helm into the local control plane, in namespaced mode.

What the API server admits: every object helm renders, with no Pod Security warning; the operator's pod
template and an executor Job's pod under the ``restricted`` Pod Security Standard (dry-run creates, with a
privileged pod as the negative control). What the chart's RBAC grants: enough for ``cronlet operator`` to
run tasks, prune Jobs and post Events with nothing but the chart's ServiceAccount token, and not more
(secrets, spec and metadata writes, other namespaces are refused). ``helm lint`` and ``helm template`` are
covered by tests/unit/test_chart.py.

The local cluster runs no Deployment controller, so the chart's Deployment never gets a pod here; its node
selector matches no node besides, so that a second operator could not start even if one were added.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import throwaway_namespace, wait_for
from kit import GROUP, PLURAL, ROOT, VERSION, OperatorProcess, Tasks, stopped
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from cronlet._core import manifests, model, naming, views
from localkube import binaries

pytestmark = pytest.mark.cluster

CHART = ROOT / "charts" / "cronlet"
RELEASE = "cronlet"  # the chart's full name is then just "cronlet"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    # warn as well: the API server then sends a warning for a Deployment whose pods would be refused.
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}
NO_SUCH_NODE = {"cronlet.dev/test-no-such-node": "true"}
# How a refusal shows in the operator's log: the API server's reason, or the status code as the kubernetes client
# ("(403)") and kopf ("403, message=...") print it. Searched in a record's text, never in its timestamp, whose
# milliseconds can read 403.
REFUSAL = re.compile(r"forbidden|\(403\)|\b403,|\bstatus\W{0,3}403\b", re.IGNORECASE)


def log_message(line: str) -> str:
    """A log record's text without its timestamp (the operator logs JSON lines; others are kept whole)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    return " ".join(str(value) for key, value in record.items() if key != "time")


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True, kw_only=True)
class Install:
    """A helm release of charts/cronlet: where it lives, what helm applied and what helm printed."""

    release_namespace: str
    tasks_namespace: str
    service_account: str
    manifest: str
    output: str


def helm(*args: str, kubeconfig: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # Keep helm away from the user's repositories, plugins and cache.
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    argv = [str(binaries.find("helm")), "--kubeconfig", kubeconfig, *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, (
        f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


def restrict(kube: client.ApiClient, namespace: str) -> None:
    client.CoreV1Api(kube).patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})


@pytest.fixture
def release_namespace(kube: client.ApiClient, namespace: str) -> Iterator[str]:
    """A second fresh namespace for the release itself, restricted from the start."""
    with throwaway_namespace(
        kube, f"{namespace[:52]}-rel", {"localkube.dev/test": "true", **RESTRICTED}
    ) as name:
        yield name


@pytest.fixture
def installed(
    kube: client.ApiClient, kubeconfig: str, crd: str, namespace: str, release_namespace: str, tmp_path: Path
) -> Iterator[Install]:
    """``helm install`` into the restricted release namespace, handling ScheduledTasks in ``namespace`` only."""
    restrict(kube, namespace)
    values = {
        # The session's `crd` fixture applied the CRD with kubectl; helm would refuse to adopt it.
        "crds": {"install": False},
        "namespaces": [namespace],
        "image": {"repository": "registry.invalid/cronlet", "tag": "test"},
        "nodeSelector": NO_SUCH_NODE,
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    home = tmp_path / "helm"
    done = helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        release_namespace,
        "--values",
        str(values_file),
        kubeconfig=kubeconfig,
        home=home,
    )
    manifest = helm(
        "get", "manifest", RELEASE, "--namespace", release_namespace, kubeconfig=kubeconfig, home=home
    ).stdout
    yield Install(
        release_namespace=release_namespace,
        tasks_namespace=namespace,
        service_account=RELEASE,
        manifest=manifest,
        output=done.stdout + done.stderr,
    )
    helm("uninstall", RELEASE, "--namespace", release_namespace, kubeconfig=kubeconfig, home=home)


def deployment_body(kube: client.ApiClient, install: Install) -> dict[str, Any]:
    """The operator Deployment as the API server stored it (defaults applied), as plain JSON."""
    response = client.AppsV1Api(kube).read_namespaced_deployment(
        RELEASE, install.release_namespace, _preload_content=False
    )
    body: dict[str, Any] = json.loads(response.data)
    return body


def pod_from_template(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A Pod with a controller's pod template, as the ReplicaSet or Job controller would create it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict((template.get("metadata") or {}).get("labels") or {})},
        "spec": copy.deepcopy(template["spec"]),
    }


def dry_run_create(kube: client.ApiClient, namespace: str, pod: dict[str, Any]) -> ApiException | None:
    """Create ``pod`` server-side with dryRun=All (admission runs, nothing is stored); the refusal, if any."""
    try:
        client.CoreV1Api(kube).create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as error:
        return error
    return None


def refusal(error: ApiException | None) -> str:
    """The API server's message (or "" when nothing was refused)."""
    if error is None:
        return ""
    try:
        return f"{error.status}: {json.loads(error.body)['message']}"
    except (TypeError, ValueError, KeyError):
        return f"{error.status}: {error.body}"


# --- What helm installs is admitted under the restricted Pod Security Standard ----------------------


def test_helm_install_creates_every_rendered_object_without_pod_security_warnings(
    installed: Install, kubectl: Kubectl
) -> None:
    rendered = [doc for doc in yaml.safe_load_all(installed.manifest) if doc]
    kinds = sorted(doc["kind"] for doc in rendered)
    # Namespaced mode: nothing cluster-wide, and no CRD (crds.install=false). Two Roles: the tasks' namespace,
    # and leader election's Lease in the release namespace.
    # Cluster-scoped only the users' roles, aggregated into view/edit/admin.
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ], kinds
    # Every template sets its namespace; one that did not would be looked up (and missed) in "default".
    stored = json.loads(kubectl("get", "-f", "-", "-o", "json", stdin=installed.manifest).stdout)
    cluster_scoped = {"ClusterRole"}
    found = {
        (item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"])
        for item in stored["items"]
    }
    expected = {
        (
            doc["kind"],
            ""
            if doc["kind"] in cluster_scoped
            else doc["metadata"].get("namespace", installed.release_namespace),
            doc["metadata"]["name"],
        )
        for doc in rendered
    }
    assert found == expected
    roles = {
        (ns, name.endswith("-leader-election")) for kind, ns, name in found if kind in ("Role", "RoleBinding")
    }
    assert roles == {(installed.tasks_namespace, False), (installed.release_namespace, True)}
    # The namespace warns on restricted violations: the API server would have sent one for the Deployment.
    assert "PodSecurity" not in installed.output, installed.output
    # No operator pod: it would run here as a second operator, with the fake kubelet's admin credentials.
    pods = kubectl("get", "pods", "-n", installed.release_namespace, "-o", "name").stdout.split()
    assert pods == []


def test_operator_pod_template_is_admitted_under_restricted(
    installed: Install, kube: client.ApiClient
) -> None:
    deployment = deployment_body(kube, installed)
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == NO_SUCH_NODE
    pod = pod_from_template(deployment["spec"]["template"], "operator-dry-run")
    error = dry_run_create(kube, installed.release_namespace, pod)
    assert error is None, refusal(error)


def _privileged(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}


def _without_the_charts_security_contexts(pod: dict[str, Any]) -> None:
    pod["spec"].pop("securityContext", None)
    for container in pod["spec"]["containers"]:
        container.pop("securityContext", None)


@pytest.mark.parametrize(
    "spoil",
    [_privileged, _without_the_charts_security_contexts],
    ids=["privileged", "without-the-charts-security-contexts"],
)
def test_operator_pod_template_made_unsafe_is_refused(
    installed: Install, kube: client.ApiClient, spoil: Callable[[dict[str, Any]], None]
) -> None:
    """Negative controls: the namespace does enforce, and what passes above passes for the chart's settings."""
    pod = pod_from_template(deployment_body(kube, installed)["spec"]["template"], "unsafe-dry-run")
    spoil(pod)
    error = dry_run_create(kube, installed.release_namespace, pod)
    assert error is not None and error.status == 403, refusal(error)
    assert 'violates PodSecurity "restricted:latest"' in refusal(error), refusal(error)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {
            "podTemplate": {
                "metadata": {"labels": {"team": "data"}},
                "spec": {
                    "containers": [
                        {
                            "name": "executor",
                            "env": [{"name": "BATCH", "value": "100"}],
                            "resources": {"limits": {"memory": "128Mi"}},
                        }
                    ]
                },
            }
        },
    ],
    ids=["plain", "with-pod-template"],
)
def test_executor_job_pod_is_admitted_under_restricted(
    kube: client.ApiClient, namespace: str, spec: dict[str, Any]
) -> None:
    restrict(kube, namespace)
    due = datetime.now(UTC).replace(microsecond=0)
    job = manifests.build_job(
        task=views.TaskView(
            namespace=namespace,
            name="nightly",
            uid="00000000-0000-0000-0000-000000000001",
            generation=1,
            created=due,
            spec={},
            status=model.TaskStatus(),
        ),
        spec=model.TaskSpec.model_validate({"schedule": "@daily", "handler": "echo", **spec}),
        run=views.JobToCreate(run_id=naming.scheduled_run_id(due), attempt=1, scheduled_time=due),
        image="registry.invalid/cronlet:test",
    )
    error = dry_run_create(kube, namespace, pod_from_template(job["spec"]["template"], "executor-dry-run"))
    assert error is None, refusal(error)


# --- The chart's RBAC is enough for the operator, and no more ----------------------------------------


def token_kubeconfig(*, admin_kubeconfig: str, install: Install, kubectl: Kubectl, path: Path) -> str:
    """A kubeconfig for the chart's ServiceAccount: the admin kubeconfig's server and CA, a fresh token.

    Returned once the token may list tasks and Jobs: RBAC learns of the chart's new bindings through a watch.
    """
    token = kubectl(
        "create", "token", install.service_account, "-n", install.release_namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"])
    ca = cluster["certificate-authority-data"]
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": cluster["server"], "certificate-authority-data": ca},
                    }
                ],
                "users": [{"name": install.service_account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "operator",
                        "context": {
                            "cluster": "local",
                            "user": install.service_account,
                            "namespace": install.tasks_namespace,
                        },
                    }
                ],
                "current-context": "operator",
            }
        )
    )
    path.chmod(0o600)
    api = config.new_client_from_config(config_file=str(path))
    try:
        custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
        wait_for(
            lambda: (
                custom.list_namespaced_custom_object(GROUP, VERSION, install.tasks_namespace, PLURAL)
                and batch.list_namespaced_job(install.tasks_namespace)
            ),
            timeout=30,
            ignore=(ApiException,),
            message="the chart's ServiceAccount may list tasks and Jobs",
        )
    finally:
        api.close()
    return str(path)


def operator_environment(kube: client.ApiClient, install: Install) -> dict[str, str]:
    """The CRONLET_* settings the chart gives the operator container (the port is OperatorProcess's)."""
    container = next(
        c
        for c in deployment_body(kube, install)["spec"]["template"]["spec"]["containers"]
        if c["name"] == "operator"
    )
    return {
        e["name"]: e["value"]
        for e in container["env"]
        if e["name"].startswith("CRONLET_") and "value" in e and e["name"] != "CRONLET_METRICS_PORT"
    }


def invalid_schedule_count(tasks: Tasks, name: str) -> int:
    return sum(e.count or 1 for e in tasks.events(name) if e.reason == "InvalidSchedule")


def api_errors(metrics_text: str) -> list[str]:
    return [
        line
        for line in metrics_text.splitlines()
        if line.startswith("cronlet_api_errors_total{") and float(line.rsplit(" ", 1)[1]) > 0
    ]


def test_operator_runs_tasks_with_only_the_charts_service_account(
    installed: Install,
    kube: client.ApiClient,
    kubeconfig: str,
    kubectl: Kubectl,
    operator_process: OperatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The operator as the chart configures it (its CRONLET_* environment, so its namespace list too),
    # with the chart's credentials instead of the admin's.
    environment = operator_environment(kube, installed)
    assert environment["CRONLET_NAMESPACE"] == installed.tasks_namespace
    sa_kubeconfig = token_kubeconfig(
        admin_kubeconfig=kubeconfig, install=installed, kubectl=kubectl, path=tmp_path / "operator.kubeconfig"
    )
    tasks = Tasks(kube, installed.tasks_namespace)
    ns = installed.tasks_namespace
    # The shared operator (admin, all namespaces) would handle these tasks too: it is down meanwhile.
    with stopped(operator_process):
        chart_operator = OperatorProcess(sa_kubeconfig, tmp_path)
        # Only this child gets the chart's environment (the shared operator restarts without it).
        with monkeypatch.context() as patched:
            for name, value in environment.items():
                patched.setenv(name, value)
            chart_operator.start()
        try:
            # Runs: Jobs created and watched, pods read, status written; executor pods admitted (restricted).
            kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / "01-minimal" / "task.yaml"))
            # History limit 0: the finished Job is deleted.
            tasks.create(
                "pruned",
                {"schedule": "@yearly", "handler": "echo", "successfulJobsHistoryLimit": 0},
                annotations={"cronlet.dev/run-now": "once"},
            )
            # An Event posted again (same reason and message) is read and its count patched.
            tasks.create("broken", {"schedule": "not a cron", "handler": "echo"})
            wait_for(
                lambda: invalid_schedule_count(tasks, "broken") == 1,
                timeout=30,
                message="InvalidSchedule event of broken",
            )
            tasks.patch_spec("broken", {"schedule": "@yearly"})
            tasks.wait_status(
                "broken", lambda s: s.get("phase") == "Scheduled", timeout=30, what="valid again"
            )
            tasks.patch_spec("broken", {"schedule": "not a cron"})
            wait_for(
                lambda: invalid_schedule_count(tasks, "broken") == 2,
                timeout=30,
                message="the repeated InvalidSchedule event counted (a get and a patch of the Event)",
            )

            tasks.wait_status("pruned", lambda s: s.get("counters", {}).get("succeeded") == 1, timeout=45)
            wait_for(lambda: not tasks.jobs("pruned"), timeout=30, message="pruned's finished Job deleted")
            status = tasks.wait_status(
                "hello",
                lambda s: s.get("counters", {}).get("succeeded", 0) >= 2,
                timeout=60,
                what="two successful runs",
            )
            assert status["counters"]["failed"] == 0, status

            log = chart_operator.log_path.read_text(errors="replace")
            assert f"namespaces=['{ns}']" in log, chart_operator.log_tail()
            refused = [line for line in log.splitlines() if REFUSAL.search(log_message(line))]
            assert not refused, "\n".join(refused)
            assert not api_errors(chart_operator.metrics())
        finally:
            chart_operator.stop()
            print(f"--- log of the operator with the chart's credentials ---\n{chart_operator.log_tail(120)}")


def test_service_account_is_refused_what_the_operator_does_not_need(
    installed: Install, kube: client.ApiClient, kubeconfig: str, kubectl: Kubectl, tmp_path: Path
) -> None:
    ns, other = installed.tasks_namespace, installed.release_namespace
    Tasks(kube, ns).create("target", {"schedule": "@yearly", "handler": "echo"})
    token_api = config.new_client_from_config(
        config_file=token_kubeconfig(
            admin_kubeconfig=kubeconfig,
            install=installed,
            kubectl=kubectl,
            path=tmp_path / "token.kubeconfig",
        )
    )
    try:
        core, custom = client.CoreV1Api(token_api), client.CustomObjectsApi(token_api)
        # Positive control: the token authenticates and reads what the operator reads.
        assert [
            t["metadata"]["name"]
            for t in custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        ] == ["target"]
        calls: dict[str, Callable[[], object]] = {
            "list secrets": lambda: core.list_namespaced_secret(ns),
            "read configmaps": lambda: core.list_namespaced_config_map(ns),
            "patch a task's spec": lambda: custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, "target", {"spec": {"suspend": True}}
            ),
            "patch a task's metadata": lambda: custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, "target", {"metadata": {"labels": {"x": "y"}}}
            ),
            "delete a task": lambda: custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, "target"
            ),
            "create a pod": lambda: core.create_namespaced_pod(
                ns,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "sneaky"},
                    "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]},
                },
            ),
            "list tasks in another namespace": lambda: custom.list_namespaced_custom_object(
                GROUP, VERSION, other, PLURAL
            ),
            "list jobs in another namespace": lambda: client.BatchV1Api(token_api).list_namespaced_job(other),
            "list tasks cluster-wide": lambda: custom.list_cluster_custom_object(GROUP, VERSION, PLURAL),
        }
        outcomes: dict[str, int] = {}
        for what, call in calls.items():
            try:
                call()
                outcomes[what] = 200
            except ApiException as error:
                outcomes[what] = error.status
        assert outcomes == dict.fromkeys(calls, 403)
    finally:
        token_api.close()
    # Nothing slipped through (the CRD defaults suspend to false).
    target = Tasks(kube, ns).get("target")
    assert target["spec"]["suspend"] is False and "x" not in (target["metadata"].get("labels") or {})


def test_kubernetes_own_roles_grant_scheduledtasks_by_aggregation(
    installed: Install, kube: client.ApiClient, kubectl: Kubectl
) -> None:
    """Someone with the built-in `edit` role in a namespace may create ScheduledTasks there, someone with
    `view` may read them, and neither may write their status (the operator's alone)."""
    rbac = client.RbacAuthorizationV1Api(kube)
    ns = installed.tasks_namespace
    for role in ("view", "edit"):
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": f"alice-{role}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [
                    {"kind": "User", "name": f"alice-{role}", "apiGroup": "rbac.authorization.k8s.io"}
                ],
            },
        )

    def can(user: str, verb: str, resource: str, *extra: str) -> bool:
        done = kubectl("auth", "can-i", verb, resource, *extra, "-n", ns, f"--as={user}", check=False)
        return done.stdout.strip() == "yes"

    # The aggregation controller folds the chart's roles into view and edit: wait for it.
    wait_for(
        lambda: can("alice-edit", "create", "scheduledtasks.cronlet.dev"),
        timeout=30,
        message="edit does not grant creating ScheduledTasks",
    )
    assert can("alice-view", "list", "scheduledtasks.cronlet.dev")
    assert not can("alice-view", "create", "scheduledtasks.cronlet.dev")
    assert can("alice-edit", "patch", "scheduledtasks.cronlet.dev")
    assert not can("alice-edit", "patch", "scheduledtasks.cronlet.dev", "--subresource=status")
