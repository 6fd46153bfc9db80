"""Command line: ``python -m localkube up|down|env``.

For: a developer's long-lived local cluster. ``up`` starts the control plane and a node (``--node fake``:
the fake kubelet, the default; ``--node real``: a real kubelet and containerd, ``node.RealNode``;
``--node auto``: the real node, or, only on a machine that cannot run it, the fake kubelet with a loud
warning saying why), prints
``export KUBECONFIG=...`` and stays in the foreground until Ctrl-C or SIGTERM; it records its pid and
kubeconfig in a state file so that ``down`` (from another shell) can stop it and ``env`` can print the
export line again. Must not: start a second cluster over a running one, or signal a process that is not
the recorded localkube.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from localkube import binaries, cluster, control, kubelet, node, procs

log = logging.getLogger("localkube")


@dataclass(frozen=True, kw_only=True)
class State:
    pid: int
    kubeconfig: str
    dir: str
    mode: str
    node: str = "fake"
    containerd_socket: str = ""  # the real node's, for `make image` to import into


def default_state_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cronlet" / "localkube.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkube", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a cluster and a fake kubelet; stay in the foreground")
    up.add_argument(
        "--mode",
        choices=[m.value for m in kubelet.Mode],
        default=kubelet.Mode.EXECUTE.value,
        help="the fake kubelet's mode",
    )
    up.add_argument(
        "--node",
        choices=["fake", "real", "auto"],
        default="fake",
        help="fake kubelet, real node (containerd + kubelet), or real if this machine can run it",
    )
    down = commands.add_parser("down", help="stop the cluster started by `up`")
    down.add_argument("--timeout", type=float, default=60.0, help="seconds to wait before SIGKILL")
    env = commands.add_parser("env", help="print the export line of the running cluster")
    restart = commands.add_parser("restart", help="restart one server of the running cluster in place")
    restart.add_argument("server", choices=["apiserver", "kube-apiserver", "etcd"])
    for command in (up, down, env, restart):
        command.add_argument("--state-file", type=Path, default=default_state_file())
    args = parser.parse_args(argv)
    if args.command == "up":
        if args.node != "fake":
            return _up_real(args.state_file, fallback=args.node == "auto", mode=kubelet.Mode(args.mode))
        return _up(args.state_file, kubelet.Mode(args.mode))
    if args.command == "down":
        return _down(args.state_file, timeout=args.timeout)
    if args.command == "restart":
        return _restart(args.state_file, args.server)
    return _env(args.state_file)


def _up(state_file: Path, mode: kubelet.Mode) -> int:
    running = _running(state_file)
    if running is not None:
        print(
            f"localkube is already running (pid {running.pid}): export KUBECONFIG={running.kubeconfig}\n"
            "stop it first with: python -m localkube down",
            file=sys.stderr,
        )
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cluster.interrupt_on_sigterm()
    try:
        with cluster.Cluster() as control_plane:
            fake = kubelet.FakeKubelet(
                credentials=control_plane.credentials,
                work_dir=control_plane.dir / "kubelet",
                mode=mode,
                # Pods run on this machine, not in a cluster network: the admin kubeconfig stands in for
                # the in-cluster service-account credentials a real pod would have.
                pod_env={"KUBECONFIG": str(control_plane.kubeconfig)},
            )
            with fake:
                _write_state(
                    state_file,
                    State(
                        pid=os.getpid(),
                        kubeconfig=str(control_plane.kubeconfig),
                        dir=str(control_plane.dir),
                        mode=mode.value,
                    ),
                )
                print(f"export KUBECONFIG={control_plane.kubeconfig}", flush=True)
                logs = ", ".join(f"{name}: {path}" for name, path in control_plane.log_files.items())
                log.info(
                    "cluster up in %.1f s; kubelet (%s mode) log: %s; pod logs under %s; server logs: %s",
                    control_plane.start_seconds or 0.0,
                    mode.value,
                    fake.log_file,
                    fake.pods_dir,
                    logs,
                )
                log.info("Ctrl-C here or `python -m localkube down` elsewhere stops it")
                control.serve(control_plane.dir, control_plane.restart)
                return _watch(control_plane)
    except KeyboardInterrupt:
        log.info("stopped")
        return 0
    except (binaries.MissingBinaryError, cluster.ClusterStartError) as error:
        print(f"localkube: {error}", file=sys.stderr)
        return 1
    finally:
        state = _read_state(state_file)
        if state is not None and state.pid == os.getpid():
            state_file.unlink(missing_ok=True)


def _up_real(state_file: Path, *, fallback: bool, mode: kubelet.Mode) -> int:
    try:
        node.check_machine()
    except node.RealNodeUnavailable as error:
        if not fallback:
            print(f"localkube: {error}", file=sys.stderr)
            return 1
        banner = "!" * 100
        print(
            f"{banner}\nlocalkube: THE REAL NODE CANNOT RUN ON THIS MACHINE; FALLING BACK TO THE FAKE KUBELET.\n"
            f"Pods will run as host processes, ignoring their image and securityContext.\n{error}\n{banner}",
            file=sys.stderr,
            flush=True,
        )
        return _up(state_file, mode)
    running = _running(state_file)
    if running is not None:
        print(f"localkube is already running (pid {running.pid}); stop it first", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cluster.interrupt_on_sigterm()
    try:
        with (
            cluster.Cluster(controllers=cluster.WORKLOAD_CONTROLLERS) as control_plane,
            node.RealNode(cluster=control_plane) as real,
        ):
            _write_state(
                state_file,
                State(
                    pid=os.getpid(),
                    kubeconfig=str(control_plane.kubeconfig),
                    dir=str(control_plane.dir),
                    mode="real",
                    node=real.name,
                    containerd_socket=str(real.containerd_socket),
                ),
            )
            print(f"export KUBECONFIG={control_plane.kubeconfig}", flush=True)
            log.info(
                "cluster up in %.1f s, node %s Ready in %.1f s (%s); logs: %s",
                control_plane.start_seconds or 0.0,
                real.name,
                real.start_seconds or 0.0,
                real.address,
                ", ".join(str(p) for p in [*control_plane.log_files.values(), *real.log_files.values()]),
            )
            log.info("hostNetwork pods reach the apiserver with %s", control_plane.api_env)
            log.info("Ctrl-C here or `python -m localkube down` elsewhere stops it")
            control.serve(control_plane.dir, control_plane.restart)
            return _watch(control_plane, real)
    except KeyboardInterrupt:
        log.info("stopped")
        return 0
    except (binaries.MissingBinaryError, cluster.ClusterStartError, node.RealNodeStartError) as error:
        print(f"localkube: {error}", file=sys.stderr)
        return 1
    finally:
        state = _read_state(state_file)
        if state is not None and state.pid == os.getpid():
            state_file.unlink(missing_ok=True)


def _watch(control_plane: cluster.Cluster, real: node.RealNode | None = None) -> int:
    """Stay in the foreground; end with an error when a server dies, so a broken cluster is noticed."""
    logs = {**control_plane.log_files, **(real.log_files if real is not None else {})}
    while True:
        dead = control_plane.dead_processes() + (real.dead_processes() if real is not None else [])
        if dead:
            for name in dead:
                path = logs[name]
                log.error("%s exited; last lines of %s:\n%s", name, path, procs.tail(path))
            return 1
        time.sleep(1.0)


def _down(state_file: Path, *, timeout: float) -> int:
    state = _read_state(state_file)
    if state is None:
        print(f"no localkube running (no {state_file})")
        return 0
    if not _is_localkube(state.pid):
        print(f"no localkube running (pid {state.pid} is gone); removed {state_file}")
        state_file.unlink(missing_ok=True)
        return 0
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_localkube(state.pid):
        if time.monotonic() > deadline:
            # Its servers die with it (parent-death signal); its directories go at the next start.
            os.kill(state.pid, signal.SIGKILL)
            print(
                f"localkube (pid {state.pid}) did not stop within {timeout:.0f} s; killed it", file=sys.stderr
            )
            state_file.unlink(missing_ok=True)
            return 1
        time.sleep(0.2)
    state_file.unlink(missing_ok=True)
    print(f"localkube (pid {state.pid}) stopped")
    return 0


def _restart(state_file: Path, server: str) -> int:
    running = _running(state_file)
    if running is None:
        print("no localkube running; start one with: python -m localkube up", file=sys.stderr)
        return 1
    answer = control.request_restart(Path(running.dir), server)
    print(answer)
    return 0 if answer.startswith("ok") else 1


def _env(state_file: Path) -> int:
    running = _running(state_file)
    if running is None:
        print("no localkube running; start one with: python -m localkube up", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={running.kubeconfig}")
    return 0


def _running(state_file: Path) -> State | None:
    state = _read_state(state_file)
    return state if state is not None and _is_localkube(state.pid) else None


def _read_state(state_file: Path) -> State | None:
    try:
        raw = json.loads(state_file.read_text())
        return State(
            pid=int(raw["pid"]),
            kubeconfig=str(raw["kubeconfig"]),
            dir=str(raw["dir"]),
            mode=str(raw["mode"]),
            node=str(raw.get("node") or "fake"),
            containerd_socket=str(raw.get("containerd_socket") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(state_file: Path, state: State) -> None:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state), indent=2) + "\n")
    temporary.replace(state_file)  # atomic: `env` never reads half a file


def _is_localkube(pid: int) -> bool:
    """Whether ``pid`` is alive and is a localkube: a recycled pid must not receive our SIGTERM."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"localkube" in cmdline


if __name__ == "__main__":
    sys.exit(main())
