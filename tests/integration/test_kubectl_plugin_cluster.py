"""``kubectl cronlet`` against the real local control plane with the operator running.

The plugin is called in-process (``main([...])``) for the story of one task, and once through the pinned
kubectl binary to show that ``kubectl cronlet`` finds the console script on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kit import Tasks

from cronlet._cli import kubectl as kubectl_plugin
from cronlet._common.times import rfc3339
from cronlet._core import schedule

pytestmark = pytest.mark.cluster


def plugin(capsys: pytest.CaptureFixture[str], kubeconfig: str, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = kubectl_plugin.main([*argv, "--kubeconfig", kubeconfig])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_history_suspend_resume_next(
    capsys: pytest.CaptureFixture[str], tasks: Tasks, kubeconfig: str, namespace: str
) -> None:
    tasks.create("yearly", {"schedule": "@yearly", "handler": "echo", "parameters": {"msg": "by hand"}})
    tasks.wait_status("yearly", lambda s: s.get("phase") == "Scheduled", what="phase Scheduled")

    code, out, err = plugin(capsys, kubeconfig, "run", "yearly", "-n", namespace)
    assert code == 0, err
    assert out.startswith("scheduledtask/yearly: run requested (token ")
    token = out.strip().removeprefix("scheduledtask/yearly: run requested (token ").removesuffix(")")
    annotations = tasks.get("yearly")["metadata"]["annotations"]
    assert annotations["cronlet.dev/run-now"] == token
    status = tasks.wait_status(
        "yearly", lambda s: s.get("counters", {}).get("succeeded") == 1, timeout=90, what="one successful run"
    )
    assert status["lastRunNowToken"] == token

    code, out, err = plugin(capsys, kubeconfig, "history", "yearly", "-n", namespace)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == list(kubectl_plugin.HISTORY_COLUMNS)
    assert len(rows) == 1
    assert rows[0].split()[1:3] == ["Succeeded", "1"]
    assert status["history"][0]["jobName"] in rows[0]

    code, out, _ = plugin(capsys, kubeconfig, "history", "yearly", "-n", namespace, "-o", "json")
    assert code == 0
    assert [h["outcome"] for h in json.loads(out)] == ["Succeeded"]

    code, out, err = plugin(capsys, kubeconfig, "suspend", "yearly", "-n", namespace)
    assert (code, out) == (0, "scheduledtask/yearly: suspended\n"), err
    assert tasks.get("yearly")["spec"]["suspend"] is True
    tasks.wait_status("yearly", lambda s: s.get("phase") == "Suspended", what="phase Suspended")

    code, out, err = plugin(capsys, kubeconfig, "resume", "yearly", "-n", namespace)
    assert (code, out) == (0, "scheduledtask/yearly: resumed\n"), err
    tasks.wait_status("yearly", lambda s: s.get("phase") == "Scheduled", what="phase Scheduled again")

    before = datetime.now(UTC)
    code, out, err = plugin(capsys, kubeconfig, "next", "yearly", "-n", namespace, "--count", "2")
    assert code == 0, err
    body = tasks.get("yearly")
    sched = schedule.compile_cron("@yearly", time_zone="UTC", hash_key=f"{namespace}/yearly")
    expected = schedule.upcoming(sched, kubectl_plugin.next_start(body, before), 2)
    assert out.splitlines() == [rfc3339(t) for t in expected]
    assert out.splitlines()[0] == body["status"]["nextRunTime"]


def test_next_of_an_interval_task_counts_from_creation(
    capsys: pytest.CaptureFixture[str], tasks: Tasks, kubeconfig: str, namespace: str
) -> None:
    body = tasks.create("rate", {"interval": "1h", "handler": "echo"})
    created = kubectl_plugin.parse_instant(body["metadata"]["creationTimestamp"])
    code, out, err = plugin(capsys, kubeconfig, "next", "rate", "-n", namespace, "-c", "3")
    assert code == 0, err
    assert out.splitlines() == [rfc3339(created + n * schedule.parse_duration("1h")) for n in (1, 2, 3)]


@pytest.mark.parametrize("command", [["run"], ["suspend"], ["resume"], ["history"], ["next"]])
def test_missing_task_exits_1_with_not_found(
    capsys: pytest.CaptureFixture[str], tasks: Tasks, kubeconfig: str, namespace: str, command: list[str]
) -> None:
    code, out, err = plugin(capsys, kubeconfig, *command, "nope", "-n", namespace)
    assert code == 1
    assert out == ""
    assert f'scheduledtask "nope" not found in namespace "{namespace}"' in err


def test_kubectl_finds_the_plugin_on_path(tasks: Tasks, kubeconfig: str, namespace: str) -> None:
    from localkube import binaries

    scripts = sysconfig.get_path("scripts")
    assert (Path(scripts) / "kubectl-cronlet").exists(), "console script missing: pip install -e . --no-deps"
    tasks.create("daily", {"schedule": "0 6 * * *", "timeZone": "Europe/Berlin", "handler": "echo"})
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(
        [
            str(binaries.find("kubectl")),
            "cronlet",
            "next",
            "daily",
            "-n",
            namespace,
            "-c",
            "1",
            "--kubeconfig",
            kubeconfig,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    due = kubectl_plugin.parse_instant(done.stdout.strip())
    assert due.astimezone(schedule.load_zone("Europe/Berlin")).strftime("%H:%M") == "06:00"
