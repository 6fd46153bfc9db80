"""Fixtures for operator tests: the CRD installed once, one operator subprocess shared by the session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from kit import ROOT, OperatorProcess, Tasks
from kubernetes import client


@pytest.fixture(scope="session")
def cluster_bin() -> Path:
    from localkube import binaries

    return binaries.bin_dir()


@pytest.fixture(scope="session")
def crd(kubeconfig: str, cluster_bin: Path) -> str:
    path = ROOT / "crds" / "scheduledtasks.cronlet.dev.yaml"
    subprocess.run(
        [
            str(cluster_bin / "kubectl"),
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(cluster_bin / "kubectl"),
            "--kubeconfig",
            kubeconfig,
            "wait",
            "--for=condition=Established",
            "crd/scheduledtasks.cronlet.dev",
            "--timeout=60s",
        ],
        check=True,
        capture_output=True,
    )
    return str(path)


@pytest.fixture(scope="session")
def operator_process(
    kubeconfig: str, crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture
def operator(operator_process: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """The shared operator, running at the start of the test (a test may stop or kill it)."""
    operator_process.start()
    yield operator_process
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"--- operator log (tail) ---\n{operator_process.log_tail(120)}")
    operator_process.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    rep = yield
    if call.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


@pytest.fixture
def tasks(kube: client.ApiClient, namespace: str, operator: OperatorProcess) -> Tasks:
    return Tasks(kube, namespace)


__all__ = ["wait_for"]
