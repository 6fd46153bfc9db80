"""Runs start on time, from cron (seconds first), interval and time-zone schedules; handlers really run."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from helpers import wait_for
from kit import OperatorProcess, Tasks, ts

from cronlet._core import schedule

pytestmark = pytest.mark.cluster


def test_six_field_seconds_schedule_fires_on_time_and_the_handler_runs(tasks: Tasks) -> None:
    tasks.create("tick", {"schedule": "*/3 * * * * *", "handler": "echo", "parameters": {"marker": "m-42"}})
    st = tasks.wait_status("tick", lambda s: s.get("counters", {}).get("succeeded", 0) >= 2, timeout=40)
    jobs = tasks.jobs("tick")
    assert len(jobs) >= 2
    for j in jobs[:2]:
        due = ts(j.metadata.annotations["cronlet.dev/scheduled-time"])
        assert due.second % 3 == 0
        lag = (j.metadata.creation_timestamp - due).total_seconds()
        # creationTimestamp has whole seconds. Typical lag is well under 1 s (tools/bench_scale.py measures
        # it); this bound only catches a run started a whole period late, with room for a loaded CI machine.
        assert -1.0 <= lag <= 8.0, f"job {j.metadata.name} created {lag}s after its due time"
    done = [h for h in st["history"] if h["outcome"] == "Succeeded"]
    assert "m-42" in done[0]["message"]  # the echo handler really ran and reported back
    assert st["lastSuccessfulTime"] and st["observedGeneration"] == 1


def test_interval_runs_at_creation_plus_n_intervals(tasks: Tasks) -> None:
    # Allow: under Forbid a slow first run would turn the second due time into a Skipped one, with no Job.
    body = tasks.create("every4", {"interval": "4s", "handler": "echo", "concurrencyPolicy": "Allow"})
    created = ts(body["metadata"]["creationTimestamp"])
    tasks.wait_status("every4", lambda s: s.get("counters", {}).get("runs", 0) >= 2, timeout=30)
    # Runs are claimed in status before their Jobs are created: wait for both Jobs.
    wait_for(lambda: len(tasks.jobs("every4")) >= 2, timeout=15, message="the second run's Job")
    dues = sorted(ts(j.metadata.annotations["cronlet.dev/scheduled-time"]) for j in tasks.jobs("every4"))
    assert dues[0] == created + timedelta(seconds=4)
    assert dues[1] == created + timedelta(seconds=8)


def test_time_zone_is_respected(tasks: Tasks) -> None:
    zone = "Asia/Kolkata"  # UTC+05:30: an hour field means a different UTC hour
    local = datetime.now(UTC).astimezone(ZoneInfo(zone))
    hours = f"{local.hour},{(local.hour + 1) % 24}"
    tasks.create("tz-now", {"schedule": f"*/2 * {hours} * * *", "timeZone": zone, "handler": "echo"})
    before = datetime.now(UTC)
    tasks.create("tz-morning", {"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo", "handler": "echo"})
    tasks.wait_status("tz-now", lambda s: s.get("counters", {}).get("succeeded", 0) >= 1, timeout=30)
    st = tasks.wait_status("tz-morning", lambda s: bool(s.get("nextRunTime")), timeout=20)
    tokyo = schedule.compile_cron("0 9 * * *", time_zone="Asia/Tokyo")
    # The operator computed it between `before` and now; both ends agree unless midnight UTC fell in between.
    expected = {schedule.next_after(tokyo, before), schedule.next_after(tokyo, datetime.now(UTC))}
    assert ts(st["nextRunTime"]) in expected
    assert ts(st["nextRunTime"]).hour == 0  # 09:00 in Tokyo is midnight UTC


def test_kubectl_get_shows_the_contract_columns(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    tasks.create("cols", {"schedule": "*/2 * * * * *", "handler": "echo"})
    tasks.wait_status(
        "cols", lambda s: bool(s.get("lastScheduleTime")) and bool(s.get("history")), timeout=30
    )
    kubectl = [str(cluster_bin / "kubectl"), "--kubeconfig", kubeconfig, "-n", tasks.ns]
    out = subprocess.run([*kubectl, "get", "st"], check=True, capture_output=True, text=True).stdout
    header, row = out.splitlines()[0].split(), out.splitlines()[1]
    assert header == [
        "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "PHASE", "LAST", "SCHEDULE", "NEXT", "RUN", "AGE"
    ]  # fmt: skip
    assert "*/2 * * * * *" in row and "false" in row and "UTC" in row
    wide = subprocess.run(
        [*kubectl, "get", "st", "-o", "wide"], check=True, capture_output=True, text=True
    ).stdout
    assert "HANDLER" in wide and "ATTEMPT" in wide and "LAST RESULT" in wide and "echo" in wide
    explain = subprocess.run(
        [*kubectl, "explain", "scheduledtask.spec.schedule"], check=True, capture_output=True, text=True
    ).stdout
    assert "seconds first" in " ".join(explain.split())  # kubectl wraps the description
    by_cat = subprocess.run([*kubectl, "get", "cronlet"], check=True, capture_output=True, text=True).stdout
    assert "cols" in by_cat


def test_the_active_column_counts_unfinished_runs(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    tasks.create(
        "busy",
        {
            "schedule": "*/2 * * * * *",
            "timeZone": "Europe/Berlin",
            "handler": "sleep",
            "parameters": {"seconds": 30},
            "concurrencyPolicy": "Allow",
        },
    )
    st = tasks.wait_status(
        "busy", lambda s: len(s.get("active", [])) >= 2, timeout=30, what="two runs active"
    )
    kubectl = [str(cluster_bin / "kubectl"), "--kubeconfig", kubeconfig, "-n", tasks.ns]
    out = subprocess.run(
        [*kubectl, "get", "st", "busy", "--no-headers"], check=True, capture_output=True, text=True
    )
    fields = out.stdout.split()
    # NAME, then the 6-field schedule, then TIMEZONE, SUSPEND, ACTIVE.
    assert fields[7:9] == ["Europe/Berlin", "false"], out.stdout
    assert int(fields[9]) >= 2, out.stdout
    assert st["activeCount"] == len(st["active"])
    tasks.patch_spec("busy", {"suspend": True})


def test_interval_task_shows_its_interval_in_the_schedule_column(
    tasks: Tasks, kubeconfig: str, cluster_bin: Path
) -> None:
    tasks.create("iv", {"interval": "1h", "handler": "echo"})
    out = subprocess.run(
        [
            str(cluster_bin / "kubectl"),
            "--kubeconfig",
            kubeconfig,
            "-n",
            tasks.ns,
            "get",
            "st",
            "iv",
            "-o",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(out)["spec"]["interval"] == "1h"
    table = subprocess.run(
        [str(cluster_bin / "kubectl"), "--kubeconfig", kubeconfig, "-n", tasks.ns, "get", "st", "iv"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert " 1h " in table


def test_metrics_count_what_happened(tasks: Tasks, operator: OperatorProcess) -> None:
    tasks.create("counted", {"schedule": "*/2 * * * * *", "handler": "echo"})
    st = tasks.wait_status("counted", lambda s: s.get("counters", {}).get("succeeded", 0) >= 2, timeout=30)

    def succeeded_metric() -> float:
        line = next(
            x
            for x in operator.metrics().splitlines()
            if x.startswith("cronlet_runs_total{")
            and f'namespace="{tasks.ns}"' in x
            and 'task="counted"' in x
            and 'outcome="Succeeded"' in x
        )
        return float(line.rsplit(" ", 1)[1])

    # The counter moves just after the status write that the wait above saw, so give it a moment.
    wait_for(
        lambda: succeeded_metric() >= st["counters"]["succeeded"],
        timeout=10,
        message=lambda: f"cronlet_runs_total Succeeded {succeeded_metric()} < status {st['counters']}",
    )
    text = operator.metrics()
    assert f'cronlet_schedule_lag_seconds_count{{namespace="{tasks.ns}",task="counted"}}' in text
    assert "cronlet_operator_ready 1.0" in text
