"""Durations are Go durations, checked by the API server (pattern and CEL), and a task stored with v1alpha1's
older `d` unit keeps working after the CRD is upgraded (docs/api.md, change 16)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

from cronlet._core import crd as crdgen
from cronlet._core import model

pytestmark = pytest.mark.cluster

# The pattern v1alpha1's durations had before they became Go durations.
BEFORE = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"


def _create(
    custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    body = {"apiVersion": model.API_VERSION, "kind": model.KIND, "metadata": {"name": name}, "spec": spec}
    return dict(
        custom.create_namespaced_custom_object(model.GROUP, model.VERSION, namespace, model.PLURAL, body)
    )


ACCEPTED = [
    ("go-forms", {"interval": "1h30m", "timeout": "1.5s", "startTimeout": "0"}),
    ("fractions", {"interval": ".5h", "backoff": {"initialDelay": "500ms", "maxDelay": "1.5s"}}),
    ("micro", {"schedule": "@daily", "timeout": "1500000\u00b5s", "startTimeout": "2m30s"}),
    ("equal-delays", {"schedule": "@daily", "backoff": {"initialDelay": "1m", "maxDelay": "60s"}}),
]


@pytest.mark.parametrize(("name", "spec"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_go_durations_are_accepted(
    kube: client.ApiClient, namespace: str, crd: str, name: str, spec: Any
) -> None:
    made = _create(client.CustomObjectsApi(kube), namespace, name, {"handler": "echo", **spec})
    assert made["spec"]["handler"] == "echo"


REFUSED = [
    ("days", {"interval": "1d"}, "spec.interval"),
    ("sign", {"schedule": "@daily", "timeout": "-5s"}, "spec.timeout"),
    ("words", {"schedule": "@daily", "startTimeout": "5 minutes"}, "spec.startTimeout"),
    ("bare-number", {"schedule": "@daily", "backoff": {"initialDelay": "10"}}, "spec.backoff.initialDelay"),
    ("short-interval", {"interval": "500ms"}, "interval must be at least 1s"),
    (
        "max-below-initial",
        {"schedule": "@daily", "backoff": {"initialDelay": "2m", "maxDelay": "90s"}},
        "spec.backoff.maxDelay: Invalid value: backoff.maxDelay must not be shorter than backoff.initialDelay",
    ),
    (
        "max-below-default-initial",
        {"schedule": "@daily", "backoff": {"maxDelay": "5s"}},
        "backoff.maxDelay must not be shorter than backoff.initialDelay",
    ),
    (
        "both-schedules",
        {"schedule": "@daily", "interval": "5m"},
        "set exactly one of spec.schedule or spec.interval",
    ),
]


@pytest.mark.parametrize(("name", "spec", "text"), REFUSED, ids=[c[0] for c in REFUSED])
def test_the_api_server_refuses_with_a_clear_message(
    kube: client.ApiClient, namespace: str, crd: str, name: str, spec: Any, text: str
) -> None:
    with pytest.raises(ApiException) as refused:
        _create(client.CustomObjectsApi(kube), namespace, name, {"handler": "echo", **spec})
    assert refused.value.status == 422
    assert text in str(refused.value.body), refused.value.body


def _apply(kubectl_bin: Path, kubeconfig: str, document: dict[str, Any]) -> None:
    done = subprocess.run(
        [
            str(kubectl_bin),
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
        ],
        input=yaml.safe_dump(document),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _before(document: dict[str, Any]) -> dict[str, Any]:
    """The CRD as v1alpha1 had it: the old duration pattern and no duration rules."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if out.get("pattern") == model.DURATION_PATTERN:
                out["pattern"] = BEFORE
                out.pop("x-kubernetes-validations", None)
            if set(out.get("properties", {})) >= {"initialDelay", "maxDelay"}:
                out.pop("x-kubernetes-validations", None)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(document)
    return result


@pytest.fixture
def old_then_new_crd(kubeconfig: str, cluster_bin: Path, crd: str) -> Iterator[Any]:
    kubectl_bin = cluster_bin / "kubectl"
    current = crdgen.build_crd()

    def upgrade() -> None:
        _apply(kubectl_bin, kubeconfig, current)

    _apply(kubectl_bin, kubeconfig, _before(current))
    try:
        yield upgrade
    finally:
        upgrade()


def test_a_task_stored_with_days_keeps_working_after_the_upgrade(
    kube: client.ApiClient, namespace: str, old_then_new_crd: Any
) -> None:
    custom = client.CustomObjectsApi(kube)
    legacy = {
        "schedule": "@daily",
        "handler": "echo",
        "timeout": "1d",
        "backoff": {"initialDelay": "1d", "maxDelay": "2d"},
    }
    wait_for(
        lambda: _create(custom, namespace, "legacy", legacy),
        timeout=30,
        ignore=(ApiException,),
        message="the old CRD to take a duration in days",
    )
    _create(custom, namespace, "legacy-interval", {"interval": "1d", "handler": "echo"})
    old_then_new_crd()

    def refuses_days() -> bool:
        try:
            _create(custom, namespace, "probe", {**legacy, "timeout": "2d"})
        except ApiException as exc:
            return exc.status == 422
        custom.delete_namespaced_custom_object(model.GROUP, model.VERSION, namespace, model.PLURAL, "probe")
        return False

    wait_for(refuses_days, timeout=30, message="the upgraded CRD to refuse days")
    # Unchanged fields are not checked again (CRD validation ratcheting): the owner can suspend it, and the
    # operator can write its status.
    patched = custom.patch_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, "legacy", {"spec": {"suspend": True}}
    )
    assert patched["spec"]["timeout"] == "1d"
    custom.patch_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, "legacy-interval", {"spec": {"suspend": True}}
    )
    custom.patch_namespaced_custom_object_status(
        model.GROUP, model.VERSION, namespace, model.PLURAL, "legacy", {"status": {"phase": "Suspended"}}
    )
    # Editing a duration means writing a Go one.
    with pytest.raises(ApiException) as refused:
        custom.patch_namespaced_custom_object(
            model.GROUP, model.VERSION, namespace, model.PLURAL, "legacy", {"spec": {"timeout": "3d"}}
        )
    assert refused.value.status == 422 and "spec.timeout" in str(refused.value.body)
    custom.patch_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, "legacy", {"spec": {"timeout": "72h"}}
    )
