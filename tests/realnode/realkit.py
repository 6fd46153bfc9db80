"""What the real-node tests share: a snapshot of the host to compare, and the session's cluster handle.

For: ``host_state()`` (sysctls, firewall rules, mounts, links, network namespaces, the default paths of
kubelet and containerd, localkube cgroups) and ``RealCluster``. Must not: change anything on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helpers

from localkube import cluster as localkube_cluster
from localkube import kubelet as localkube_kubelet
from localkube import node as localkube_node

# Paths a kubelet or containerd writes to by default; the node must create none of them on the host.
DEFAULT_PATHS = (
    "/run/containerd",
    "/run/netns",
    "/run/nri",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
    "/usr/libexec/kubernetes",
)
SYSCTLS = (*localkube_node.KUBELET_SYSCTLS, "net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding")
IMAGE = "cronlet:0.1.0"  # what the chart installs by default; `make image` imports it under this name


@dataclass(frozen=True, kw_only=True)
class HostState:
    """What a node could change on the host, in a comparable form."""

    sysctls: dict[str, str]
    firewall: str
    mounts: frozenset[tuple[str, str]]
    links: dict[str, str]  # link name -> its master ("" for none)
    netns: tuple[str, ...]
    default_paths: dict[str, bool]
    cgroups: frozenset[str]

    def without_node(self, footprint: localkube_node.Footprint) -> HostState:
        """This state minus what a running node legitimately owns (its bridge, its veths, its cgroups)."""
        return HostState(
            sysctls=self.sysctls,
            firewall=self.firewall,
            mounts=self.mounts,
            links={k: v for k, v in self.links.items() if footprint.bridge not in (k, v)},
            netns=self.netns,
            default_paths=self.default_paths,
            cgroups=frozenset(
                c for c in self.cgroups if Path(c).name not in {p.name for p in footprint.cgroups}
            ),
        )


def host_state() -> HostState:
    def read(path: str) -> str:
        try:
            return Path("/proc/sys", path).read_text().strip()
        except OSError as error:
            return f"<{error.strerror}>"

    firewall = ""
    for tool in ("iptables-save", "ip6tables-save"):
        found = shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
        if found is not None:
            done = subprocess.run([found], capture_output=True, text=True, check=False)
            # The header and footer carry the time of the dump.
            firewall += "".join(line + "\n" for line in done.stdout.splitlines() if not line.startswith("#"))
    mounts = frozenset(
        (line.split()[4], line.split(" - ")[1].split()[0])
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    links_json = json.loads(
        subprocess.run(["ip", "-json", "link"], capture_output=True, text=True, check=True).stdout or "[]"
    )
    links = {str(link["ifname"]): str(link.get("master") or "") for link in links_json}
    netns = tuple(sorted(p.name for p in Path("/run/netns").iterdir())) if Path("/run/netns").is_dir() else ()
    cgroups = frozenset(
        str(child)
        for hierarchy in Path("/sys/fs/cgroup").iterdir()
        if hierarchy.is_dir()
        for child in hierarchy.iterdir()
        if child.is_dir() and child.name.startswith("localkube-")
    )
    return HostState(
        sysctls={s: read(s) for s in SYSCTLS},
        firewall=firewall,
        mounts=mounts,
        links=links,
        netns=netns,
        default_paths={p: os.path.lexists(p) for p in DEFAULT_PATHS},
        cgroups=cgroups,
    )


@dataclass(frozen=True, kw_only=True)
class RealCluster:
    control_plane: localkube_cluster.Cluster
    fake: localkube_kubelet.FakeKubelet
    node: localkube_node.RealNode
    before: HostState

    @property
    def kubeconfig(self) -> str:
        return str(self.control_plane.kubeconfig)

    def kubectl(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return helpers.kubectl(self.kubeconfig, *args, **options)
