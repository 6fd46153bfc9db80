"""What the benchmarks share: a local control plane, the operator as a process, and a process's CPU and memory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from localkube import binaries, cluster, crds  # noqa: E402
from localkube.ports import free_port  # noqa: E402


@contextlib.contextmanager
def local_control_plane(
    namespaces: Sequence[str], *, controllers: Sequence[str] = cluster.CONTROLLERS
) -> Iterator[cluster.Cluster]:
    """A local control plane with a fake kubelet in simulate mode, the CRD and ``namespaces``. The fake
    kubelet runs in a process of its own, so that its threads do not share the benchmark's interpreter
    lock with the watch that times the Jobs. Everything is stopped on exit."""
    with cluster.Cluster(controllers=controllers) as cp:
        fake = subprocess.Popen(
            [sys.executable, "-c", _KUBELET, str(cp.kubeconfig.parent), cp.server],
            env={**os.environ, "PYTHONPATH": str(ROOT / "tools")},
            stdout=subprocess.PIPE,
        )
        try:
            assert fake.stdout is not None
            if fake.stdout.readline().strip() != b"ready":
                raise SystemExit("the fake kubelet did not start")
            kubectl = [str(binaries.find("kubectl")), "--kubeconfig", str(cp.kubeconfig)]
            crds.apply(kubectl, ROOT / "crds", name="scheduledtasks.cronlet.dev")
            for namespace in namespaces:
                subprocess.run([*kubectl, "create", "namespace", namespace], check=True, capture_output=True)
            yield cp
        finally:
            fake.terminate()
            fake.wait(30)


# The fake kubelet's process: the cluster's credentials from its directory, "ready" once it has listed pods.
_KUBELET = """
import signal, sys, threading
from pathlib import Path
from localkube import kubelet, rest
d = Path(sys.argv[1])
creds = rest.Credentials(server=sys.argv[2], ca_file=d / "pki/ca.crt", cert_file=d / "pki/admin.crt",
                         key_file=d / "pki/admin.key")
fake = kubelet.FakeKubelet(credentials=creds, work_dir=d / "kubelet", mode=kubelet.Mode.SIMULATE)
fake.start(timeout=60)
print("ready", flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
fake.stop()
"""


class Operator:
    """`cronlet operator` watching one namespace, as a process of its own."""

    def __init__(self, kubeconfig: Path, namespace: str, args: Sequence[str] = ()) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # time.time() of the last start

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, wait: bool = True, timeout: float = 600) -> float:
        """Start it; with ``wait``, return the seconds until /readyz answered."""
        self.port = free_port()
        self.started = time.time()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cronlet._cli.operator",
                "operator",
                "--metrics-port",
                str(self.port),
                "--namespace",
                self.namespace,
                *self.args,
            ],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            wait_until(self.ready, timeout, "the operator's /readyz", interval=0.1)
        return time.time() - self.started

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise SystemExit(f"the operator exited with {self.proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                return True
        except OSError:
            return False

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(signum)
            self.proc.wait(60)
            self.proc = None


@contextlib.contextmanager
def operator_on_local_cluster(
    namespace: str, *, controllers: Sequence[str] = cluster.CONTROLLERS, args: Sequence[str] = ()
) -> Iterator[tuple[cluster.Cluster, Operator]]:
    """A local control plane (``local_control_plane``) and a ready operator watching ``namespace``."""
    with local_control_plane([namespace], controllers=controllers) as cp:
        operator = Operator(cp.kubeconfig, namespace, args)
        try:
            operator.start(timeout=60)
            yield cp, operator
        finally:
            operator.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, *, interval: float = 0.5) -> None:
    """Poll ``predicate`` every ``interval`` seconds; exit the benchmark with ``what`` if it stays false."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> tuple[int, int]:
    """Resident and peak resident memory of a process, in KiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def settle(pids: Sequence[int], *, below: float = 0.05, window: float = 3.0, timeout: float = 300) -> float:
    """Wait until every process in ``pids`` used less than ``below`` of a core over ``window`` seconds;
    return the seconds waited (the timeout if they never did)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        before = [cpu_seconds(p) for p in pids]
        time.sleep(window)
        if all(cpu_seconds(p) - b < below * window for p, b in zip(pids, before, strict=True)):
            break
    return time.monotonic() - began
