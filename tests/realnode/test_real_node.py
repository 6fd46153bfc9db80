"""The real node: a real kubelet and containerd run pods in real containers of the image `make image` built.

Every test here uses real servers and real containers: nothing is faked but the second node next to the
real one. They fail (never skip) when the real node cannot start; see tests/realnode/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from realkit import IMAGE, RealCluster, host_state

from localkube import node as localkube_node
from localkube import rest

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


def pod(name: str, command: list[str], *, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": command,
                    # Real containers are accounted outside the test runner's cgroup: keep them small.
                    "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
                }
            ],
            **(spec if spec is not None else localkube_node.placement()),
        },
    }


def get_pod(real: RealCluster, namespace: str, name: str) -> dict[str, Any]:
    out = real.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def phase(real: RealCluster, namespace: str, name: str) -> str:
    return str(get_pod(real, namespace, name).get("status", {}).get("phase", ""))


def test_the_real_node_is_ready_with_containerd_2(real: RealCluster) -> None:
    out = real.kubectl("get", "nodes", "-o", "wide").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    row = rows.get(real.node.name, "")
    assert re.search(r"\sReady\s", row), out
    assert re.search(r"\scontainerd://2\.\d+\.\d+", row), out
    assert real.node.address in row, out  # the InternalIP is the node's bridge address


def test_a_pod_runs_in_the_built_image_and_its_logs_are_readable(real: RealCluster, namespace: str) -> None:
    # What only a real container shows: the image's venv, and the image's numeric USER (the fake kubelet
    # would run this as root on the host with the host's python).
    script = "import os, sys; print('hello from', sys.prefix, 'as', os.getuid())"
    real.kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod("hello", ["python", "-c", script]))
    )
    wait_for(
        lambda: phase(real, namespace, "hello") in ("Succeeded", "Failed"),
        90,
        message=lambda: json.dumps(get_pod(real, namespace, "hello").get("status"), indent=1),
    )
    status = get_pod(real, namespace, "hello")
    assert status["spec"]["nodeName"] == real.node.name
    assert status["status"]["phase"] == "Succeeded", status["status"]
    (container,) = status["status"]["containerStatuses"]
    assert container["containerID"].startswith("containerd://"), container
    assert container["state"]["terminated"]["exitCode"] == 0
    logs = real.kubectl("logs", "-n", namespace, "hello").stdout
    assert logs == "hello from /opt/venv as 65532\n"


def test_exec_in_a_running_pod(real: RealCluster, namespace: str) -> None:
    real.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod("sleeper", ["sleep", "600"])))
    real.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/sleeper", "--timeout=90s")
    done = real.kubectl(
        "exec", "-n", namespace, "sleeper", "--", "python", "-c", "import socket; print(socket.gethostname())"
    )
    assert done.stdout == "sleeper\n"
    # The token that ServiceAccount admission added is mounted, as on any real cluster.
    token = real.kubectl(
        "exec", "-n", namespace, "sleeper", "--", "ls", "/var/run/secrets/kubernetes.io/serviceaccount"
    ).stdout.split()
    assert {"ca.crt", "namespace", "token"} <= set(token)


def test_pods_that_do_not_ask_for_the_real_node_stay_on_the_fake_one(
    real: RealCluster, namespace: str
) -> None:
    real.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod("plain", ["true"], spec={})))
    wait_for(lambda: phase(real, namespace, "plain") == "Succeeded", 60, message="pod plain did not succeed")
    assert get_pod(real, namespace, "plain")["spec"]["nodeName"] == real.fake.node_name


def test_the_running_node_has_changed_nothing_on_the_host(real: RealCluster) -> None:
    now = host_state().without_node(real.node.footprint())
    before = real.before
    assert now.sysctls == before.sysctls
    assert now.firewall == before.firewall
    assert now.netns == before.netns
    assert now.default_paths == before.default_paths
    # The node's mounts live in its own namespace: the host's mount table has none of them.
    assert not [m for m in now.mounts - before.mounts if m[1] != "nsfs"]
    assert not [m for m in now.mounts if str(real.node.dir) in m[0]]


def test_stop_removes_everything_the_node_made(real: RealCluster) -> None:
    """A second node on the same control plane, with a running pod, then stopped: nothing of it is left."""
    before = host_state()
    second = localkube_node.RealNode(
        cluster=real.control_plane, name="real-node-1", dedicated=True, images=[]
    )
    second.start()
    try:
        footprint = second.footprint()
        client = rest.Client(real.control_plane.credentials, timeout=10.0)
        # The pause image is the only one this node has: a pod of it runs until killed.
        manifest = pod("held", ["/pause"])
        manifest["spec"]["containers"][0]["image"] = "localkube.invalid/pause:1"
        manifest["spec"]["nodeName"] = second.name
        real.kubectl("apply", "-n", "default", "-f", "-", stdin=json.dumps(manifest))
        real.kubectl("wait", "-n", "default", "--for=condition=Ready", "pod/held", "--timeout=90s")
        # The pod's veth hangs on the node's bridge while it runs.
        assert [name for name, master in host_state().links.items() if master == footprint.bridge]
    finally:
        second.stop()
    try:
        after = host_state()
        alive = [pid for pid in footprint.pids if os.path.exists(f"/proc/{pid}")]
        assert not alive, f"processes of the node still running: {alive}"
        assert not localkube_node._namespace_pids(footprint.mount_namespace), (
            "processes left in its namespace"
        )
        assert not [c for c in footprint.cgroups if c.exists()], "cgroups left"
        assert footprint.bridge not in after.links, "bridge left"
        assert not [name for name, master in after.links.items() if master == footprint.bridge], "veths left"
        assert not footprint.dir.exists(), "directory left"
        assert after.sysctls == before.sysctls
        assert after.firewall == before.firewall
        assert after.netns == before.netns
        assert after.default_paths == before.default_paths
        assert after.mounts == before.mounts
        assert after.cgroups == before.cgroups
        with pytest.raises(rest.ApiError) as gone:
            client.request("GET", f"/api/v1/nodes/{second.name}")
        assert gone.value.status == 404
    finally:
        real.kubectl("delete", "pod", "-n", "default", "held", "--force", "--grace-period=0", check=False)


# Run in a child process that the test then SIGKILLs: a cluster and a node with a running pod, so that
# shims and containers outlive their owner (containerd, the kubelet and the holder die with it).
_ORPHAN_SCRIPT = """
import json, subprocess, sys
from localkube import binaries, cluster, node
with cluster.Cluster() as cp, node.RealNode(cluster=cp, name="orphan", images=[]) as n:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "held", "namespace": "default"},
           "spec": {"nodeName": "orphan", "containers": [{"name": "main", "image": "localkube.invalid/pause:1",
                    "imagePullPolicy": "Never", "resources": {"limits": {"memory": "32Mi"}}}]}}
    kubectl = [str(binaries.find("kubectl")), f"--kubeconfig={cp.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True, check=True, capture_output=True)
    wait = ["wait", "--for=condition=Ready", "pod/held", "--timeout=90s"]
    subprocess.run([*kubectl, *wait], check=True, capture_output=True)
    print(json.dumps({"bridge": n.footprint().bridge, "cgroups": [str(c) for c in n.footprint().cgroups]}), flush=True)
    sys.stdin.read()
"""


def test_a_later_start_sweeps_what_a_killed_owner_left(real: RealCluster) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(localkube_node.__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, "the child's node did not come up"
        left = json.loads(line)
    finally:
        child.kill()
        child.wait()
    marker = f"/localkube-{child.pid}-".encode()

    def shims() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found

    # What SIGKILL leaves: the shim (and its container) outlive their owner, and so do cgroups and bridge.
    assert shims(), "expected the pod's shim to outlive its killed owner"
    assert all(Path(c).exists() for c in left["cgroups"])
    localkube_node.sweep_stale()
    wait_for(lambda: not shims(), 10, message=lambda: f"shims left: {shims()}")
    assert not [c for c in left["cgroups"] if Path(c).exists()]
    assert left["bridge"] not in host_state().links
    # The child's control-plane directories would go at the next Cluster start; the test owns them.
    for root in (Path(tempfile.gettempdir()), Path("/dev/shm")):
        for directory in root.glob(f"localkube-{child.pid}-*"):
            shutil.rmtree(directory, ignore_errors=True)
