"""A real node for the local control plane: containerd 2.x, runc and a real kubelet, isolated from the host.

For: ``with RealNode(cluster=...) as node:`` registers a Node that runs pods in real containers from
images imported into its containerd (the pause image and the archives of ``make image``), with working
``kubectl logs`` and ``exec``; and on stop removes everything it made. What it makes, and nothing else:

* a mount namespace (``unshare -m --propagation private``, held by a pause process) in which containerd,
  its shims and the kubelet run. Inside it, tmpfs over /run, /var/lib and /var/log (the paths both
  programs hard-code: /run/containerd, /var/lib/cni, /var/log/containers) and small files bind-mounted
  over the /proc/sys entries the kubelet would otherwise rewrite for the whole machine;
* a cgroup subtree ``/localkube-<pid>-<n>`` in every cgroup hierarchy (cgroup v1 here; cpuset's cpus and
  mems copied from the root so that children can be populated);
* a bridge with one /24 (the node's InternalIP is the bridge's address); pods get addresses from it via
  the bridge and host-local CNI plugins, with no gateway, NAT or forwarding changes, so pods reach this
  machine and each other but nothing beyond;
* a directory under the cluster's: configuration, certificates, containerd's root and state, the kubelet's
  root and the pod logs.

Must not: change the host's sysctls, cgroup mounts, iptables, routes (but its own bridge's) or files
outside its own directory; start when the machine cannot run it without saying exactly why
(``RealNodeUnavailable``); or be replaced silently by the fake kubelet (a caller that falls back must say
so loudly, see ``__main__``).

``dedicated=True`` taints and labels the node (``localkube.dev/real-node``) so that only pods that ask for
it (``placement()``) land there; the fake node next to it keeps all other pods. Without it, the real node
is a normal node, for a cluster that has no other.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from localkube import binaries, pki, ports, procs, rest
from localkube.cluster import Cluster

log = logging.getLogger("localkube.node")

NODE_NAME = "real-node-0"
DEDICATED_KEY = "localkube.dev/real-node"
PAUSE_IMAGE_FILE = "pause.tar"
NODE_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "kubelet")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
# The kubelet sets these for the whole machine unless they already hold these values (its
# setupKernelTunables); inside our namespace they are files of ours with exactly these values.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Hidden behind tmpfs inside the namespace only; containerd and the kubelet need nothing in them.
PRIVATE_TMPFS = ("/run", "/var/lib", "/var/log")
# The kubelet's PATH lacks /usr/sbin on purpose: without an iptables binary it skips the chains it
# would otherwise add to the host's tables (KUBE-IPTABLES-HINT, KUBE-FIREWALL, KUBE-KUBELET-CANARY).
SAFE_PATH = "/usr/bin:/bin"
_SUBNETS = ipaddress.ip_network("10.213.0.0/16")
_BRIDGE_PREFIX = "lk"  # then <owner pid>-<4 hex>
_CGROUP_PREFIX = "localkube-"  # then <owner pid>-<n>
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_taken_subnets: set[ipaddress.IPv4Network] = set()
_subnet_lock = threading.Lock()
_counter = itertools.count()


class RealNodeUnavailable(RuntimeError):
    """This machine cannot run the real node (missing binaries, packages, privileges or cgroups)."""


class RealNodeStartError(RuntimeError):
    """The real node was possible here but did not come up; the message has the tail of every log."""


@dataclass(frozen=True, kw_only=True)
class Footprint:
    """Everything on the host that a node made, for checking that stop removed it all."""

    dir: Path
    bridge: str
    cgroups: tuple[Path, ...]
    mount_namespace: str  # e.g. "mnt:[4026532280]"
    pids: tuple[int, ...]


def placement() -> dict[str, Any]:
    """The pod-spec fields that send a pod to a dedicated real node (merge them into ``spec``)."""
    return {
        "nodeSelector": {DEDICATED_KEY: "true"},
        "tolerations": [{"key": DEDICATED_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }


def image_archives() -> list[Path]:
    """The image archives that ``make image`` leaves for nodes to import (``$CRONLET_IMAGES``)."""
    directory = images_dir()
    return sorted(directory.glob("*.tar")) if directory.is_dir() else []


def images_dir() -> Path:
    env = os.environ.get("CRONLET_IMAGES")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cronlet" / "images"


def check_machine(*, bin_dir: Path | None = None) -> dict[str, Path]:
    """The node's binaries, or RealNodeUnavailable naming every reason this machine cannot run it."""
    problems: list[str] = []
    found: dict[str, Path] = {}
    where = bin_dir if bin_dir is not None else binaries.bin_dir()
    for name in (*NODE_BINARIES, *(f"cni/{p}" for p in CNI_PLUGINS)):
        try:
            found[name] = binaries.find(name, directory=where)
        except binaries.MissingBinaryError:
            problems.append(f"{where / name} is missing: run `tools/build.sh k8s node`")
    pause_image = where / PAUSE_IMAGE_FILE
    found["pause"] = where / "pause"
    found[PAUSE_IMAGE_FILE] = pause_image
    if not pause_image.is_file() or not found["pause"].is_file():
        problems.append(f"{pause_image} is missing: run `tools/build.sh pause`")
    for tool, package in (
        ("runc", "runc"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
    ):
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path is None:
            problems.append(f"{tool} is missing: apt-get install {package}")
        else:
            found[tool] = Path(path)
    if os.geteuid() != 0:
        problems.append("it needs root (mount namespaces, cgroups, a bridge)")
    if not _cgroup_hierarchies():
        problems.append(f"no cgroup v1 hierarchies under {_CGROUP_ROOT}")
    if problems:
        raise RealNodeUnavailable("this machine cannot run the real node:\n  " + "\n  ".join(problems))
    return found


class RealNode:
    """A real kubelet node of ``cluster``. ``with RealNode(cluster=c) as node:``; or start()/stop()."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        name: str = NODE_NAME,
        dedicated: bool = False,
        images: Sequence[Path] | None = None,
        bin_dir: Path | None = None,
        start_timeout: float = 120.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.dedicated = dedicated
        self._images = list(images) if images is not None else image_archives()
        self._bin_dir = bin_dir
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._id = f"{_CGROUP_PREFIX}{os.getpid()}-{next(_counter)}"
        self._dir: Path | None = None
        self._bridge = ""
        self._subnet: ipaddress.IPv4Network | None = None
        self._cgroups: list[Path] = []
        self._holder: procs.Process | None = None
        self._namespace = ""
        self._processes: list[procs.Process] = []
        self._found: dict[str, Path] = {}
        self._stop_lock = threading.Lock()
        self.start_seconds: float | None = None

    # -- what callers use ------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the node is not started")
        return self._dir

    @property
    def address(self) -> str:
        """The node's InternalIP: the host's address on the node's bridge."""
        if self._subnet is None:
            raise RuntimeError("the node is not started")
        return str(self._subnet.network_address + 1)

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def log_files(self) -> dict[str, Path]:
        return {p.name: p.log for p in self._processes}

    def footprint(self) -> Footprint:
        return Footprint(
            dir=self.dir,
            bridge=self._bridge,
            cgroups=tuple(self._cgroups),
            mount_namespace=self._namespace,
            pids=tuple(p.pid for p in [*self._processes, *([self._holder] if self._holder else [])]),
        )

    def dead_processes(self) -> list[str]:
        return [p.name for p in self._processes if not p.alive()]

    def ctr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``ctr -n k8s.io`` against this node's containerd (from the host: the socket is a file)."""
        return subprocess.run(
            [str(self._found["ctr"]), f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def import_image(self, archive: Path) -> None:
        done = self.ctr("images", "import", "--platform=linux/amd64", str(archive))
        if done.returncode != 0:
            raise RealNodeStartError(f"ctr images import {archive} failed: {done.stderr.strip()}")

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> RealNode:
        """Set everything up, start containerd and the kubelet, import the images, wait for Ready."""
        if self._dir is not None:
            raise RuntimeError("this RealNode was already started; make a new one")
        self._found = check_machine(bin_dir=self._bin_dir)
        began = time.monotonic()
        sweep_stale()
        atexit.register(self.stop)
        self._dir = self.cluster.dir / "nodes" / self.name
        self._dir.mkdir(parents=True)
        try:
            self._start(deadline=began + self._start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info(
            "node %s Ready in %.1f s (%s, dir %s)", self.name, self.start_seconds, self.address, self._dir
        )
        return self

    def stop(self) -> None:
        """Kill every process, then remove the cgroups, bridge and directory. Safe to call more than once."""
        with self._stop_lock:
            atexit.unregister(self.stop)
            running, self._processes = self._processes, []
            kubelets = [p for p in running if p.name == "kubelet"]
            # The kubelet first, so that it does not restart the containers killed next.
            procs.stop(kubelets, grace=self._stop_grace)
            self._kill_cgroup_members()
            procs.stop([p for p in running if p.name != "kubelet"], grace=self._stop_grace)
            self._kill_namespace_members()
            if self._holder is not None:
                procs.stop([self._holder], grace=self._stop_grace)
                self._holder = None
            self._remove_cgroups()
            if self._bridge:
                _run("ip", "link", "delete", self._bridge, check=False)
                self._bridge = ""
            if self._subnet is not None:
                with _subnet_lock:
                    _taken_subnets.discard(self._subnet)
            self._delete_node_object()
            # Logs stay only when the cluster keeps its directory (LOCALKUBE_KEEP=1).
            if self._dir is not None and self._dir.exists() and not self.cluster.keep:
                shutil.rmtree(self._dir, ignore_errors=True)

    # -- how it starts ---------------------------------------------------------------------------------

    def _start(self, *, deadline: float) -> None:
        directory = self.dir
        self._make_bridge()
        self._make_cgroups()
        self._enter_namespace()
        certs = self._make_certificates(directory / "pki")
        kubelet_port, healthz_port = ports.free_ports(2)
        containerd_config = self._write_containerd_config(directory / "containerd")
        kubelet_config = self._write_kubelet_config(
            directory / "kubelet-config.json", certs=certs, port=kubelet_port, healthz_port=healthz_port
        )
        kubeconfig = directory / "kubelet.kubeconfig"
        _write_kubeconfig(
            kubeconfig, server=self.cluster.server, ca=self.cluster.pki.ca_cert, cert=certs[0], key=certs[1]
        )
        # containerd finds its shim on PATH; /usr/sbin (iptables) stays out of it, as for the kubelet.
        env = {"PATH": f"{self._binaries_dir()}:{SAFE_PATH}", "HOME": str(directory)}
        self._launch("containerd", [str(self._found["containerd"]), f"--config={containerd_config}"], env=env)
        self._wait(lambda: self.ctr("version", timeout=5).returncode == 0, "containerd to answer", deadline)
        for archive in [self._found[PAUSE_IMAGE_FILE], *self._images]:
            self.import_image(archive)
        self._launch(
            "kubelet",
            [
                str(self._found["kubelet"]),
                f"--config={kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={directory / 'kubelet'}",
                f"--cert-dir={directory / 'kubelet' / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.address}",
                *([f"--node-labels={DEDICATED_KEY}=true"] if self.dedicated else []),
                "--v=1",
            ],
            env={"PATH": SAFE_PATH, "HOME": str(directory)},
        )
        client = rest.Client(self.cluster.credentials, timeout=5.0)
        self._wait(lambda: _node_ready(client, self.name), f"node {self.name} to be Ready", deadline)

    def _make_bridge(self) -> None:
        used = _host_networks()
        with _subnet_lock:
            for candidate in _SUBNETS.subnets(new_prefix=24):
                subnet = ipaddress.IPv4Network(candidate)
                if subnet in _taken_subnets or any(subnet.overlaps(n) for n in used):
                    continue
                _taken_subnets.add(subnet)
                self._subnet = subnet  # so that stop() releases it even if the bridge cannot be made
                break
            else:
                raise RealNodeStartError(f"no free /24 left in {_SUBNETS} for the node's bridge")
        # The owner's pid, so a later start can sweep it if we die unstopped; random, because another
        # process may be making one at the same moment. Link names have 15 characters at most.
        self._bridge = f"{_BRIDGE_PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        gateway = f"{subnet.network_address + 1}/{subnet.prefixlen}"
        _run("ip", "link", "add", self._bridge, "type", "bridge")
        _run("ip", "addr", "add", gateway, "dev", self._bridge)
        _run("ip", "link", "set", self._bridge, "up")

    def _make_cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            path = hierarchy / self._id
            path.mkdir()
            self._cgroups.append(path)
            if (hierarchy / "cpuset.cpus").exists():
                # A new cpuset starts empty, and a cgroup with no cpus or mems cannot take processes.
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((hierarchy / knob).read_text())

    def _enter_namespace(self) -> None:
        holder = procs.start(
            "mount-namespace",
            [
                str(self._found["unshare"]),
                "--mount",
                "--propagation",
                "private",
                "--",
                str(self._found["pause"]),
            ],
            log=self.dir / "namespace.log",
        )
        self._holder = holder
        deadline = time.monotonic() + 10
        # unshare execs the pause program after the unshare: the namespace is ours once the link differs.
        own = os.readlink("/proc/self/ns/mnt")
        while True:
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{holder.pid}/ns/mnt")
                if link != own and _comm(holder.pid) == "pause":
                    self._namespace = link
                    break
            if not holder.alive() or time.monotonic() > deadline:
                raise RealNodeStartError(f"the mount namespace did not start: {procs.tail(holder.log)}")
            time.sleep(0.02)
        sysctls = self.dir / "sysctl"
        sysctls.mkdir()
        script = ["set -e"]
        for path in PRIVATE_TMPFS:
            script.append(f"mount -t tmpfs -o mode=0755 localkube {path}")
        script.append("mkdir -p /var/lib/cni /var/log/containers")
        for entry, value in KUBELET_SYSCTLS.items():
            file = sysctls / entry.replace("/", ".")
            file.write_text(value + "\n")
            script.append(f"mount --bind {file} /proc/sys/{entry}")
        self._nsenter_run("\n".join(script))

    def _nsenter_run(self, script: str) -> None:
        done = subprocess.run(
            [*self._nsenter(), "sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise RealNodeStartError(f"setting up the node's mount namespace failed: {done.stderr.strip()}")

    def _nsenter(self) -> list[str]:
        assert self._holder is not None
        return [str(self._found["nsenter"]), f"--target={self._holder.pid}", "--mount", "--"]

    def _make_certificates(self, directory: Path) -> tuple[Path, Path, Path, Path]:
        directory.mkdir()
        client_cert, client_key = directory / "kubelet-client.crt", directory / "kubelet-client.key"
        serving_cert, serving_key = directory / "kubelet.crt", directory / "kubelet.key"
        ca = self.cluster.pki
        pki.issue(
            ca,
            subject=f"/O=system:nodes/CN=system:node:{self.name}",
            cert=client_cert,
            key=client_key,
            client=True,
        )
        pki.issue(
            ca, subject=f"/CN={self.name}", cert=serving_cert, key=serving_key, server_ips=(self.address,)
        )
        return client_cert, client_key, serving_cert, serving_key

    def _write_containerd_config(self, directory: Path) -> Path:
        directory.mkdir()
        cni_conf = directory / "cni"
        cni_conf.mkdir()
        subnet = self._subnet
        assert subnet is not None
        network = {
            "cniVersion": "1.0.0",
            "name": "localkube",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self._bridge,
                    # No gateway address, NAT or forwarding: those would change the host's network.
                    "isGateway": False,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(subnet), "rangeStart": str(subnet.network_address + 10)}]],
                        "dataDir": str(directory / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }
        (cni_conf / "10-localkube.conflist").write_text(json.dumps(network, indent=2) + "\n")
        cni_bin = self._binaries_dir() / "cni"
        pause = _pause_reference()
        config = f"""\
version = 3
root = "{directory / "root"}"
state = "{directory / "state"}"
oom_score = 0

[grpc]
  address = "{directory / "containerd.sock"}"

[ttrpc]
  address = "{directory / "containerd.sock.ttrpc"}"

[plugins.'io.containerd.internal.v1.opt']
  path = "{directory / "opt"}"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{pause}"

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE here, even for root: runc cannot lower oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  # Pod network namespaces under our state directory, not in the host's /var/run/netns.
  netns_mounts_under_state_dir = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{cni_bin}"]
  conf_dir = "{cni_conf}"
  max_conf_num = 1

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "{self._found["runc"]}"
  SystemdCgroup = false
"""
        path = directory / "config.toml"
        path.write_text(config)
        return path

    def _write_kubelet_config(
        self, path: Path, *, certs: tuple[Path, Path, Path, Path], port: int, healthz_port: int
    ) -> Path:
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.address,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "tlsCertFile": str(certs[2]),
            "tlsPrivateKeyFile": str(certs[3]),
            # Only clients with a certificate from the cluster's CA (the apiserver, admin) get in.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.cluster.pki.ca_cert)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            # cgroup v1 is all this machine has; kubelet 1.37 refuses it unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self._id}",
            "podLogsDir": str(self.dir / "pod-logs"),
            "volumePluginDir": str(self.dir / "volume-plugins"),
            "failSwapOn": False,
            # Not -999: the kubelet cannot lower its own score here, and must not be shielded on a shared machine.
            "oomScoreAdj": 0,
            "protectKernelDefaults": False,
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            # Images are imported, never pulled: the kubelet must not collect them when the disk fills up.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "nodeStatusUpdateFrequency": "10s",
            "registerWithTaints": (
                [{"key": DEDICATED_KEY, "value": "true", "effect": "NoSchedule"}] if self.dedicated else []
            ),
            "maxPods": 110,
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def _binaries_dir(self) -> Path:
        return self._bin_dir if self._bin_dir is not None else binaries.bin_dir()

    def _launch(self, name: str, argv: list[str], *, env: dict[str, str]) -> None:
        process = procs.start(name, [*self._nsenter(), *argv], log=self.dir / f"{name}.log", env=env)
        self._processes.append(process)

    def _wait(self, check: Callable[[], bool], what: str, deadline: float) -> None:
        while True:
            for process in self._processes:
                if not process.alive():
                    raise RealNodeStartError(
                        f"{process.name} exited with code {process.popen.returncode} while waiting for "
                        f"{what}.\n{self._describe_logs()}"
                    )
            with contextlib.suppress(OSError, rest.ApiError, ValueError, subprocess.TimeoutExpired):
                if check():
                    return
            if time.monotonic() > deadline:
                raise RealNodeStartError(
                    f"timed out after {self._start_timeout:.0f} s waiting for {what}.\n{self._describe_logs()}"
                )
            time.sleep(0.2)

    def _describe_logs(self) -> str:
        parts = ["node logs (LOCALKUBE_KEEP=1 keeps them):"]
        for process in self._processes:
            parts.append(f"--- {process.name}: {process.log}\n{procs.tail(process.log, lines=25)}")
        return "\n".join(parts)

    # -- how it stops ----------------------------------------------------------------------------------

    def _kill_cgroup_members(self) -> None:
        """SIGKILL every process in the node's cgroups (the containers) until none is left."""
        self._kill_until_gone(
            lambda: {pid for cgroup in self._cgroups for pid in _cgroup_pids(cgroup)}, where="its cgroups"
        )

    def _kill_namespace_members(self) -> None:
        """SIGKILL what else runs in the node's mount namespace (containerd's shims), the holder excepted."""
        if not self._namespace:
            return
        holder = self._holder.pid if self._holder is not None else -1
        self._kill_until_gone(
            lambda: {pid for pid in _namespace_pids(self._namespace) if pid != holder},
            where="its mount namespace",
        )

    def _kill_until_gone(self, members: Callable[[], set[int]], *, where: str) -> None:
        """SIGKILL the processes ``members`` names, again and again, for at most 15 s, until none is left."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            alive = members()
            if not alive:
                return
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        log.warning("node %s: processes left in %s after 15 s", self.name, where)

    def _remove_cgroups(self) -> None:
        deadline = time.monotonic() + 10
        for top in self._cgroups:
            if not _rmdir_tree(top, deadline=deadline):
                log.warning("node %s: could not remove cgroup %s", self.name, top)
        self._cgroups = []

    def _delete_node_object(self) -> None:
        # The cluster may be gone already (stopped first): then there is nothing to tidy.
        if self._dir is None:
            return
        with contextlib.suppress(Exception):
            client = rest.Client(self.cluster.credentials, timeout=5.0)
            client.request("DELETE", f"/api/v1/nodes/{self.name}")


def sweep_stale() -> None:
    """Remove what nodes of dead owners left (a SIGKILLed test run): containers, shims, cgroups, bridges.

    Their owner's pid is in the names; a live owner's things are never touched. containerd, the kubelet
    and the holder die with their owner (parent-death signal), but shims and containers do not.
    """
    dead: set[int] = set()
    for hierarchy in _cgroup_hierarchies():
        for top in hierarchy.glob(f"{_CGROUP_PREFIX}*"):
            owner = _owner_pid(top.name.removeprefix(_CGROUP_PREFIX))
            if owner is not None and not _alive(owner):
                dead.add(owner)
    links = json.loads(
        subprocess.run(["ip", "-json", "link"], capture_output=True, text=True, check=False).stdout or "[]"
    )
    stale_bridges = []
    for link in links:
        name = str(link.get("ifname") or "")
        owner = _owner_pid(name.removeprefix(_BRIDGE_PREFIX)) if name.startswith(_BRIDGE_PREFIX) else None
        if owner is not None and not _alive(owner):
            dead.add(owner)
            stale_bridges.append(name)
    if not dead:
        return
    log.warning("removing what real nodes of dead processes %s left behind", sorted(dead))
    markers = [f"/{_CGROUP_PREFIX}{pid}-".encode() for pid in dead]
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and any(m in (entry / "cmdline").read_bytes() for m in markers):
                os.kill(int(entry.name), signal.SIGKILL)  # a shim: its -address names the dead node's dir
    for hierarchy in _cgroup_hierarchies():
        for pid in dead:
            for top in hierarchy.glob(f"{_CGROUP_PREFIX}{pid}-*"):
                for member in _cgroup_pids(top):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
    deadline = time.monotonic() + 10
    for hierarchy in _cgroup_hierarchies():
        for pid in dead:
            for top in hierarchy.glob(f"{_CGROUP_PREFIX}{pid}-*"):
                _rmdir_tree(top, deadline=deadline)
    for name in stale_bridges:
        _run("ip", "link", "delete", name, check=False)


def _owner_pid(rest_of_name: str) -> int | None:
    head = rest_of_name.split("-", 1)[0]
    return int(head) if head.isdigit() and "-" in rest_of_name else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmdir_tree(top: Path, *, deadline: float) -> bool:
    """Remove a cgroup and its children, deepest first; retried, as a cgroup stays busy for a moment."""
    while top.exists():
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
        if top.exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    return True


def _pause_reference() -> str:
    return (Path(__file__).resolve().parent.parent / "pause" / "REFERENCE").read_text().strip()


def _write_kubeconfig(path: Path, *, server: str, ca: Path, cert: Path, key: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "localkube", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "kubelet", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "localkube", "context": {"cluster": "localkube", "user": "kubelet"}}],
        "current-context": "localkube",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _node_ready(client: rest.Client, name: str) -> bool:
    node = client.request("GET", f"/api/v1/nodes/{name}")
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _run(*argv: str, check: bool = True) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RealNodeStartError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host has an address or route in, so the node's /24 clashes with none."""
    networks: list[ipaddress.IPv4Network] = []
    for argv in (["ip", "-json", "-4", "route", "show", "table", "all"], ["ip", "-json", "-4", "addr"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
        for entry in json.loads(done.stdout or "[]"):
            candidates = [entry.get("dst")] + [
                f"{a.get('local')}/{a.get('prefixlen')}" for a in entry.get("addr_info") or []
            ]
            for candidate in candidates:
                if not candidate or candidate == "default":
                    continue
                with contextlib.suppress(ValueError):
                    networks.append(ipaddress.ip_network(candidate, strict=False))  # type: ignore[arg-type]
    return [n for n in networks if isinstance(n, ipaddress.IPv4Network)]


def _cgroup_hierarchies() -> list[Path]:
    """The mount points of the host's cgroup hierarchies (v1, and the v2 one of a hybrid setup)."""
    found: list[Path] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] in ("cgroup", "cgroup2"):
                found.append(Path(fields[4]))
    return found if any((p / "tasks").exists() for p in found) else []


def _cgroup_pids(top: Path) -> Iterator[int]:
    # os.walk, not rglob: the kubelet removes cgroups while this walks them, and os.walk passes over one
    # that vanished where rglob raised FileNotFoundError (seen in CI, stopping the real node).
    below = [
        Path(d) / "cgroup.procs" for d, _, names in os.walk(top) if "cgroup.procs" in names and Path(d) != top
    ]
    for procs_file in [top / "cgroup.procs", *below]:
        with contextlib.suppress(OSError):
            for line in procs_file.read_text().split():
                yield int(line)


def _namespace_pids(namespace: str) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "ns" / "mnt") == namespace:
                found.append(int(entry.name))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
