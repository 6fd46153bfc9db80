"""What the benchmarks share: the operator on a local control plane, and a process's CPU time and memory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from localkube import binaries, cluster, kubelet  # noqa: E402
from localkube.ports import free_port  # noqa: E402


@dataclass(frozen=True)
class Bench:
    api: client.ApiClient
    operator: subprocess.Popen[bytes]
    metrics_port: int


@contextlib.contextmanager
def operator_on_local_cluster(
    namespace: str, *, controllers: Sequence[str] = cluster.CONTROLLERS
) -> Iterator[Bench]:
    """A local control plane with a fake kubelet in simulate mode, the CRD, ``namespace``, and a ready
    `cronlet operator` watching that namespace. Everything is stopped on exit."""
    with cluster.Cluster(controllers=controllers) as cp:
        fake = kubelet.FakeKubelet(
            credentials=cp.credentials, work_dir=cp.dir / "kubelet", mode=kubelet.Mode.SIMULATE
        )
        fake.start()
        operator = None
        try:
            kubectl = [str(binaries.find("kubectl")), "--kubeconfig", str(cp.kubeconfig)]
            subprocess.run([*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True)
            subprocess.run(
                [*kubectl, "wait", "--for=condition=Established", "crd/scheduledtasks.cronlet.dev"],
                check=True,
                capture_output=True,
            )
            subprocess.run([*kubectl, "create", "namespace", namespace], check=True, capture_output=True)
            port = free_port()
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cronlet._cli.operator",
                    "operator",
                    "--metrics-port",
                    str(port),
                    "--namespace",
                    namespace,
                ],
                env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            running = operator

            def ready() -> bool:
                if running.poll() is not None:
                    raise SystemExit(f"the operator exited with {running.returncode}")
                return _ready(port)

            wait_until(ready, 60, "the operator's /readyz")
            yield Bench(
                api=config.new_client_from_config(str(cp.kubeconfig)), operator=operator, metrics_port=port
            )
        finally:
            if operator is not None:
                operator.terminate()
                operator.wait(30)
            fake.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every half second; exit the benchmark with ``what`` if it stays false."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
            return True
    except OSError:
        return False


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
