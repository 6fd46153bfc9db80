"""Two operators, no leader election, the same tasks: each frozen and thawed at random while history limits
prune every finished Job. Fencing alone (claim, then create) must keep every (run, attempt) to one Job.

A watch records every Job ever created in the namespace: a name ADDED twice with two uids is a duplicate,
which the derived name cannot prevent once the first Job is gone.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit import JobRecorder, OperatorProcess, Tasks
from kubernetes import client

pytestmark = pytest.mark.cluster

CHAOS_SECONDS = 45


@pytest.fixture
def second_operator(kubeconfig: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    # Election off: both operators act on every task; only the claim-then-create order keeps them apart.
    op = OperatorProcess(kubeconfig, tmp_path, ["--no-leader-elect"])
    op.start()
    yield op
    if op.proc is not None:
        os.killpg(op.proc.pid, signal.SIGCONT)
    op.stop()


def _freeze(op: OperatorProcess, frozen: bool) -> None:
    assert op.proc is not None
    os.killpg(op.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def test_two_operators_frozen_at_random_never_create_a_job_twice(
    tasks: Tasks, operator: OperatorProcess, second_operator: OperatorProcess, kube: client.ApiClient
) -> None:
    names = [f"fenced-{i}" for i in range(3)]
    with JobRecorder(kube, tasks.ns) as recorder:
        for name in names:
            tasks.create(
                name,
                {
                    "schedule": "*/2 * * * * *",
                    "handler": "echo",
                    "concurrencyPolicy": "Allow",
                    "successfulJobsHistoryLimit": 0,  # every finished Job is deleted: its name is free again
                    "failedJobsHistoryLimit": 0,
                },
            )
        rng = random.Random(7)
        operators = [operator, second_operator]
        deadline = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < deadline:
            victim = rng.choice(operators)
            _freeze(victim, True)
            time.sleep(rng.uniform(0.5, 4.0))  # the other one runs the tasks meanwhile
            _freeze(victim, False)
            time.sleep(rng.uniform(0.0, 1.5))
        for name in names:
            tasks.settle(name)
        time.sleep(2)  # the watch's last events
    assert len(recorder.uids) >= 20, f"too few runs to prove anything: {len(recorder.uids)}"
    assert recorder.duplicates() == {}, f"Jobs created twice: {recorder.duplicates()}"
    for name in names:
        status = tasks.status(name)
        recorded = status["counters"]["succeeded"] + status["counters"]["failed"]
        assert recorded >= 5, status["counters"]
