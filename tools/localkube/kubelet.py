"""A fake node and kubelet for the local control plane, running as threads of the calling process.

For: registering Node ``fake-node-0`` (Ready, untainted, room for 250 pods), watching the pods bound to it
and playing the kubelet's part in their life: Running, then Succeeded or Failed with a terminated
container state (exit code, reason, termination message), restarts per restartPolicy, and the deletion
of pods that got a deletionTimestamp (without it, Job deletion, garbage collection and namespace
deletion would wait forever). Must not: touch pods bound to other nodes, heartbeat (the node-lifecycle
controller is not run), or pretend to support pod features it does not (initContainers, image
entrypoints, unsupported env sources fail the pod with a reason instead).

Two modes:

* ``execute``: each container's command and args run here as a local process, with the pod's env on top
  of this process's own (so PATH finds local console scripts such as ``cronlet-execute``), in a per-pod
  directory, in a private mount namespace where the container's terminationMessagePath is bind-mounted
  to a per-pod file: concurrent pods never share /dev/termination-log. Needs root (mount namespaces).
* ``simulate``: nothing runs; pods finish as their labels say (``localkube.dev/outcome``:
  succeed, fail -> exit 1, fail-permanent -> exit 2; ``localkube.dev/duration-ms``; the annotation
  ``localkube.dev/termination-message`` becomes the message).
"""

from __future__ import annotations

import enum
import http.client
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

from localkube import podspec, procs, rest

log = logging.getLogger("localkube.kubelet")

NODE_NAME = "fake-node-0"
Json = rest.Json


