"""The chart installed by helm on the real node: the operator and its executor pods in real containers.

``helm install -f charts/cronlet/ci/local-values.yaml`` with only the per-cluster ``--set``s (the API
server's port, and a free host port for metrics since the operator runs on the node's network). Then, in
containers of the image `make image` built: the operator's probes, uid and securityContext; the examples
in executor pods; an OOM-killed attempt, an image that cannot be pulled and Pod Security ``restricted``,
each surfaced in the ScheduledTask's status; ``helm upgrade`` rolling the Deployment; and what ``helm
uninstall`` leaves.

Executor pods reach the real node through their task's ``spec.podTemplate``: the tests merge
``localkube.node.placement()`` into each example before applying it (the examples themselves stay
cluster-neutral). A pod that lands on the fake kubelet instead is a failure (``on_real_node``).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import throwaway_namespace, wait_for
from realkit import IMAGE, RealCluster

from cronlet._core import model
from localkube import binaries, ports
from localkube import node as localkube_node

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cronlet"
LOCAL_VALUES = CHART / "ci" / "local-values.yaml"
RELEASE = "cronlet"
RELEASE_NAMESPACE = "cronlet-system"
CRD = "scheduledtasks.cronlet.dev"
UID = 65532  # the image's USER and the chart's runAsUser


@dataclass(frozen=True, kw_only=True)
class Release:
    real: RealCluster
    home: Path
    sets: tuple[str, ...]  # the per-cluster --set arguments

    def helm(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            # Keep helm away from the user's repositories, plugins and cache.
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        argv = [str(binaries.find("helm")), "--kubeconfig", self.real.kubeconfig, *args]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        assert done.returncode == 0, (
            f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        return done

    def operator_pods(self) -> list[dict[str, Any]]:
        out = self.real.kubectl(
            "get", "pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/component=operator", "-o", "json"
        ).stdout
        pods: list[dict[str, Any]] = json.loads(out)["items"]
        return pods

    def rollout(self) -> None:
        self.real.kubectl(
            "rollout",
            "status",
            "-n",
            RELEASE_NAMESPACE,
            f"deployment/{RELEASE}",
            "--timeout=150s",
            timeout=160,
        )


@pytest.fixture(scope="module")
def release(real: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """``helm install`` of the chart with local-values.yaml, its operator Ready on the real node."""
    sets = (
        "--set",
        f"apiServer.port={real.control_plane.api_env['KUBERNETES_SERVICE_PORT']}",
        # A port of the host (hostNetwork): a free one, since other clusters may run on this machine.
        "--set",
        f"metrics.port={ports.free_port()}",
    )
    installed = Release(real=real, home=tmp_path_factory.mktemp("helm"), sets=sets)
    installed.helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "-f",
        str(LOCAL_VALUES),
        *sets,
    )
    try:
        installed.rollout()
        yield installed
    finally:
        listed = installed.helm("list", "-n", RELEASE_NAMESPACE, "-q").stdout.split()
        if RELEASE in listed:
            installed.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait")


def on_real_node(real: RealCluster, pod: dict[str, Any]) -> None:
    assert pod["spec"].get("nodeName") == real.node.name, (
        f"pod {pod['metadata']['name']} is on {pod['spec'].get('nodeName')!r}, not the real node"
    )
    for status in pod["status"].get("containerStatuses") or []:
        assert str(status.get("containerID", "")).startswith("containerd://"), status


def get_task(real: RealCluster, namespace: str, name: str) -> dict[str, Any]:
    out = real.kubectl("get", "scheduledtasks", name, "-n", namespace, "-o", "json").stdout
    task: dict[str, Any] = json.loads(out)
    return task


def history(real: RealCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = get_task(real, namespace, name).get("status", {}).get("history") or []
    return entries


def task_pods(real: RealCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = real.kubectl(
        "get", "pods", "-n", namespace, "-l", f"{model.TASK_LABEL}={name}", "-o", "json"
    ).stdout
    pods: list[dict[str, Any]] = json.loads(out)["items"]
    return pods


def jobs(real: RealCluster, namespace: str, name: str) -> list[str]:
    out = real.kubectl(
        "get", "jobs", "-n", namespace, "-l", f"{model.TASK_LABEL}={name}", "-o", "name"
    ).stdout
    return out.split()


def placed(task: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """``task`` with the real node's placement (and ``spec``) merged into its podTemplate's spec."""
    task = copy.deepcopy(task)
    template = task["spec"].setdefault("podTemplate", {})
    template.setdefault("spec", {}).update({**localkube_node.placement(), **spec})
    return task


def load_example(name: str) -> dict[str, Any]:
    task: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name / "task.yaml").read_text())
    return task


def task_of(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{model.GROUP}/{model.VERSION}",
        "kind": model.KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(real: RealCluster, namespace: str, manifest: dict[str, Any]) -> None:
    real.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest))


def wait_for_run(
    real: RealCluster, namespace: str, name: str, outcome: str, timeout: float
) -> dict[str, Any]:
    """The first status.history entry with ``outcome``."""

    def found() -> dict[str, Any] | None:
        return next((e for e in history(real, namespace, name) if e.get("outcome") == outcome), None)

    def describe() -> str:
        status = json.dumps(get_task(real, namespace, name).get("status"), indent=1)
        logs = real.kubectl(
            "logs", "-n", RELEASE_NAMESPACE, f"deployment/{RELEASE}", "--tail=15", check=False
        ).stdout
        return f"{status}\noperator log:\n{logs}"

    entry: dict[str, Any] = wait_for(found, timeout, interval=1.0, message=describe)
    return entry


# --- the operator -------------------------------------------------------------------------------------


def test_the_operator_is_ready_through_its_probes_as_uid_65532_with_no_restart(release: Release) -> None:
    real = release.real
    (pod,) = release.operator_pods()
    on_real_node(real, pod)
    assert pod["spec"]["hostNetwork"] is True
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True, status
    # The regression proof of kopf's getpass.getuser() crash for a uid without a passwd entry: it ran in
    # the image as 65532 and never restarted.
    assert status["restartCount"] == 0, status
    assert status["image"].endswith(IMAGE), status
    (container,) = pod["spec"]["containers"]
    context = container["securityContext"]
    assert context["runAsUser"] == UID and context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    # Ready comes from the real kubelet's probes: the readiness probe is an HTTP GET of /readyz.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    name = pod["metadata"]["name"]
    ids = real.kubectl("exec", "-n", RELEASE_NAMESPACE, name, "--", "id", "-u").stdout
    assert ids == f"{UID}\n"
    # The root filesystem is read-only and no capability is left, as the kernel sees it.
    probe = (
        "import pathlib\n"
        "try:\n    pathlib.Path('/probe').write_text('x'); print('writable')\n"
        "except OSError as error:\n    print(error.strerror)\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0])\n"
    )
    out = real.kubectl("exec", "-n", RELEASE_NAMESPACE, name, "--", "python", "-c", probe).stdout
    assert out.splitlines() == ["Read-only file system", "0000000000000000"], out
    # It is the leader: it holds the Lease of the chart's leader-election Role.
    lease = json.loads(real.kubectl("get", "lease", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == name


# --- the examples in executor pods -------------------------------------------------------------------


def test_examples_01_minimal_runs_in_executor_pods_on_the_real_node(release: Release, namespace: str) -> None:
    real = release.real
    apply(real, namespace, placed(load_example("01-minimal")))
    entry = wait_for_run(real, namespace, "hello", "Succeeded", 90)
    pods = [p for p in task_pods(real, namespace, "hello") if p["status"].get("phase") == "Succeeded"]
    assert pods, entry
    pod = pods[0]
    on_real_node(real, pod)
    (executor,) = pod["status"]["containerStatuses"]
    assert executor["image"].endswith(IMAGE)
    logs = real.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert "hello from cronlet" in logs, logs
    real.kubectl("delete", "scheduledtask", "hello", "-n", namespace, "--wait=true")


def test_examples_02_data_processing_runs_its_own_handler_on_the_real_node(
    release: Release, namespace: str
) -> None:
    """The seed's task as its README ships it, but for the image and for where the handler comes from.

    There is no registry here, so ``registry.example.com/acme/cronlet-handlers:1.0`` cannot be pulled:
    the executor runs in the Cronlet image, and ``handler/sample_handler.py`` comes from a ConfigMap mounted
    at /app, where the example's ``PYTHONPATH=/app`` finds it, as its handler/Dockerfile would put it.
    Its schedule is every 15 minutes: the run-now annotation starts a run now (examples/07-run-now).
    """
    real = release.real
    handler = ROOT / "examples" / "02-data-processing" / "handler" / "sample_handler.py"
    real.kubectl(
        "create", "configmap", "sample-handler", "-n", namespace, f"--from-file=sample_handler.py={handler}"
    )
    task = placed(
        load_example("02-data-processing"),
        volumes=[{"name": "handler", "configMap": {"name": "sample-handler"}}],
    )
    task["spec"]["image"] = IMAGE
    (executor,) = task["spec"]["podTemplate"]["spec"]["containers"]
    executor["volumeMounts"] = [{"name": "handler", "mountPath": "/app", "readOnly": True}]
    task["metadata"]["annotations"] = {model.RUN_NOW_ANNOTATION: "first"}
    apply(real, namespace, task)
    entry = wait_for_run(real, namespace, "data-processing", "Succeeded", 90)
    assert entry["message"] == "processed 100 rows from orders", entry
    (pod,) = task_pods(real, namespace, "data-processing")
    on_real_node(real, pod)
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == "256Mi"  # the example's own podTemplate
    logs = real.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert "processing 100 rows from orders (attempt 1)" in logs, logs


# --- failures the real node makes visible -------------------------------------------------------------


HUNGRY = "hungry"


@pytest.fixture(scope="module")
def oom_run(release: Release, real: RealCluster) -> Iterator[tuple[str, dict[str, Any]]]:
    """One run of a shell task whose command allocates 256 MiB under a 20 Mi limit: its finished entry."""
    from kubernetes import config

    grab = "x = bytearray(256 << 20); x[::4096] = b'x' * len(x[::4096])"
    task = placed(
        task_of(
            HUNGRY,
            schedule="0 0 1 1 *",
            handler="shell",
            parameters={"command": ["python", "-c", grab]},
            maxRetries=1,
            backoff={"initialDelay": "1s"},
            failedJobsHistoryLimit=2,
            podTemplate={
                "spec": {"containers": [{"name": "executor", "resources": {"limits": {"memory": "20Mi"}}}]}
            },
        )
    )
    task["metadata"]["annotations"] = {model.RUN_NOW_ANNOTATION: "now"}
    api = config.new_client_from_config(config_file=real.kubeconfig)
    try:
        with throwaway_namespace(
            api, f"t-real-oom-{os.urandom(3).hex()}", {"localkube.dev/test": "true"}
        ) as ns:
            apply(real, ns, task)
            yield ns, wait_for_run(real, ns, HUNGRY, "Failed", 120)
    finally:
        api.close()


def test_an_attempt_over_its_memory_limit_is_oomkilled_and_retried(
    oom_run: tuple[str, dict[str, Any]], real: RealCluster
) -> None:
    namespace, entry = oom_run
    # The first attempt failed and was retried in a Job of its own; both were OOM-killed by the kernel.
    assert entry["attempts"] == 2, entry
    assert sorted(jobs(real, namespace, HUNGRY)) == [f"job.batch/{entry['jobName'][:-2]}-{n}" for n in (1, 2)]
    pods = task_pods(real, namespace, HUNGRY)
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        on_real_node(real, pod)
        (status,) = pod["status"]["containerStatuses"]
        assert status["state"]["terminated"]["reason"] == "OOMKilled", status


def test_the_oomkilled_reason_is_in_the_run_history(oom_run: tuple[str, dict[str, Any]]) -> None:
    _, entry = oom_run
    assert "OOMKilled" in entry["message"], entry


def test_an_image_that_cannot_be_pulled_fails_its_attempt_within_start_timeout(
    release: Release, namespace: str
) -> None:
    real = release.real
    task = placed(
        task_of(
            "no-image",
            schedule="0 0 1 1 *",
            handler="echo",
            image="localkube.invalid/cronlet/no-such-image:1",
            startTimeout="20s",
            maxRetries=0,
        )
    )
    task["metadata"]["annotations"] = {model.RUN_NOW_ANNOTATION: "now"}
    apply(real, namespace, task)
    entry = wait_for_run(real, namespace, "no-image", "Failed", 90)
    assert "did not start within 20s" in entry["message"], entry
    assert "ErrImagePull" in entry["message"] or "ImagePullBackOff" in entry["message"], entry
    status = get_task(real, namespace, "no-image")["status"]
    assert status.get("phase") != "Running", status
    wait_for(lambda: not jobs(real, namespace, "no-image"), 30, message="its Job was not deleted")


@pytest.fixture(scope="module")
def restricted(release: Release, real: RealCluster) -> Iterator[str]:
    """A namespace that enforces Pod Security ``restricted``, with a plain task and a root-only one, both run."""
    from kubernetes import config

    labels = {
        "localkube.dev/test": "true",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    fine = placed(task_of("fine", schedule="0 0 1 1 *", handler="echo", parameters={"ok": 1}))
    rooted = placed(
        task_of("rooted", schedule="0 0 1 1 *", handler="echo", startTimeout="20s", maxRetries=0),
        # The container's own runAsNonRoot: false is the user's explicit choice, which the operator lets
        # through (a pod-level one would lose to the executor's runAsNonRoot: true, and the operator refuses
        # that as InvalidPodTemplate); Pod Security admission refuses it.
        containers=[{"name": "executor", "securityContext": {"runAsNonRoot": False, "runAsUser": 0}}],
    )
    api = config.new_client_from_config(config_file=real.kubeconfig)
    try:
        with throwaway_namespace(api, f"t-real-psa-{os.urandom(3).hex()}", labels) as namespace:
            for task in (fine, rooted):
                task["metadata"]["annotations"] = {model.RUN_NOW_ANNOTATION: "now"}
                apply(real, namespace, task)
            yield namespace
    finally:
        api.close()


def test_pod_security_restricted_runs_a_task_and_refuses_a_root_pod(
    restricted: str, real: RealCluster
) -> None:
    wait_for_run(real, restricted, "fine", "Succeeded", 90)
    (pod,) = task_pods(real, restricted, "fine")
    on_real_node(real, pod)
    # What the operator adds to executor pods is what the restricted profile asks for.
    (container,) = pod["spec"]["containers"]
    context = {**(pod["spec"].get("securityContext") or {}), **container["securityContext"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}, context
    assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"] is True, context

    def refused() -> list[str]:
        out = real.kubectl(
            "get",
            "events",
            "-n",
            restricted,
            "--field-selector",
            "involvedObject.kind=Job,reason=FailedCreate",
            "-o",
            "jsonpath={.items[*].message}",
        ).stdout
        return [out] if 'violates PodSecurity "restricted:latest"' in out else []

    wait_for(refused, 60, interval=1.0, message="no FailedCreate of the root pod by Pod Security admission")
    assert task_pods(real, restricted, "rooted") == []


def test_a_refused_pod_fails_its_attempt_within_start_timeout(restricted: str, real: RealCluster) -> None:
    # startTimeout 20s, after the Job's creation; the FailedCreate is there a second after it.
    entry = wait_for_run(real, restricted, "rooted", "Failed", 45)
    assert "FailedCreate" in entry["message"], entry
    assert "restricted" in entry["message"], entry


# --- upgrade and uninstall (last: they end the module's release) ------------------------------------


def test_helm_upgrade_rolls_the_deployment_and_uninstall_leaves_only_what_docs_say(release: Release) -> None:
    real = release.real
    before = {p["metadata"]["uid"] for p in release.operator_pods()}
    release.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "-f",
        str(LOCAL_VALUES),
        *release.sets,
        "--set",
        "logFormat=text",
    )
    release.rollout()

    def rolled() -> list[dict[str, Any]]:
        pods = release.operator_pods()
        return pods if pods and not {p["metadata"]["uid"] for p in pods} & before else []

    (pod,) = wait_for(rolled, 60, interval=1.0, message="the old operator pod is still there")
    on_real_node(real, pod)
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True and status["restartCount"] == 0, status
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["CRONLET_LOG_FORMAT"] == "text"

    release.helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait")
    wait_for(lambda: not release.operator_pods(), 60, interval=1.0, message="operator pods left")
    kinds = "all,configmaps,secrets,serviceaccounts,roles,rolebindings,leases,poddisruptionbudgets"
    left = real.kubectl("get", kinds, "-n", RELEASE_NAMESPACE, "-o", "name").stdout.split()
    # What every namespace has, and the Lease the operator (not helm) created and keeps after it stops.
    assert sorted(left) == sorted(
        [
            "configmap/kube-root-ca.crt",
            "serviceaccount/default",
            f"lease.coordination.k8s.io/{RELEASE}",
        ]
    ), left
    cluster_rbac = real.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout.split()
    assert not [name for name in cluster_rbac if "cronlet" in name], cluster_rbac
    # The CRD stays, by its keep policy (docs/operations.md), and with it every ScheduledTask.
    crd = json.loads(real.kubectl("get", "crd", CRD, "-o", "json").stdout)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
