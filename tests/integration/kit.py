"""Helpers for operator integration tests: the operator as a subprocess, and ScheduledTask reads/writes.

The operator runs the way a user runs it (``cronlet operator``), against the real local control plane.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helpers import wait_for
from kubernetes import client, watch

from localkube.ports import free_port

GROUP, VERSION, PLURAL = "cronlet.dev", "v1alpha1", "scheduledtasks"
ROOT = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """``cronlet operator`` in a subprocess: start, stop (SIGTERM), kill (SIGKILL), scrape."""

    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path,
        extra_args: list[str] | None = None,
        *,
        run_as: int | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_dir / "operator.log"
        self.extra_args = extra_args or []
        self.run_as = run_as  # a uid (and gid) to run as, with no supplementary groups, as in the image
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.held = False  # kept stopped by `stopped()`: a start meanwhile is a test's bug, not a restart

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.held:
            # Seen: a fixture that stopped the shared operator for its own replicas, then the `tasks` fixture
            # (which wants the shared operator) started it again, a third writer on the replicas' tasks.
            raise AssertionError(
                "the operator is held stopped by `stopped()` and must not run meanwhile (take the `operator` "
                "fixture before a fixture that stops it)"
            )
        if self.running:
            return
        self.port = free_port()
        self.starts += 1
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        prefix: list[str] = []
        if self.run_as is not None:
            # As the image runs it: a numeric user, HOME that does not exist (see the Dockerfile), and no login
            # name in the environment (getpass.getuser() reads those before it asks the passwd database).
            prefix = ["setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as}", "--clear-groups", "--"]
            env["HOME"] = "/nonexistent"
            for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
                env.pop(name, None)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        log.write(f"\n===== start #{self.starts} at {datetime.now(UTC).isoformat()} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "cronlet._cli.operator",
                "operator",
                "--metrics-port",
                str(self.port),
                "--executor-image",
                "cronlet:test",
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(self._ready, timeout=60, message=lambda: f"operator not ready; log:\n{self.log_tail()}")

    def _ready(self) -> bool:
        if not self.running:
            raise AssertionError(
                f"operator exited with {self.proc and self.proc.returncode}:\n{self.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def log_of_last_start(self) -> str:
        """What the operator printed since its most recent start."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[text.rfind("\n===== start #") :]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Tasks:
    """ScheduledTask reads and writes in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(
        self,
        name: str,
        spec: dict[str, Any],
        *,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ScheduledTask",
            "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
            "spec": spec,
        }
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body))

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec})

    def annotate(self, name: str, annotations: dict[str, str]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"metadata": {"annotations": annotations}}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def jobs(self, name: str) -> list[Any]:
        items = self.batch.list_namespaced_job(self.ns, label_selector=f"cronlet.dev/task={name}").items
        return sorted(items, key=lambda j: (j.metadata.creation_timestamp, j.metadata.name))

    def settle(self, name: str) -> dict[str, Any]:
        """Suspend the task and wait until nothing runs, so its status and its Jobs can be compared at rest."""
        self.patch_spec(name, {"suspend": True})
        return self.wait_status(
            name,
            lambda s: s.get("phase") == "Suspended" and not s.get("active"),
            timeout=30,
            what="suspended with no active run",
        )

    def events(self, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return list(items)

    def wait_event(self, name: str, type_: str, reason: str, *, timeout: float = 15) -> list[Any]:
        """Wait for an Event of this type and reason about the task, and return all such Events.

        The operator posts a pass's Events after its status write, so a test that has just seen the status
        must wait for them rather than read once.
        """
        found: list[Any] = []

        def check() -> bool:
            nonlocal found
            found = [e for e in self.events(name) if (e.type, e.reason) == (type_, reason)]
            return bool(found)

        wait_for(
            check,
            timeout=timeout,
            message=lambda: (
                f"{name}: no {type_} Event {reason}; events: "
                f"{[(e.type, e.reason) for e in self.events(name)]}"
            ),
        )
        return found

    def wait_status(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 60,
        what: str = "status",
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def check() -> bool:
            nonlocal seen
            seen = self.status(name)
            return bool(predicate(seen))

        wait_for(check, timeout=timeout, message=lambda: f"{name}: {what} not reached; status: {seen}")
        return seen

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(self.status(name).get("history") or [])


def outcomes(status: dict[str, Any]) -> list[str]:
    return [h["outcome"] for h in status.get("history") or []]


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@contextlib.contextmanager
def stopped(op: OperatorProcess, *, kill: bool = False) -> Any:
    """The operator down for the duration of the block (killed or stopped), then started again."""
    if kill:
        op.kill()
    else:
        op.stop()
    op.held = True
    try:
        yield
    finally:
        op.held = False
        op.start()


def now() -> datetime:
    return datetime.now(UTC)


def sleep_until(t: datetime) -> None:
    """Wait for the wall clock to pass ``t`` (used only to let a due time pass while the operator is down)."""
    delay = (t - now()).total_seconds()
    if delay > 0:
        time.sleep(delay)


class JobRecorder:
    """Every Job ADDED in a namespace, by name, with the uids and creation times seen: a watch in a thread.

    A name ADDED with two uids is a Job created twice (a duplicate the derived name did not prevent)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.uids: dict[str, set[str]] = defaultdict(set)
        self.created: dict[str, datetime] = {}
        self.scheduled: dict[str, tuple[str, datetime]] = {}  # Job name -> (task, the run's due time)
        self._api = api
        self._namespace = namespace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        batch = client.BatchV1Api(self._api)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:  # (re)list: after a start, an expired watch (410) or an API server restart
                    listed = batch.list_namespaced_job(self._namespace)
                    for job in listed.items:
                        self._saw(job)
                    version = listed.metadata.resource_version
                stream = watch.Watch()
                for event in stream.stream(
                    batch.list_namespaced_job,
                    self._namespace,
                    resource_version=version,
                    timeout_seconds=5,
                    allow_watch_bookmarks=False,
                ):
                    job = event["object"]
                    version = job.metadata.resource_version
                    if event["type"] == "ADDED":
                        self._saw(job)
                    if self._stop.is_set():
                        stream.stop()
            except Exception:  # the API server restarting under the test: list again when it is back
                version = ""
                time.sleep(0.5)

    def _saw(self, job: Any) -> None:
        self.uids[job.metadata.name].add(job.metadata.uid)
        self.created.setdefault(job.metadata.name, job.metadata.creation_timestamp)
        annotations = job.metadata.annotations or {}
        task = (job.metadata.labels or {}).get("cronlet.dev/task")
        due = annotations.get("cronlet.dev/scheduled-time")
        if task and due:
            self.scheduled.setdefault(job.metadata.name, (task, datetime.fromisoformat(due)))

    def __enter__(self) -> JobRecorder:
        self._thread.start()
        return self

    def duplicates(self) -> dict[str, set[str]]:
        return {name: uids for name, uids in self.uids.items() if len(uids) > 1}

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
