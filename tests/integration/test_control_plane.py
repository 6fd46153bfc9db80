"""The local control plane itself: real apiserver, controllers and scheduler, and the fake kubelet.

Every test here talks to real servers: nothing is mocked. Pods run as local processes (execute mode),
so a pod's command can leave files in a test's tmp_path and the test can look for its processes.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import select
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import kubectl as run_kubectl
from helpers import wait_for
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from localkube import cluster as localkube_cluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
NODE = "fake-node-0"
IMAGE = "docker.io/library/busybox:1.36"  # never pulled: execute mode runs the command on this machine
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


# -- helpers -----------------------------------------------------------------------------------------------


def job_manifest(
    name: str,
    namespace: str,
    command: list[str],
    *,
    backoff_limit: int = 0,
    active_deadline_seconds: int | None = None,
    owner: dict[str, Any] | None = None,
    restart_policy: str = "Never",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": {
            "spec": {
                "restartPolicy": restart_policy,
                "containers": [{"name": "main", "image": IMAGE, "command": command}],
            }
        },
    }
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def pod_manifest(name: str, namespace: str, command: list[str], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": IMAGE, "command": command}],
        },
    }


def apply(kubectl: Kubectl, *manifests: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))


def job_finished(kube: ApiClient, namespace: str, name: str) -> client.V1JobCondition | None:
    """The Job's Complete or Failed condition once it is True, else None."""
    job = client.BatchV1Api(kube).read_namespaced_job(name, namespace)
    for condition in (job.status and job.status.conditions) or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition
    return None


def job_pods(kube: ApiClient, namespace: str, job: str) -> list[client.V1Pod]:
    selector = f"batch.kubernetes.io/job-name={job}"
    return list(client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items)


def terminated(pod: client.V1Pod) -> client.V1ContainerStateTerminated:
    statuses = pod.status.container_statuses or []
    assert len(statuses) == 1, f"expected one container status, got {statuses}"
    state = statuses[0].state.terminated
    assert state is not None, f"container not terminated: {statuses[0].state}"
    return state


def pid_from(path: Path, *, timeout: float = 30) -> int:
    """The pid a pod's command wrote to ``path``: proof that the command really started.

    The commands write ``$$$$``: Kubernetes expands ``$$`` in command and args to ``$``, and so does
    the fake kubelet, which leaves the shell its ``$$``.
    """
    text = wait_for(lambda: path.exists() and path.read_text().strip(), timeout, message=f"{path} written")
    return int(str(text))


