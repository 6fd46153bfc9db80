"""spec.podTemplate has Kubernetes' PodTemplateSpec schema: the one this cluster's API server serves, shown by
kubectl explain, enforced on create; the CRD that carries it still applies without --server-side."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import podtemplate_schema as gen
import pytest
from helpers import wait_for

from cronlet._core import crd as crdgen

pytestmark = pytest.mark.cluster


def _kubectl(
    cluster_bin: Path, kubeconfig: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster_bin / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_vendored_schema_is_what_this_api_server_serves(kubeconfig: str, cluster_bin: Path) -> None:
    served = _kubectl(cluster_bin, kubeconfig, "get", "--raw", "/openapi/v3/api/v1")
    assert served.returncode == 0, served.stderr
    assert gen.convert(json.loads(served.stdout)) == crdgen.pod_template_schema()


def test_kubectl_explain_shows_the_pod_template(kubeconfig: str, cluster_bin: Path, crd: str) -> None:
    def explained() -> str:
        done = _kubectl(cluster_bin, kubeconfig, "explain", "scheduledtask.spec.podTemplate.spec.containers")
        return done.stdout if done.returncode == 0 and "imagePullPolicy" in done.stdout else ""

    text = wait_for(explained, timeout=30, message="kubectl explain to show the containers' fields")
    assert "List of containers belonging to the pod." in text
    env = _kubectl(
        cluster_bin, kubeconfig, "explain", "scheduledtask.spec.podTemplate.spec.containers.env.valueFrom"
    )
    assert "secretKeyRef" in env.stdout, env.stdout + env.stderr


def _task(name: str, template: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "cronlet.dev/v1alpha1",
            "kind": "ScheduledTask",
            "metadata": {"name": name},
            "spec": {"schedule": "@daily", "handler": "echo", "podTemplate": template},
        }
    )


GOOD = {
    "metadata": {"labels": {"team": "a"}},
    "spec": {
        "serviceAccountName": "runner",
        "nodeSelector": {"disk": "ssd"},
        "containers": [
            {
                "name": "executor",
                "resources": {"limits": {"memory": "1Gi", "cpu": 1}},
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            }
        ],
    },
}
REFUSED = [
    (
        "field-typo",
        {"spec": {"containers": [{"name": "executor", "imagePullPolice": "Always"}]}},
        "imagePullPolice",
    ),
    ("pod-typo", {"spec": {"nodeSelecter": {"disk": "ssd"}}}, "nodeSelecter"),
    ("wrong-type", {"spec": {"containers": {"name": "executor"}}}, "spec.podTemplate.spec.containers"),
    (
        "no-container-name",
        {"spec": {"containers": [{"image": "x"}]}},
        "spec.podTemplate.spec.containers[0].name",
    ),
    ("metadata-name", {"metadata": {"name": "x"}}, "spec.podTemplate.metadata.name"),
]


def test_a_valid_pod_template_is_accepted(
    kubeconfig: str, cluster_bin: Path, crd: str, namespace: str
) -> None:
    done = _kubectl(cluster_bin, kubeconfig, "-n", namespace, "create", "-f", "-", stdin=_task("good", GOOD))
    assert done.returncode == 0, done.stderr
    stored = _kubectl(cluster_bin, kubeconfig, "-n", namespace, "get", "st", "good", "-o", "json")
    assert json.loads(stored.stdout)["spec"]["podTemplate"] == GOOD  # nothing defaulted into it


@pytest.mark.parametrize(("name", "template", "text"), REFUSED, ids=[c[0] for c in REFUSED])
def test_the_api_server_catches_a_wrong_pod_template(
    kubeconfig: str, cluster_bin: Path, crd: str, namespace: str, name: str, template: Any, text: str
) -> None:
    done = _kubectl(
        cluster_bin, kubeconfig, "-n", namespace, "create", "-f", "-", stdin=_task(name, template)
    )
    assert done.returncode != 0
    assert text in done.stderr, done.stderr


def test_the_crd_applies_without_server_side_apply(kubeconfig: str, cluster_bin: Path, crd: str) -> None:
    # Client-side apply keeps the whole object in an annotation of at most 256 KiB (Argo CD's default sync too);
    # the server's dry run checks the object as it would store it, annotation included.
    done = _kubectl(cluster_bin, kubeconfig, "apply", "--dry-run=server", "-f", crd)
    assert done.returncode == 0, done.stderr