class Mode(enum.StrEnum):
    EXECUTE = "execute"
    SIMULATE = "simulate"


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): re-list."""


class FakeKubelet:
    """``with FakeKubelet(credentials=cluster.credentials, work_dir=...) as kubelet:``; or start()/stop()."""

    def __init__(
        self,
        *,
        credentials: rest.Credentials,
        work_dir: Path,
        mode: Mode = Mode.EXECUTE,
        node_name: str = NODE_NAME,
        pod_env: Mapping[str, str] | None = None,
    ) -> None:
        # A client of its own: stop() aborts this client's watches and no one else's.
        self.client = rest.Client(credentials, timeout=10.0)
        self.work_dir = work_dir
        self.mode = mode
        self.node_name = node_name
        self._base_env = {**os.environ, **(pod_env or {})}
        self._runtime: _Runtime = _Execute() if mode is Mode.EXECUTE else _Simulate()
        self._workers: dict[str, _PodWorker] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._handler: logging.Handler | None = None

    @property
    def log_file(self) -> Path:
        return self.work_dir / "kubelet.log"

    @property
    def pods_dir(self) -> Path:
        """Per-pod directories (``<namespace>/<name>-<uid>``): cwd, ``<container>.log`` and messages."""
        return self.work_dir / "pods"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wait_stopping(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True at once if the kubelet is stopping."""
        return self._stopping.wait(seconds)

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, *, timeout: float = 30.0) -> FakeKubelet:
        """Register the node and start watching; returns once the first list of pods is handled."""
        if isinstance(self._runtime, _Execute):
            self._runtime.check()
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.log_file)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._handler)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)  # the log file is the first place to look when a pod misbehaves
        self._register_node()
        self._thread = threading.Thread(target=self._watch_loop, name="localkube-kubelet", daemon=True)
        self._thread.start()
        if not self._synced.wait(timeout):
            self.stop()
            raise RuntimeError(
                f"the fake kubelet did not list its pods within {timeout} s; see {self.log_file}"
            )
        log.info("node %s registered; kubelet in %s mode", self.node_name, self.mode)
        return self

    def stop(self) -> None:
        """Stop watching, kill every pod process (their pods stay as they are), join the threads."""
        self._stopping.set()
        thread = self._thread
        deadline = time.monotonic() + 10
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            # Repeated: a watch opened just after one abort would otherwise block until its timeout.
            self.client.abort_watches()
            thread.join(0.2)
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.kill(grace=2.0)
        for worker in workers:
            worker.join(timeout=10)
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    # -- the node --------------------------------------------------------------------------------------

    def _register_node(self) -> None:
        version = str(self.client.request("GET", "/version").get("gitVersion") or "v0.0.0")
        manifest = podspec.node_manifest(self.node_name, now=_now(), kubelet_version=version)
        try:
            self.client.request("POST", "/api/v1/nodes", body=manifest)
        except rest.ApiError as error:
            if error.status != 409:
                raise
            # Left by an earlier kubelet on a reused cluster: make it Ready and schedulable again.
            path = f"/api/v1/nodes/{self.node_name}"
            self.client.request(
                "PATCH",
                path,
                body={"spec": {"taints": None, "unschedulable": None}},
                content_type=rest.MERGE_PATCH,
            )
            self.client.request(
                "PATCH",
                f"{path}/status",
                body={"status": manifest["status"]},
                content_type=rest.STRATEGIC_MERGE_PATCH,
            )

    # -- the watch -------------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        while not self._stopping.is_set():
            try:
                listed = self.client.request("GET", "/api/v1/pods", query=selector)
                version = str(podspec.meta(listed).get("resourceVersion"))
                self._relisted(listed.get("items") or [])
                self._synced.set()
                while not self._stopping.is_set():
                    version = self._watch(selector, version)
            except _Gone:
                log.info("watch expired (410 Gone); re-listing")
            except Exception as error:
                if self._stopping.is_set():
                    return
                log.warning("pod watch failed (%s); re-listing in 1 s", error)
                self._stopping.wait(1.0)

    def _watch(self, selector: Mapping[str, str], version: str) -> str:
        """One watch request; returns the resourceVersion to resume from when the server ends it."""
        query = {
            **selector,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "30",
        }
        for event in self.client.watch("/api/v1/pods", query=query, read_timeout=60.0):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Gone()
                raise rest.ApiError(
                    status=int(obj.get("code") or 500),
                    reason=str(obj.get("reason")),
                    message=str(obj.get("message")),
                )
            version = str(podspec.meta(obj).get("resourceVersion") or version)
            if kind != "BOOKMARK":
                self._observe(str(kind), obj)
        return version

    def _relisted(self, pods: list[Json]) -> None:
        present = {str(podspec.meta(pod).get("uid")) for pod in pods}
        with self._lock:
            vanished = [uid for uid in self._workers if uid not in present]
        for uid in vanished:
            self._observe("DELETED", {"metadata": {"uid": uid}})
        for pod in pods:
            self._observe("ADDED", pod)

    def _observe(self, kind: str, pod: Json) -> None:
        uid = str(podspec.meta(pod).get("uid"))
        with self._lock:
            worker = self._workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    del self._workers[uid]
                    worker.vanish()
                return
            if worker is not None and not worker.abandoned(pod):
                worker.observe(pod)
                return
            if podspec.is_terminal(pod):
                return  # finished, perhaps under an earlier kubelet: nothing left to do
            # A Running pod without a live worker lost its processes (a kubelet that is gone, or a worker
            # that failed): it is failed, or, if deleting, deleted.
            worker = _PodWorker(self, pod, orphan=worker is not None or podspec.phase(pod) == "Running")
            self._workers[uid] = worker
        worker.start()

    # -- what workers use ------------------------------------------------------------------------------

    def plan(self, pod: Json) -> list[podspec.ContainerPlan]:
        podspec.check_supported(pod)
        return [self._runtime.plan(pod, container, self) for container in podspec.containers(pod)]

    def run(
        self,
        plan: podspec.ContainerPlan,
        *,
        pod: Json,
        pod_dir: Path,
        killed: threading.Event,
        grace: Callable[[], float],
    ) -> podspec.Termination:
        return self._runtime.run(plan, pod=pod, pod_dir=pod_dir, killed=killed, grace=grace)

    def lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        """A ConfigMap's or Secret's data, for env and envFrom; None when it does not exist."""
        plural = "configmaps" if kind == "ConfigMap" else "secrets"
        try:
            obj = self.client.request("GET", f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except rest.ApiError as error:
            if error.status == 404:
                return None
            raise
        return {str(k): str(v) for k, v in (obj.get("data") or {}).items()}

    @property
    def base_env(self) -> Mapping[str, str]:
        return self._base_env


class _PodWorker:
    """The life of one pod on this node, in its own thread (containers get threads of their own).

    It has a thread rather than being one: a Thread subclass inherits private methods (Thread._delete
    runs at thread exit) that a method name here could silently override.
    """

    def __init__(self, kubelet: FakeKubelet, pod: Json, *, orphan: bool) -> None:
        self.thread = threading.Thread(target=self._main, name=f"pod {podspec.key(pod)}", daemon=True)
        self._kubelet = kubelet
        self._pod = pod
        self._orphan = orphan
        self._key = podspec.key(pod)
        self._path = (
            f"/api/v1/namespaces/{podspec.meta(pod).get('namespace')}/pods/{podspec.meta(pod).get('name')}"
        )
        self.dir = kubelet.pods_dir / podspec.pod_dir_name(pod)
        # Set when the pod's processes must end: deletionTimestamp, pod gone, or kubelet stopping.
        self._killed = threading.Event()
        self._grace = podspec.grace_seconds(pod)
        self._status_lock = threading.Lock()
        # The kubelet's view of every container's status, sent whole in each patch: containerStatuses
        # has no merge key, so a patch listing one container would drop the others.
        self._statuses: dict[str, Json] = {}
        self._vanished = False
        self._deleted = False  # this worker sent the pod's final DELETE
        if podspec.deleting(pod):
            self._killed.set()

    def observe(self, pod: Json) -> None:
        self._pod = pod
        if podspec.deleting(pod) and not self._killed.is_set():
            self._grace = podspec.grace_seconds(pod)
            if self.thread.is_alive():
                log.info("pod %s: deletion requested; stopping its containers", self._key)
            self._killed.set()

    def abandoned(self, pod: Json) -> bool:
        """Whether this worker ended (on an error) leaving a deleting pod that still needs a kubelet."""
        return (
            not self.thread.is_alive()
            and not self._deleted
            and podspec.deleting(pod)
            and not podspec.is_terminal(pod)
        )

    def vanish(self) -> None:
        """The pod is gone from the API: kill at once and clean up its directory."""
        self._vanished = True
        self.kill(grace=0.0)
        if not self.thread.is_alive():
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self, *, grace: float) -> None:
        self._grace = min(self._grace, grace)
        self._killed.set()

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _main(self) -> None:
        try:
            self._run()
        except rest.ApiError as error:
            if error.status == 404:
                log.info("pod %s: gone from the API", self._key)
            else:
                log.exception("pod %s: API error", self._key)
        except Exception:
            log.exception("pod %s: kubelet error", self._key)
        finally:
            if self._vanished:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self) -> None:
        pod = self._pod
        if self._orphan:
            if podspec.deleting(pod):
                self._delete()
            else:
                lost = podspec.UnsupportedPod(
                    "KubeletRestarted",
                    "the localkube kubelet that ran this pod stopped; its processes are gone",
                )
                self._patch(podspec.unsupported_status(pod, lost, now=_now()))
            return
        if self._killed.is_set():
            self._delete()  # deleted before it started
            return
        try:
            plans = self._kubelet.plan(pod)
        except podspec.UnsupportedPod as error:
            log.warning("pod %s: cannot run: %s", self._key, error.message)
            self._patch(podspec.unsupported_status(pod, error, now=_now()))
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        running = podspec.running_status(pod, now=_now())
        self._statuses = {str(c["name"]): c for c in running["status"]["containerStatuses"]}
        self._patch(running)
        log.info("pod %s: running (%s)", self._key, ", ".join(shlex.join(p.argv) or p.name for p in plans))
        results: dict[str, podspec.ContainerOutcome] = {}
        threads = [
            threading.Thread(
                target=self._run_container, args=(plan, results), name=f"{self.thread.name}/{plan.name}"
            )
            for plan in plans
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._kubelet.stopping:
            return  # the whole cluster is going away: no more API writes
        status = podspec.terminal_status(self._pod, results)
        log.info(
            "pod %s: %s (%s)",
            self._key,
            status["status"]["phase"],
            ", ".join(f"{name} exit {o.termination.exit_code}" for name, o in results.items()),
        )
        self._patch(status)
        if podspec.deleting(self._pod):
            self._delete()

    def _run_container(
        self, plan: podspec.ContainerPlan, results: dict[str, podspec.ContainerOutcome]
    ) -> None:
        policy = podspec.restart_policy(self._pod)
        restarts = 0
        previous: podspec.Termination | None = None
        container = next(c for c in podspec.containers(self._pod) if c.get("name") == plan.name)
        while True:
            termination = self._kubelet.run(
                plan, pod=self._pod, pod_dir=self.dir, killed=self._killed, grace=lambda: self._grace
            )
            done = self._killed.is_set() or not podspec.should_restart(policy, termination.exit_code)
            if done or self._killed.wait(podspec.restart_delay(restarts + 1)):
                results[plan.name] = podspec.ContainerOutcome(
                    termination=termination, restarts=restarts, previous=previous
                )
                return
            restarts += 1
            previous = termination
            log.info("pod %s: restarting %s (restart %d)", self._key, plan.name, restarts)
            # Update and send under one lock, so a slower patch never overwrites a newer list.
            with self._status_lock:
                self._statuses[plan.name] = podspec.running_container(
                    container, started_at=_now(), restarts=restarts, last=termination
                )
                self._patch({"status": {"containerStatuses": list(self._statuses.values())}})

    def _patch(self, body: Json) -> None:
        # Like the real kubelet's status manager, a status the API server did not take is sent again:
        # one lost patch would otherwise leave the pod Running forever (an etcd stall of 25 s did that).
        until_answered(
            lambda: self._kubelet.client.request(
                "PATCH", f"{self._path}/status", body=body, content_type=rest.STRATEGIC_MERGE_PATCH
            ),
            given_up=lambda: self._vanished or self._kubelet.stopping,
            wait=self._kubelet.wait_stopping,
            what=f"pod {self._key}: status patch",
        )

    def _delete(self) -> None:
        self._deleted = True
        try:
            until_answered(
                lambda: self._kubelet.client.request(
                    "DELETE", self._path, body=podspec.delete_options(self._pod)
                ),
                given_up=lambda: self._kubelet.stopping,
                wait=self._kubelet.wait_stopping,
                what=f"pod {self._key}: delete",
            )
        except rest.ApiError as error:
            if error.status not in (404, 409):  # 409: the uid precondition failed, a new pod has the name
                raise
        log.info("pod %s: deleted (grace 0)", self._key)


def transient(error: Exception) -> bool:
    """Whether a request may succeed if sent again: no answer, a timeout, throttling or a server error."""
    if isinstance(error, rest.ApiError):
        return error.status in (408, 429) or error.status >= 500
    return isinstance(error, (OSError, http.client.HTTPException))


def until_answered(
    call: Callable[[], object],
    *,
    given_up: Callable[[], bool],
    wait: Callable[[float], bool],
    what: str,
    first_delay: float = 0.2,
    max_delay: float = 5.0,
) -> None:
    """Call ``call`` until it returns, retrying transient errors with doubling delays.

    Ends quietly once ``given_up()`` is true or ``wait`` reports a stop; other errors propagate.
    """
    delay = first_delay
    while True:
        try:
            call()
            return
        except Exception as error:
            if not transient(error):
                raise
            if given_up():
                return
            log.warning("%s failed (%s); again in %.1f s", what, error, delay)
        if wait(delay) or given_up():
            return
        delay = min(delay * 2, max_delay)


class _Runtime(Protocol):
    def plan(self, pod: Json, container: Json, kubelet: FakeKubelet) -> podspec.ContainerPlan: ...

    def run(
        self,
        plan: podspec.ContainerPlan,
        *,
        pod: Json,
        pod_dir: Path,
        killed: threading.Event,
        grace: Callable[[], float],
    ) -> podspec.Termination: ...


class _Simulate:
    def plan(self, pod: Json, container: Json, kubelet: FakeKubelet) -> podspec.ContainerPlan:
        podspec.simulated(pod)  # reject bad labels before the pod is reported Running
        return podspec.plan_container(pod, container, base_env={}, lookup=kubelet.lookup, with_command=False)

    def run(
        self,
        plan: podspec.ContainerPlan,
        *,
        pod: Json,
        pod_dir: Path,
        killed: threading.Event,
        grace: Callable[[], float],
    ) -> podspec.Termination:
        outcome = podspec.simulated(pod)
        started = _now()
        if killed.wait(outcome.duration_seconds):
            # What a container killed by the SIGTERM of a deletion reports.
            return podspec.Termination(exit_code=143, message="", started_at=started, finished_at=_now())
        return podspec.Termination(
            exit_code=outcome.exit_code, message=outcome.message, started_at=started, finished_at=_now()
        )


# Runs inside the private mount namespace: bind the pod's own file over the termination-message path,
# then become the container's command. $1 = the pod's file, $2 = the path, the rest = command and args.
_MOUNT_AND_EXEC = '{mount} --bind -- "$1" "$2" && shift 2 && exec "$@"'


class _Execute:
    def __init__(self) -> None:
        self._unshare = shutil.which("unshare") or ""
        self._mount = shutil.which("mount") or ""
        self._sh = shutil.which("sh") or ""

    def check(self) -> None:
        missing = [
            n for n, p in (("unshare", self._unshare), ("mount", self._mount), ("sh", self._sh)) if not p
        ]
        if missing:
            raise RuntimeError(f"execute mode needs {', '.join(missing)} (util-linux) on PATH")
        if os.geteuid() != 0:
            raise RuntimeError(
                "execute mode needs root: each pod gets a private mount namespace so that its "
                "terminationMessagePath is a file of its own; use --mode simulate otherwise"
            )

    def plan(self, pod: Json, container: Json, kubelet: FakeKubelet) -> podspec.ContainerPlan:
        return podspec.plan_container(
            pod, container, base_env=kubelet.base_env, lookup=kubelet.lookup, with_command=True
        )

    def run(
        self,
        plan: podspec.ContainerPlan,
        *,
        pod: Json,
        pod_dir: Path,
        killed: threading.Event,
        grace: Callable[[], float],
    ) -> podspec.Termination:
        pod_dir.mkdir(parents=True, exist_ok=True)
        message_file = pod_dir / f"{plan.name}.termination-log"
        message_file.write_bytes(b"")  # each run starts with an empty message, as a new container would
        _ensure_file(Path(plan.termination_path))
        script = _MOUNT_AND_EXEC.format(mount=shlex.quote(self._mount))
        argv = [
            *procs.die_with_parent(),
            self._unshare,
            "--mount",
            "--propagation",
            "private",
            "--",
            self._sh,
            "-c",
            script,
            "localkube-mount",
            str(message_file),
            plan.termination_path,
            *plan.argv,
        ]
        log_path = pod_dir / f"{plan.name}.log"
        with log_path.open("ab") as out:
            offset = out.tell()
            started = _now()
            process = subprocess.Popen(
                argv,
                cwd=pod_dir,
                env=dict(plan.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a kill reaches its children too
            )
        returncode = _wait(process, killed=killed, grace=grace)
        finished = _now()
        exit_code = podspec.exit_code_of(returncode)
        with message_file.open("rb") as f:
            message = podspec.termination_message(f.read(podspec.MAX_MESSAGE_BYTES))
        if not message and plan.fallback_to_logs and exit_code != 0:
            with log_path.open("rb") as f:
                f.seek(offset)
                message = podspec.fallback_message(f.read())
        return podspec.Termination(
            exit_code=exit_code, message=message, started_at=started, finished_at=finished
        )


def _wait(process: subprocess.Popen[bytes], *, killed: threading.Event, grace: Callable[[], float]) -> int:
    """Wait for the process; when ``killed`` is set, SIGTERM its group, then SIGKILL after the grace."""
    while not procs.exited(process.pid):
        if killed.wait(0.05):
            procs.signal_group(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace()
            while not procs.exited(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            break
    # Whatever the command left in its group goes too, as a container's processes end with it. The
    # leader is not reaped yet, so the group id cannot belong to anyone else.
    procs.signal_group(process.pid, signal.SIGKILL)
    return process.wait()


def _ensure_file(path: Path) -> None:
    """The bind mount needs an existing file at the target; made once, shared by all pods (never written)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)


def _now() -> datetime:
    return datetime.now(UTC)
