"""A real, throw-away Kubernetes control plane on 127.0.0.1: etcd, apiserver, controller-manager, scheduler.

For: starting the four servers from the prebuilt binaries in a fresh temporary directory with free ports
and their own CA, waiting until the cluster can run Jobs (``/readyz``, the ``default`` namespace and its
``default`` ServiceAccount), and tearing everything down again: processes (whole process groups), the
temporary directory and etcd's data in /dev/shm. Teardown runs on ``with`` exit, ``stop()``, interpreter
exit, Ctrl-C and SIGTERM. Must not: run pods (that is the kubelets' job: ``kubelet.FakeKubelet`` or
``node.RealNode``), build binaries, bind to anything but 127.0.0.1, or touch state outside its own
directories (stale ones of dead owners excepted).

What real workloads need is on: ServiceAccount admission (pods get a token volume; the fake kubelet ignores
volumes), the deployment and replicaset controllers when asked for (``controllers=WORKLOAD_CONTROLLERS``),
the Node authorizer for a real kubelet's own certificate, and a client certificate plus the CA with which
the apiserver reaches a kubelet's API on the node's InternalIP (``kubectl logs``/``exec``). Pods reach the
apiserver only with ``hostNetwork`` at 127.0.0.1 (``api_env``): there is no kube-proxy, so the
``kubernetes`` Service's IP leads nowhere, and the apiserver stays on loopback rather than listening on a
pod-reachable address.

The node-lifecycle controller is deliberately not run: the fake node sends no heartbeats, and that
controller would mark it NotReady and evict its pods.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from localkube import binaries, pki, ports, procs, rest

log = logging.getLogger("localkube.cluster")

# The controllers the tests need, and no more: fewer controllers start faster on two cores.
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "ttl-after-finished-controller",
    "root-ca-certificate-publisher-controller",
    # Folds ClusterRoles labelled aggregate-to-view/edit/admin into those roles (the chart ships such roles).
    "clusterrole-aggregation-controller",
)
# For a cluster with a real node, where Deployments must create pods. Not in the default list: with the
# fake kubelet a Deployment's pods would run as host processes, and tests of the chart rely on a
# Deployment creating no pod there (tests/integration/test_helm_install.py).
WORKLOAD_CONTROLLERS = (*CONTROLLERS, "deployment-controller", "replicaset-controller")

_OWNER_FILE = ".localkube-owner"  # holds the pid of the process that owns the directory
_KEEP_FILE = ".localkube-keep"  # a kept log directory, which the stale sweep must leave alone


class ClusterStartError(RuntimeError):
    """The cluster did not come up; the message has the tail of every server's log."""


