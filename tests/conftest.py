"""Fixtures for Cronlet's tests that need a real Kubernetes control plane.

For: ``cluster`` (one per session: a reachable local cluster named by $KUBECONFIG, or a localkube
``Cluster`` with a fake kubelet in execute mode started here), ``kubeconfig``, ``kube`` (a
kubernetes ApiClient), ``kubectl`` (the pinned kubectl bound to the cluster) and ``namespace`` (a fresh
one per test). Must not: start anything for tests not marked ``@pytest.mark.cluster`` (unit runs,
``-m "not cluster"``, never touch the binaries), reuse a cluster that is not on this machine, or skip a
cluster test because the binaries are missing (a missing build is an error, not a pass).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import helpers
import pytest

from localkube import binaries, procs
from localkube import cluster as localkube_cluster
from localkube import kubelet as localkube_kubelet

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CLUSTER_FIXTURES = frozenset({"cluster", "kubeconfig", "kube", "kubectl", "namespace", "restart_server"})
_START_KEY = pytest.StashKey[str]()


@dataclass(frozen=True, kw_only=True)
class LocalCluster:
    """The session's cluster. ``control_plane`` and ``kubelet`` are None when $KUBECONFIG was reused."""

    kubeconfig: str
    reused: bool
    control_plane: localkube_cluster.Cluster | None = None
    kubelet: localkube_kubelet.FakeKubelet | None = None


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test using the cluster without the marker would start it even under -m "not cluster".
    unmarked = [
        item.nodeid
        for item in items
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("cluster") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the local cluster but are not marked @pytest.mark.cluster:\n  "
            + "\n  ".join(unmarked)
        )


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[LocalCluster]:
    """A running cluster whose fake kubelet executes pod commands locally."""
    reusable = os.environ.get("KUBECONFIG", "")
    if reusable and _reusable(reusable):
        # Assumed to be `python -m localkube up` (execute mode), as docs/development.md says.
        pytestconfig.stash[_START_KEY] = f"reused the running cluster of KUBECONFIG={reusable}"
        yield LocalCluster(kubeconfig=reusable, reused=True)
        return
    control_plane = localkube_cluster.Cluster()
    control_plane.start()
    try:
        fake = localkube_kubelet.FakeKubelet(
            credentials=control_plane.credentials,
            work_dir=control_plane.dir / "kubelet",
            mode=localkube_kubelet.Mode.EXECUTE,
            pod_env={"KUBECONFIG": str(control_plane.kubeconfig)},
        )
        fake.start()
        try:
            pytestconfig.stash[_START_KEY] = (
                f"started a cluster in {control_plane.start_seconds:.1f} s ({control_plane.dir}; "
                "LOCALKUBE_KEEP=1 keeps its logs)"
            )
            yield LocalCluster(
                kubeconfig=str(control_plane.kubeconfig),
                reused=False,
                control_plane=control_plane,
                kubelet=fake,
            )
        finally:
            fake.stop()
    finally:
        control_plane.stop()


Restart = Callable[[str], float]
Freeze = Callable[[str, float], None]


def _server_pid(cluster: LocalCluster, name: str) -> int:
    if cluster.control_plane is not None:
        return cluster.control_plane.pids[name]
    # A reused cluster's servers belong to its `localkube up`: find the one process of that name.
    found = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _comm(p) == name]
    assert len(found) == 1, f"cannot tell which {name} is the reused cluster's: pids {found}"
    return int(found[0])


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def freeze_server(cluster: LocalCluster) -> Iterator[Freeze]:
    """``freeze_server("etcd" | "kube-apiserver", seconds)``: SIGSTOP that server, wait, SIGCONT it. Requests
    hang meanwhile rather than fail, as with a stalled disk or a partitioned etcd."""
    frozen: list[int] = []

    def freeze(name: str, seconds: float) -> None:
        pid = _server_pid(cluster, name)
        os.kill(pid, signal.SIGSTOP)
        frozen.append(pid)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
            frozen.remove(pid)

    yield freeze
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="session")
def restart_server(cluster: LocalCluster) -> Restart:
    """``restart_server("kube-apiserver" | "etcd")``: restart that server of the session's cluster in place
    (same ports and data); the seconds until it answered again. A reused cluster is asked through
    ``python -m localkube restart``."""

    def restart(name: str) -> float:
        if cluster.control_plane is not None:
            return cluster.control_plane.restart(name)
        done = subprocess.run(
            [sys.executable, "-m", "localkube", "restart", name],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"localkube restart {name}: {done.stdout}{done.stderr}"
        return float(done.stdout.split()[1])

    return restart


@pytest.fixture(scope="session")
def kubeconfig(cluster: LocalCluster) -> str:
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> Iterator[ApiClient]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def kubectl(cluster: LocalCluster) -> Kubectl:
    """``kubectl("get", "nodes")``: the pinned kubectl against the session's cluster."""

    def run(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return helpers.kubectl(cluster.kubeconfig, *args, **options)

    return run


@pytest.fixture
def namespace(kube: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards without waiting for it to go."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    with helpers.throwaway_namespace(
        kube, f"t-{base}-{secrets.token_hex(3)}", {"localkube.dev/test": "true"}
    ) as name:
        yield name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed cluster test, attach the kubelet's log and the test's pod logs to the report."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", {})
        local = funcargs.get("cluster")
        if isinstance(local, LocalCluster) and local.kubelet is not None:
            report.sections.append(("localkube", _debug_text(local, funcargs.get("namespace"))))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    started = config.stash.get(_START_KEY, None)
    if started is not None:
        terminalreporter.write_line(f"localkube: {started}")


def _debug_text(local: LocalCluster, namespace: object) -> str:
    assert local.kubelet is not None and local.control_plane is not None
    parts = [f"kubelet log {local.kubelet.log_file}:", procs.tail(local.kubelet.log_file, lines=40)]
    if isinstance(namespace, str):
        for path in sorted((local.kubelet.pods_dir / namespace).glob("*/*.log")):
            parts += [f"--- pod log {path}:", procs.tail(path, lines=20)]
    parts.append("server logs: " + ", ".join(str(p) for p in local.control_plane.log_files.values()))
    return "\n".join(parts)


def _reusable(kubeconfig: str) -> bool:
    """Whether $KUBECONFIG names one kubeconfig of a cluster on this machine that answers /readyz."""
    if os.pathsep in kubeconfig or not Path(kubeconfig).is_file():
        return False
    try:
        kubectl = str(binaries.find("kubectl"))
    except binaries.MissingBinaryError:
        return False  # the start below reports the missing build
    view = subprocess.run(
        [
            kubectl,
            f"--kubeconfig={kubeconfig}",
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    host = urllib.parse.urlsplit(view.stdout.strip()).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        # Tests create and delete namespaces: never against a cluster that may matter to someone.
        warnings.warn(
            f"KUBECONFIG={kubeconfig} is not a local cluster ({host}); starting a fresh one", stacklevel=1
        )
        return False
    ready = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", "--request-timeout=5s", "get", "--raw=/readyz"],
        capture_output=True,
        text=True,
        check=False,
    )
    return ready.returncode == 0 and ready.stdout.strip() == "ok"