def process_gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def gone(read: Callable[[], object]) -> bool:
    """True once ``read`` gets a 404."""
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (a cluster's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


# -- the node and the version ------------------------------------------------------------------------------


class TestNode:
    def test_fake_node_is_listed_ready(self, kubectl: Kubectl) -> None:
        rows = [line.split() for line in kubectl("get", "nodes", "--no-headers").stdout.splitlines()]
        statuses = {row[0]: row[1] for row in rows}
        assert statuses.get(NODE) == "Ready", f"kubectl get nodes: {rows}"


class TestVersion:
    def test_server_reports_the_pinned_kubernetes_version(self, kubectl: Kubectl) -> None:
        version = json.loads(kubectl("version", "-o", "json").stdout)
        assert version["serverVersion"]["gitVersion"].startswith("v1.37"), version["serverVersion"]


# -- Jobs through the scheduler, the job controller and the fake kubelet -----------------------------------


class TestJobs:
    def test_job_completes_and_its_pod_carries_the_termination_message(
        self, kube: ApiClient, kubectl: Kubectl, namespace: str
    ) -> None:
        apply(
            kubectl,
            job_manifest("hello", namespace, ["sh", "-c", "echo hello-from-job > /dev/termination-log"]),
        )

        condition = wait_for(lambda: job_finished(kube, namespace, "hello"), 60, message="Job hello finished")

        assert condition.type == "Complete", f"{condition.type}: {condition.reason} {condition.message}"
        [pod] = job_pods(kube, namespace, "hello")
        assert pod.spec.node_name == NODE  # bound by the real scheduler
        assert pod.status.phase == "Succeeded"
        state = terminated(pod)
        assert (state.exit_code, state.reason, state.message) == (0, "Completed", "hello-from-job\n")

    def test_job_with_backoff_limit_zero_fails_when_its_command_exits_1(
        self, kube: ApiClient, kubectl: Kubectl, namespace: str
    ) -> None:
        apply(
            kubectl, job_manifest("boom", namespace, ["sh", "-c", "echo boom >&2; exit 1"], backoff_limit=0)
        )

        condition = wait_for(lambda: job_finished(kube, namespace, "boom"), 60, message="Job boom finished")

        assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
        [pod] = job_pods(kube, namespace, "boom")
        assert pod.status.phase == "Failed"
        state = terminated(pod)
        assert (state.exit_code, state.reason) == (1, "Error")

    def test_concurrent_pods_write_separate_termination_messages(
        self, kube: ApiClient, kubectl: Kubectl, namespace: str, tmp_path: Path
    ) -> None:
        # Each pod writes its message, then waits until the other has written too: both files are written
        # before either pod ends, so one shared /dev/termination-log would give both the same message.
        def script(me: str, other: str) -> list[str]:
            return [
                "sh",
                "-c",
                f"echo message-from-{me} > /dev/termination-log; touch {tmp_path}/{me}; "
                f"i=0; while [ ! -e {tmp_path}/{other} ]; do i=$((i+1)); [ $i -gt 300 ] && exit 3; "
                "sleep 0.1; done",
            ]

        apply(
            kubectl,
            pod_manifest("pod-a", namespace, script("a", "b")),
            pod_manifest("pod-b", namespace, script("b", "a")),
        )
        core = client.CoreV1Api(kube)

        def both_done() -> list[client.V1Pod] | None:
            pods = [core.read_namespaced_pod(name, namespace) for name in ("pod-a", "pod-b")]
            return pods if all(p.status.phase in ("Succeeded", "Failed") for p in pods) else None

        pod_a, pod_b = wait_for(both_done, 60, message="pod-a and pod-b finished")

        # Exit 3 would mean the pods never overlapped, and so proved nothing.
        assert (terminated(pod_a).exit_code, terminated(pod_b).exit_code) == (0, 0)
        assert terminated(pod_a).message == "message-from-a\n"
        assert terminated(pod_b).message == "message-from-b\n"

    def test_on_failure_restarts_the_container_in_the_same_pod(
        self, kube: ApiClient, kubectl: Kubectl, namespace: str, tmp_path: Path
    ) -> None:
        marker = tmp_path / "failed-once"
        command = ["sh", "-c", f"[ -e {marker} ] && exit 0; touch {marker}; exit 1"]
        apply(kubectl, job_manifest("flaky", namespace, command, backoff_limit=2, restart_policy="OnFailure"))

        condition = wait_for(lambda: job_finished(kube, namespace, "flaky"), 60, message="Job flaky finished")

        assert condition.type == "Complete", f"{condition.type}: {condition.reason} {condition.message}"
        [pod] = job_pods(kube, namespace, "flaky")  # restarted in place, not replaced
        [status] = pod.status.container_statuses
        assert status.restart_count == 1
        assert status.last_state.terminated.exit_code == 1
        assert terminated(pod).exit_code == 0

    def test_active_deadline_kills_the_running_pod_and_fails_the_job(
        self, kube: ApiClient, kubectl: Kubectl, namespace: str, tmp_path: Path
    ) -> None:
        pid_file = tmp_path / "pid"
        command = ["sh", "-c", f"echo $$$$ > {pid_file}; exec sleep 60"]
        # Long enough for the pod to be scheduled and started on a loaded machine before the deadline strikes.
        apply(kubectl, job_manifest("slow", namespace, command, active_deadline_seconds=8))
        pid = pid_from(pid_file)

        condition = wait_for(lambda: job_finished(kube, namespace, "slow"), 60, message="Job slow finished")

        assert (condition.type, condition.reason) == ("Failed", "DeadlineExceeded")
        wait_for(lambda: process_gone(pid), 30, message=f"the pod's sleep (pid {pid}) killed")
        wait_for(lambda: not job_pods(kube, namespace, "slow"), 30, message="the Job's pod deleted")


# -- deletion: garbage collection and namespaces -----------------------------------------------------------


class TestDeletion:
    def test_deleting_the_owner_removes_the_job_and_its_running_pod(
        self, kube: ApiClient, kubectl: Kubectl, namespace: str, tmp_path: Path
    ) -> None:
        core = client.CoreV1Api(kube)
        owner = core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
        pid_file = tmp_path / "pid"
        command = ["sh", "-c", f"echo $$$$ > {pid_file}; exec sleep 60"]
        apply(kubectl, job_manifest("owned", namespace, command, owner=reference))
        pid = pid_from(pid_file)

        core.delete_namespaced_config_map("owner", namespace)

        batch = client.BatchV1Api(kube)
        wait_for(
            lambda: gone(lambda: batch.read_namespaced_job("owned", namespace)), 60, message="Job collected"
        )
        wait_for(lambda: not job_pods(kube, namespace, "owned"), 60, message="the Job's pod collected")
        wait_for(lambda: process_gone(pid), 30, message=f"the pod's sleep (pid {pid}) killed")

    def test_deleting_a_namespace_with_a_running_pod_completes(
        self, kube: ApiClient, kubectl: Kubectl, tmp_path: Path
    ) -> None:
        core = client.CoreV1Api(kube)
        name = f"t-doomed-{secrets.token_hex(3)}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        pid_file = tmp_path / "pid"
        apply(kubectl, pod_manifest("sleeper", name, ["sh", "-c", f"echo $$$$ > {pid_file}; exec sleep 60"]))
        pid = pid_from(pid_file)

        core.delete_namespace(name)

        wait_for(lambda: gone(lambda: core.read_namespace(name)), 90, message=f"namespace {name} deleted")
        assert process_gone(pid)


# -- CustomResourceDefinitions -----------------------------------------------------------------------------


class TestCustomResources:
    def test_crd_is_served_with_schema_validation_and_printer_columns(
        self, kubectl: Kubectl, namespace: str
    ) -> None:
        group = f"t{secrets.token_hex(3)}.localkube.dev"
        crd_name = f"widgets.{group}"
        schema = {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "color": {"type": "string", "enum": ["red", "blue"]},
                    },
                }
            },
        }
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {
                    "plural": "widgets",
                    "singular": "widget",
                    "kind": "Widget",
                    "listKind": "WidgetList",
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                        "additionalPrinterColumns": [
                            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                            {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                        ],
                    }
                ],
            },
        }

        def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }

        apply(kubectl, crd)
        try:
            kubectl("wait", "--for=condition=Established", f"crd/{crd_name}", "--timeout=60s")
            # Established can precede discovery by a moment; wait until kubectl can address the resource.
            wait_for(
                lambda: kubectl("get", crd_name, "-n", namespace, check=False).returncode == 0,
                30,
                message=f"{crd_name} served",
            )

            rejected = kubectl(
                "apply", "-f", "-", stdin=yaml.safe_dump(widget("tiny", {"size": 0})), check=False
            )
            assert rejected.returncode != 0, rejected.stdout
            assert "spec.size" in rejected.stderr, rejected.stderr
            assert "should be greater than or equal to 1" in rejected.stderr, rejected.stderr

            apply(kubectl, widget("big", {"size": 3, "color": "red"}))
            table = kubectl("get", crd_name, "-n", namespace).stdout.splitlines()
            header, rows = table[0].split(), [line.split() for line in table[1:]]
            assert header[:3] == ["NAME", "SIZE", "COLOR"], table
            assert rows[0][:3] == ["big", "3", "red"], table
        finally:
            kubectl("delete", "crd", crd_name, "--wait=false", check=False)