class Cluster:
    """A local control plane. Use as ``with Cluster() as cluster:`` or call ``start()``/``stop()``.

    ``keep=True`` (or LOCALKUBE_KEEP=1) keeps the temporary directory, with the logs, after stop.
    Start it from a thread that lives as long as the cluster, normally the main thread: the kernel kills
    the servers when the thread that started them ends (so that they never outlive a killed process).
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        tmp_root: Path | None = None,
        shm_root: Path = Path("/dev/shm"),
        start_timeout: float = 90.0,
        stop_grace: float = 5.0,
        keep: bool | None = None,
        controllers: Sequence[str] = CONTROLLERS,
    ) -> None:
        self._controllers = tuple(controllers)
        self._bin_dir = bin_dir
        self._tmp_root = tmp_root if tmp_root is not None else Path(tempfile.gettempdir())
        self._shm_root = shm_root
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._keep = keep if keep is not None else os.environ.get("LOCALKUBE_KEEP", "") not in ("", "0")
        self._processes: list[procs.Process] = []
        self._restarting: set[str] = set()  # servers being restarted on purpose (not dead)
        self._dir: Path | None = None
        self._data_dir: Path | None = None
        self._pki: pki.Pki | None = None
        self._port = 0
        self._stop_lock = threading.Lock()
        self.start_seconds: float | None = None

    # -- what callers use ------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The temporary directory: PKI, kubeconfig and the servers' logs."""
        if self._dir is None:
            raise RuntimeError("the cluster is not started")
        return self._dir

    @property
    def data_dir(self) -> Path:
        """etcd's data directory in /dev/shm."""
        if self._data_dir is None:
            raise RuntimeError("the cluster is not started")
        return self._data_dir

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate CN=admin, O=system:masters)."""
        return self.dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    @property
    def keep(self) -> bool:
        """Whether stop() keeps the directory with the logs (``keep=True`` or LOCALKUBE_KEEP=1)."""
        return self._keep

    @property
    def port(self) -> int:
        return self._port

    @property
    def pki(self) -> pki.Pki:
        """The cluster's CA and certificates, for a node that needs certificates of its own."""
        if self._pki is None:
            raise RuntimeError("the cluster is not started")
        return self._pki

    @property
    def api_env(self) -> dict[str, str]:
        """What a ``hostNetwork`` pod needs to find the apiserver with its in-cluster configuration."""
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self._port)}

    @property
    def credentials(self) -> rest.Credentials:
        if self._pki is None:
            raise RuntimeError("the cluster is not started")
        return rest.Credentials(
            server=self.server,
            ca_file=self._pki.ca_cert,
            cert_file=self._pki.admin_cert,
            key_file=self._pki.admin_key,
        )

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self._processes}

    @property
    def log_files(self) -> dict[str, Path]:
        return {p.name: p.log for p in self._processes}

    def dead_processes(self) -> list[str]:
        """Names of servers that have exited, for a launcher that watches its cluster."""
        return [p.name for p in self._processes if not p.alive() and p.name not in self._restarting]

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Cluster:
        """Start every server and wait until the cluster can run Jobs. A Cluster starts only once."""
        if self._dir is not None:
            raise RuntimeError("this Cluster was already started; make a new one")
        # Before any file is made, so a missing build costs nothing to report.
        found = binaries.find_all(directory=self._bin_dir)
        began = time.monotonic()
        _sweep_stale(self._tmp_root)
        _sweep_stale(self._shm_root)
        self._dir = Path(tempfile.mkdtemp(prefix=f"localkube-{os.getpid()}-", dir=self._tmp_root))
        (self._dir / _OWNER_FILE).write_text(str(os.getpid()))
        # Same name in /dev/shm: etcd's writes then cost RAM, not disk syncs (see also --unsafe-no-fsync).
        self._data_dir = self._shm_root / self._dir.name
        self._data_dir.mkdir(mode=0o700)
        (self._data_dir / _OWNER_FILE).write_text(str(os.getpid()))
        atexit.register(self.stop)
        interrupt_on_sigterm()
        try:
            self._start(found, deadline=began + self._start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info("cluster up at %s in %.1f s (dir %s)", self.server, self.start_seconds, self._dir)
        return self

    def stop(self) -> None:
        """Kill every server's process group and remove the directories. Safe to call more than once."""
        with self._stop_lock:
            atexit.unregister(self.stop)
            running, self._processes = self._processes, []
            # etcd last: an apiserver whose etcd is gone spends its whole grace period retrying it.
            procs.stop([p for p in running if p.name != "etcd"], grace=self._stop_grace)
            procs.stop([p for p in running if p.name == "etcd"], grace=self._stop_grace)
            if self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
            if self._dir is not None and self._dir.exists() and not (self._dir / _KEEP_FILE).exists():
                if self._keep:
                    (self._dir / _KEEP_FILE).touch()
                    log.warning("kept the cluster directory with its logs: %s", self._dir)
                else:
                    shutil.rmtree(self._dir, ignore_errors=True)

    # -- how it starts ---------------------------------------------------------------------------------

    def _start(self, found: dict[str, Path], *, deadline: float) -> None:
        directory = self.dir
        certs = pki.create(directory / "pki")
        self._pki = certs
        etcd_port, peer_port, self._port, kcm_port, scheduler_port = ports.free_ports(5)
        _write_kubeconfig(self.kubeconfig, server=self.server, certs=certs)

        # etcd and the apiserver start together: the apiserver retries etcd while it initialises, and
        # starting it early saves etcd's start-up time from the total.
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._launch(
            "etcd",
            found["etcd"],
            "--name=localkube",
            f"--data-dir={self.data_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=localkube={peer_url}",
            "--unsafe-no-fsync=true",  # test data is thrown away; fsync only slows every write down
            "--log-level=warn",
            "--quota-backend-bytes=1073741824",
        )
        self._launch(
            "kube-apiserver",
            found["kube-apiserver"],
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The endpoint reconciler would publish the advertise address as the `kubernetes` Service's
            # endpoint, and refuses loopback addresses at start: nothing here needs that endpoint.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self._port}",
            f"--cert-dir={certs.ca_cert.parent}",
            f"--tls-cert-file={certs.serving_cert}",
            f"--tls-private-key-file={certs.serving_key}",
            f"--client-ca-file={certs.ca_cert}",
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={certs.service_account_public_key}",
            f"--service-account-signing-key-file={certs.service_account_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # Node: a real kubelet acts with its own certificate (system:node:<name>), as on a real cluster.
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            # TaintNodesByCondition: it taints every new Node not-ready, and only the node-lifecycle
            # controller, which we do not run, would remove the taint.
            "--disable-admission-plugins=TaintNodesByCondition",
            # A real node's kubelet serves its API on the node's bridge address with a certificate from
            # our CA; the Hostname address (tried first by default) would need a name that resolves.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={certs.ca_cert}",
            f"--kubelet-client-certificate={certs.kubelet_client_cert}",
            f"--kubelet-client-key={certs.kubelet_client_key}",
            "--profiling=false",
        )
        self._wait(lambda: _etcd_healthy(etcd_port), "etcd /health", deadline)
        client = rest.Client(self.credentials, timeout=5.0)
        self._wait(lambda: client.get_text("/readyz").strip() == "ok", "kube-apiserver /readyz", deadline)

        # The controller-manager gives up when the apiserver is not healthy within 10 s of its start,
        # which a loaded two-core machine can exceed: so it starts only once /readyz answers.
        kubeconfig = str(self.kubeconfig)
        self._launch(
            "kube-controller-manager",
            found["kube-controller-manager"],
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(self._controllers)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            f"--root-ca-file={certs.ca_cert}",
            f"--service-account-private-key-file={certs.service_account_key}",
            # Every controller then acts as the kubeconfig's admin, which needs no per-controller tokens.
            "--use-service-account-credentials=false",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--profiling=false",
        )
        self._launch(
            "kube-scheduler",
            found["kube-scheduler"],
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={scheduler_port}",
            "--profiling=false",
        )
        # The default ServiceAccount is made by the controller-manager: its presence shows that one works.
        self._wait(
            lambda: _exists(client, "/api/v1/namespaces/default/serviceaccounts/default"),
            "the default ServiceAccount in namespace default",
            deadline,
        )
        self._wait(lambda: _scheduler_healthy(scheduler_port), "kube-scheduler /healthz", deadline)

    def _launch(self, name: str, binary: Path, *args: str) -> None:
        process = procs.start(name, [str(binary), *args], log=self.dir / f"{name}.log")
        self._processes.append(process)

    # -- fault injection -------------------------------------------------------------------------------

    def restart(self, name: str, *, timeout: float = 60.0) -> float:
        """Restart one server in place (same binary, flags, ports and data) while the rest stays up; return
        the seconds until it answered again. ``name``: ``kube-apiserver`` (or ``apiserver``) or ``etcd``.

        For tests of what clients of a real cluster live through: an apiserver restart (every watch breaks,
        resourceVersions may be too old: 410 Gone, re-lists) and an etcd restart (the apiserver answers 5xx
        until etcd is back).
        """
        wanted = {"apiserver": "kube-apiserver"}.get(name, name)
        if wanted not in ("kube-apiserver", "etcd"):
            raise ValueError(f"cannot restart {name!r}: only kube-apiserver and etcd")
        index = next((i for i, p in enumerate(self._processes) if p.name == wanted), None)
        if index is None:
            raise RuntimeError(f"{wanted} is not running in this cluster")
        old = self._processes[index]
        argv = [str(arg) for arg in old.popen.args][len(procs.die_with_parent()) :]  # type: ignore[union-attr]
        began = time.monotonic()
        self._restarting.add(wanted)
        try:
            procs.stop([old], grace=self._stop_grace)
            self._processes[index] = procs.start(wanted, argv, log=old.log)
        finally:
            self._restarting.discard(wanted)
        deadline = began + timeout
        if wanted == "etcd":
            port = int(next(a for a in argv if a.startswith("--listen-client-urls=")).rsplit(":", 1)[1])
            self._wait(lambda: _etcd_healthy(port), "etcd /health after its restart", deadline)
        client = rest.Client(self.credentials, timeout=5.0)
        self._wait(
            lambda: client.get_text("/readyz").strip() == "ok", f"/readyz after restarting {wanted}", deadline
        )
        took = time.monotonic() - began
        log.info("restarted %s in %.1f s", wanted, took)
        return took

    def _wait(self, check: Callable[[], bool], what: str, deadline: float) -> None:
        while True:
            for process in self._processes:
                if not process.alive():
                    raise ClusterStartError(
                        f"{process.name} exited with code {process.popen.returncode} while waiting for "
                        f"{what}.\n{self._describe_logs()}"
                    )
            with contextlib.suppress(OSError, http.client.HTTPException, rest.ApiError, ValueError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"timed out after {self._start_timeout:.0f} s waiting for {what}.\n"
                    + self._describe_logs()
                )
            time.sleep(0.1)

    def _describe_logs(self) -> str:
        keep_hint = "" if self._keep else " (removed on stop; set LOCALKUBE_KEEP=1 to keep them)"
        parts = [f"server logs{keep_hint}:"]
        for process in self._processes:
            parts.append(f"--- {process.name}: {process.log}\n{procs.tail(process.log, lines=25)}")
        return "\n".join(parts)


def _write_kubeconfig(path: Path, *, server: str, certs: pki.Pki) -> None:
    # Data embedded, not file paths: the kubeconfig stays usable when copied elsewhere.
    def data(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localkube",
                "cluster": {"server": server, "certificate-authority-data": data(certs.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": data(certs.admin_cert),
                    "client-key-data": data(certs.admin_key),
                },
            }
        ],
        "contexts": [{"name": "localkube", "context": {"cluster": "localkube", "user": "admin"}}],
        "current-context": "localkube",
    }
    # JSON is YAML, so every kubeconfig reader takes it, and no YAML writer is needed here.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _etcd_healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status == 200 and isinstance(body, dict) and body.get("health") == "true"
    finally:
        conn.close()


def _scheduler_healthy(port: int) -> bool:
    # The scheduler serves a self-signed certificate of its own; /healthz is readable without credentials.
    context = _ssl_unverified()
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2.0, context=context)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        return response.status == 200 and response.read().strip() == b"ok"
    finally:
        conn.close()


def _ssl_unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _exists(client: rest.Client, path: str) -> bool:
    try:
        client.request("GET", path)
    except rest.ApiError as error:
        if error.status == 404:
            return False
        raise
    return True


def _sweep_stale(root: Path) -> None:
    """Remove directories left by a localkube whose owner died without cleaning up (kill -9, OOM)."""
    for candidate in root.glob("localkube-*"):
        owner = candidate / _OWNER_FILE
        if not owner.is_file() or (candidate / _KEEP_FILE).exists():
            continue  # not ours, or kept on purpose
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            continue
        log.info("removing stale %s (owner pid %d is gone)", candidate, pid)
        shutil.rmtree(candidate, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the Ctrl-C path, so with-blocks, fixture finalizers and atexit all run.
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, unless someone else already handles it.

    Only the main thread may set signal handlers; elsewhere the pdeathsig set by ``procs`` still kills
    the servers when this process dies.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_interrupt)
