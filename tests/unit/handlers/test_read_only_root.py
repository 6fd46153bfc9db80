"""The built-in handlers and the executor under the executor container's filesystem: a read-only root, and
the emptyDir volumes the Job mounts (``/tmp``), both read from the manifest ``build_job`` makes.

Each case runs ``python -m cronlet.executor`` in a mount namespace of its own (``unshare``, in a user
namespace, so nothing outside it changes): the root bind-mounted read-only when the manifest says
``readOnlyRootFilesystem``, and a tmpfs at each emptyDir mount path, as the kubelet would give the pod.
Needs ``unshare`` with user namespaces; without them the tests fail, they do not skip.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cronlet._core import manifests, model, views

T = datetime(2026, 1, 1, tzinfo=UTC)
WRITABLE_ROOT = "ROOT-IS-WRITABLE"


def executor_container(handler: str, parameters: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The executor container of the Job the operator builds, and the paths its pod mounts as emptyDir."""
    spec = model.TaskSpec.model_validate({"schedule": "@daily", "handler": handler, "parameters": parameters})
    task = views.TaskView(
        namespace="ns", name="ro", uid="u", generation=1, created=T, spec={}, status=model.TaskStatus()
    )
    run = views.JobToCreate(run_id="1", attempt=1, scheduled_time=T)
    pod = manifests.build_job(task=task, spec=spec, run=run, image="cronlet:1")["spec"]["template"]["spec"]
    empty = {v["name"] for v in pod.get("volumes") or [] if "emptyDir" in v}
    (container,) = pod["containers"]
    mounts = [m["mountPath"] for m in container.get("volumeMounts") or [] if m["name"] in empty]
    return container, mounts


def _own_dirs() -> list[str]:
    """The directories the executor is run from here: this checkout and the interpreter's prefixes, outermost
    only."""
    candidates = sorted({str(Path(__file__).resolve().parents[3]), sys.prefix, sys.base_prefix}, key=len)
    outer: list[str] = []
    for d in candidates:
        if not any(d == o or d.startswith(o.rstrip("/") + "/") for o in outer):
            outer.append(d)
    return outer


def run_in_container_filesystem(handler: str, parameters: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    """Exit code, termination message and output of one attempt, on the filesystem the manifest describes."""
    unshare = shutil.which("unshare")
    assert unshare, "these tests need unshare (util-linux) with user namespaces"
    container, mounts = executor_container(handler, parameters)
    env = {e["name"]: e["value"] for e in container["env"]}
    # The result goes to a file on a tmpfs of the test's own (the kubelet mounts /dev/termination-log).
    env |= {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "CRONLET_TERMINATION_LOG": "/tmp/termination-log",
    }
    steps = ["set -e"]
    if container["securityContext"].get("readOnlyRootFilesystem"):
        steps.append("mount -o remount,bind,ro /")
    for n, path in enumerate(mounts):
        # What this test runs from (the checkout, its venv) may live under a path the pod gets an emptyDir at
        # (a clone in /tmp): hold each such directory by a file descriptor before the tmpfs covers it, and
        # bind it back at its own path on the tmpfs, as an image's own files would be there.
        held = [d for d in _own_dirs() if d == path or d.startswith(path.rstrip("/") + "/")]
        assert 3 + n * 3 + len(held) <= 10, "sh takes descriptors 3-9 only"
        steps += [f"exec {3 + n * 3 + i}<{shlex.quote(d)}" for i, d in enumerate(held)]
        steps.append(f"mount -t tmpfs -o size=16m tmpfs {shlex.quote(path)}")
        for i, d in enumerate(held):
            steps += [
                f"mkdir -p {shlex.quote(d)}",
                f"mount --no-canonicalize --bind /proc/self/fd/{3 + n * 3 + i} {shlex.quote(d)}",
            ]
    steps += [
        f"if touch /var/tmp/cronlet-probe 2>/dev/null; then rm -f /var/tmp/cronlet-probe; echo {WRITABLE_ROOT}; fi",
        "code=0",
        f"{shlex.quote(sys.executable)} -m cronlet.executor || code=$?",
        "echo; echo RESULT; cat /tmp/termination-log 2>/dev/null || true",
        "rm -f /tmp/termination-log 2>/dev/null || true",  # only there when /tmp is not a tmpfs of this test
        'exit "$code"',
    ]
    completed = subprocess.run(
        [
            unshare,
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "\n".join(steps),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output, _, result = completed.stdout.rpartition("\nRESULT\n")
    assert result.strip(), f"no termination message; stderr: {completed.stderr}; stdout: {completed.stdout}"
    return completed.returncode, json.loads(result), output + completed.stderr


def test_the_root_is_read_only_in_these_tests() -> None:
    # What the issue saw on a real node (a handler wrote to /var/tmp) is refused now.
    code, result, output = run_in_container_filesystem(
        "shell", {"command": "echo x > /var/tmp/cronlet-was-here"}
    )
    assert WRITABLE_ROOT not in output
    assert code == 1 and "Read-only file system" in result["message"]


@pytest.mark.parametrize(
    ("handler", "parameters", "message"),
    [
        ("echo", {"greeting": "hi"}, "hi"),
        ("shell", {"command": 'f="$(mktemp)" && echo scratch > "$f" && cat "$f"'}, "scratch"),
        (
            "shell",
            {"command": ["/bin/sh", "-c", "cd /tmp && mkdir work && echo ok > work/f && cat work/f"]},
            "ok",
        ),
        (
            "shell",
            {
                "command": [
                    sys.executable,
                    "-c",
                    "import tempfile; f = tempfile.TemporaryFile(); print('tempfile')",
                ]
            },
            "tempfile",
        ),
        ("sleep", {"seconds": 0}, ""),
    ],
    ids=["echo", "shell-mktemp", "shell-list-in-tmp", "python-tempfile", "sleep"],
)
def test_built_in_handlers_run_on_the_read_only_root_with_scratch_space_in_tmp(
    handler: str, parameters: dict[str, Any], message: str
) -> None:
    # No PYTHONDONTWRITEBYTECODE here: a bytecode cache that cannot be written is skipped, not an error.
    code, result, output = run_in_container_filesystem(handler, parameters)
    assert WRITABLE_ROOT not in output
    assert (code, result["success"]) == (0, True), output
    assert message in result["message"]