# -- RBAC with service-account tokens ----------------------------------------------------------------------


class TestRbac:
    @staticmethod
    def list_pods_as(kubeconfig: str, token: str, namespace: str, tmp_path: Path) -> tuple[int, str]:
        """GET the namespace's pods with only a bearer token: no client certificate."""
        config = yaml.safe_load(Path(kubeconfig).read_text())
        server = config["clusters"][0]["cluster"]["server"]
        ca = tmp_path / "ca.crt"
        ca.write_bytes(base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]))
        host, port = server.removeprefix("https://").rsplit(":", 1)
        conn = http.client.HTTPSConnection(
            host, int(port), context=ssl.create_default_context(cafile=str(ca))
        )
        try:
            conn.request(
                "GET", f"/api/v1/namespaces/{namespace}/pods", headers={"Authorization": f"Bearer {token}"}
            )
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def test_service_account_without_a_role_is_forbidden(
        self, kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path
    ) -> None:
        kubectl("create", "serviceaccount", "nobody", "-n", namespace)
        token = kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()

        status, body = self.list_pods_as(kubeconfig, token, namespace, tmp_path)

        # 403, not 401: the token authenticated, and RBAC refused.
        assert status == 403, body
        assert f"system:serviceaccount:{namespace}:nobody" in json.loads(body)["message"]

    def test_service_account_with_a_role_is_allowed(
        self, kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path
    ) -> None:
        kubectl("create", "serviceaccount", "reader", "-n", namespace)
        kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace)
        kubectl(
            "create",
            "rolebinding",
            "reader",
            "--role=pod-reader",
            f"--serviceaccount={namespace}:reader",
            "-n",
            namespace,
        )
        token = kubectl("create", "token", "reader", "-n", namespace).stdout.strip()

        # RBAC's authorizer learns of new bindings through a watch: allow it a moment.
        wait_for(
            lambda: self.list_pods_as(kubeconfig, token, namespace, tmp_path)[0] == 200,
            30,
            message="the bound service account may list pods",
        )


