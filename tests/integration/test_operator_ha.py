"""Two replicas with leader election on: one acts, the other takes over when the leader dies or stops.

Short lease timings (lease 6 s, renew deadline 4 s, retry 1 s) keep the test quick; the rules are the same as
with the defaults. A watch records every Job: no (run, attempt) is created twice, and the gap in launches
after a SIGKILL stays within the lease duration plus a few seconds, after a SIGTERM within a few seconds
(the leader releases its lease).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from kit import JobRecorder, OperatorProcess, Tasks, stopped
from kubernetes import client

pytestmark = pytest.mark.cluster

LEASE = 6.0


def _leading(op: OperatorProcess) -> bool:
    try:
        return bool(re.search(r"^cronlet_leader 1\.0$", op.metrics(), re.MULTILINE))
    except OSError:
        return False


@pytest.fixture
def replicas(
    operator_process: OperatorProcess, kubeconfig: str, tmp_path: Path
) -> Iterator[list[OperatorProcess]]:
    lease = f"ha-{secrets.token_hex(3)}"
    args = [
        "--leader-elect-resource-name",
        lease,
        "--leader-elect-lease-duration",
        f"{LEASE:g}s",
        "--leader-elect-renew-deadline",
        "4s",
        "--leader-elect-retry-period",
        "1s",
    ]
    with stopped(operator_process):
        pair = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            pair.append(
                OperatorProcess(kubeconfig, tmp_path / name, [*args, "--leader-elect-identity", name])
            )
        for op in pair:
            op.start()
        yield pair
        for op in pair:
            op.stop()


def test_a_standby_takes_over_after_a_kill_and_at_once_after_a_clean_stop(
    replicas: list[OperatorProcess], tasks: Tasks, kube: client.ApiClient
) -> None:
    a, b = replicas
    leader = wait_for(
        lambda: next((op for op in replicas if _leading(op)), None),
        timeout=30,
        message="no replica became the leader",
    )
    assert sum(_leading(op) for op in replicas) == 1
    with JobRecorder(kube, tasks.ns) as recorder:
        tasks.create(
            "ha",
            {
                "schedule": "* * * * * *",
                "handler": "echo",
                "concurrencyPolicy": "Allow",
                "successfulJobsHistoryLimit": 0,
            },
        )
        wait_for(lambda: len(recorder.created) >= 3, timeout=30, message="no runs")

        standby = b if leader is a else a
        assert leader.proc is not None
        killed_at = time.monotonic()
        os.killpg(leader.proc.pid, signal.SIGKILL)
        leader.proc.wait()
        leader.proc = None
        wait_for(
            lambda: _leading(standby), timeout=LEASE + 20, interval=0.1, message="no takeover after SIGKILL"
        )
        kill_gap = time.monotonic() - killed_at
        taken_over = time.time()
        wait_for(
            lambda: any(t.timestamp() >= taken_over - 1 for t in recorder.created.values()),
            timeout=10,
            message="the new leader started no run",
        )
        leader.start()  # back, as a standby now
        time.sleep(2)
        assert not _leading(leader)

        stopping = time.monotonic()
        assert standby.stop() == 0  # SIGTERM: the lease is released
        wait_for(lambda: _leading(leader), timeout=15, interval=0.1, message="no takeover after SIGTERM")
        term_gap = time.monotonic() - stopping
        wait_for(lambda: len(recorder.created) >= 3 + 6, timeout=30, message="runs did not go on")

        # A leader frozen (SIGSTOP) for three lease durations: the standby takes over; thawed, the old leader
        # finds its lease gone and its renew deadline passed, and acts no more.
        standby.start()
        frozen = leader
        assert frozen.proc is not None
        os.killpg(frozen.proc.pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: _leading(standby),
                timeout=LEASE + 20,
                interval=0.2,
                message="no takeover while frozen",
            )
            time.sleep(2 * LEASE)
        finally:
            os.killpg(frozen.proc.pid, signal.SIGCONT)
        wait_for(lambda: not _leading(frozen), timeout=10, message="the thawed leader still claims to lead")
        assert _leading(standby)
        before = len(recorder.created)
        wait_for(
            lambda: len(recorder.created) >= before + 3,
            timeout=30,
            message="runs did not go on after the thaw",
        )
        tasks.settle("ha")
    print(f"takeover after SIGKILL of the leader: {kill_gap:.1f} s; after SIGTERM: {term_gap:.1f} s")
    assert recorder.duplicates() == {}
    assert kill_gap <= LEASE + 3 + 4, f"SIGKILL failover took {kill_gap:.1f} s"  # +4: a loaded CI machine
    assert term_gap <= 3 + 3, f"SIGTERM handover took {term_gap:.1f} s"
