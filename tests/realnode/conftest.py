"""Fixtures for the real-node tests: a control plane of their own with a fake node and a real one.

For: ``real`` (one per session): a localkube ``Cluster``, the fake kubelet in execute mode (``fake-node-0``,
which keeps every pod that does not ask for the real node) and a dedicated ``RealNode`` (``real-node-0``,
tainted; pods reach it with ``node.placement()``), plus a snapshot of the host taken before the node
started (``realkit.host_state()``).

Must not: skip or fall back to the fake kubelet when the real node cannot start: that is a failure, with
the reason (a missing build, package or image says which command makes it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import helpers
import pytest
from realkit import RealCluster, host_state

from localkube import cluster as localkube_cluster
from localkube import kubelet as localkube_kubelet
from localkube import node as localkube_node


@pytest.fixture(scope="session")
def real() -> Iterator[RealCluster]:
    archives = localkube_node.image_archives()
    if not any(a.name == "cronlet.tar" for a in archives):
        pytest.fail(
            f"no cronlet image archive in {localkube_node.images_dir()}: run `make image` first",
            pytrace=False,
        )
    try:
        localkube_node.check_machine()
    except localkube_node.RealNodeUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    before = host_state()
    with localkube_cluster.Cluster(controllers=localkube_cluster.WORKLOAD_CONTROLLERS) as control_plane:
        fake = localkube_kubelet.FakeKubelet(
            credentials=control_plane.credentials,
            work_dir=control_plane.dir / "kubelet",
            mode=localkube_kubelet.Mode.EXECUTE,
        )
        with fake, localkube_node.RealNode(cluster=control_plane, dedicated=True, images=archives) as node:
            yield RealCluster(control_plane=control_plane, fake=fake, node=node, before=before)


@pytest.fixture
def namespace(real: RealCluster) -> Iterator[str]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=real.kubeconfig)
    name = f"t-real-{os.urandom(3).hex()}"
    try:
        with helpers.throwaway_namespace(api, name, {"localkube.dev/test": "true"}):
            yield name
    finally:
        api.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, attach the tail of the real node's logs and of the kubelet's pod logs."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        local = getattr(item, "funcargs", {}).get("real")
        if isinstance(local, RealCluster):
            parts = []
            for name, path in local.node.log_files.items():
                lines = [line for line in path.read_text(errors="replace").splitlines() if line[:1] in "EW"]
                parts += [f"--- {name} ({path}), errors and warnings:", *lines[-20:]]
            report.sections.append(("real node", "\n".join(parts)))
    return report