# -- starting and stopping a cluster -----------------------------------------------------------------------


class TestClusterLifecycle:
    def test_stop_leaves_no_process_and_no_directory_behind(self) -> None:
        second = localkube_cluster.Cluster()
        second.start()
        try:
            pids = second.pids
            directories = [second.dir, second.data_dir]
            assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
            assert not [name for name, pid in pids.items() if process_gone(pid)], pids
            run_kubectl(str(second.kubeconfig), "get", "namespace", "default")
        finally:
            second.stop()
        print(f"\nsecond cluster: started in {second.start_seconds:.1f} s")

        assert [name for name, pid in pids.items() if not process_gone(pid)] == []
        assert processes_mentioning(second.dir.name) == []
        assert [d for d in directories if d.exists()] == []
        assert (
            second.start_seconds is not None
        )  # printed above: 4-7 s when idle (the launcher gives up at 90 s)

    def test_launcher_up_env_down_in_simulate_mode(self, tmp_path: Path) -> None:
        state_file = tmp_path / "localkube.json"
        cli = [sys.executable, "-m", "localkube"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
        env.pop("KUBECONFIG", None)
        began = time.monotonic()
        with (tmp_path / "up.log").open("wb") as log:
            up = subprocess.Popen(
                [*cli, "up", "--mode", "simulate", "--state-file", str(state_file)],
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=ROOT,
            )
        try:
            assert up.stdout is not None
            ready, _, _ = select.select([up.stdout], [], [], 60)
            line = up.stdout.readline().decode().strip() if ready else ""
            assert line.startswith("export KUBECONFIG="), (
                f"{line!r}; log:\n{(tmp_path / 'up.log').read_text()}"
            )
            print(f"\nlocalkube up (simulate): export line after {time.monotonic() - began:.1f} s")
            kubeconfig = line.removeprefix("export KUBECONFIG=")
            shown = subprocess.run(
                [*cli, "env", "--state-file", str(state_file)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            assert shown.stdout.strip() == line

            ns = "default"
            apply(
                lambda *a, **k: run_kubectl(kubeconfig, *a, **k),
                pod_manifest("ok", ns, [], **{"localkube.dev/duration-ms": "100"}),
                pod_manifest("bad", ns, [], **{"localkube.dev/outcome": "fail-permanent"}),
            )
            core = client.CoreV1Api(client.ApiClient(_configuration(kubeconfig)))

            def phases() -> dict[str, str] | None:
                found = {n: core.read_namespaced_pod(n, ns).status.phase for n in ("ok", "bad")}
                return found if all(p in ("Succeeded", "Failed") for p in found.values()) else None

            assert wait_for(phases, 60, message="simulated pods finished") == {
                "ok": "Succeeded",
                "bad": "Failed",
            }
            assert terminated(core.read_namespaced_pod("bad", ns)).exit_code == 2
            cluster_dir = Path(kubeconfig).parent

            down = subprocess.run(
                [*cli, "down", "--state-file", str(state_file)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            assert down.returncode == 0, down.stderr
            assert up.wait(timeout=30) == 0
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
        assert not state_file.exists()
        assert not cluster_dir.exists()
        assert processes_mentioning(cluster_dir.name) == []


def _configuration(kubeconfig: str) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return configuration
