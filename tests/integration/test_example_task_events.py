"""examples/08-task-events: its consumer, run as the README says, against the real broker, reading events the
Kafka sink published, re-sends included (as after an operator restart): each event is printed once.

Here and not in test_examples.py: it needs the broker, not the cluster.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from kit import ROOT

from cronlet._controller import sinks
from cronlet._core import events
from localkube import kafka as localkube_kafka

pytestmark = pytest.mark.binaries
CONSUMER = ROOT / "examples" / "08-task-events" / "consumer.py"


def event(name: str, number: int, kind: events.Kind, attempt: int) -> events.CloudEvent:
    return events.CloudEvent(
        id=events.event_id(task_uid=f"uid-{name}", run_id="20261201t100000z", attempt=attempt, kind=kind),
        source=f"/apis/cronlet.dev/v1alpha1/namespaces/shop/scheduledtasks/{name}",
        type=events.event_type(kind),
        time=f"2026-12-01T10:00:{number * 5:02d}Z",
        subject=f"{name}-20261201t100000z-{attempt}",
        sequence=events.sequence(number),
        partitionkey=f"shop/{name}",
        data={"attempt": attempt},
    )


REPORT = [
    event("nightly-report", 1, "started", 1),
    event("nightly-report", 2, "retrying", 1),
    event("nightly-report", 3, "started", 2),
    event("nightly-report", 4, "succeeded", 2),
]
BACKUP = [event("backup", 1, "started", 1), event("backup", 2, "failed", 1)]


def test_the_consumer_prints_each_event_once(
    kafka_broker: localkube_kafka.KafkaBroker, kafka_topic: str
) -> None:
    servers = kafka_broker.bootstrap_servers

    async def publish() -> None:
        binary = sinks.KafkaSink(bootstrap_servers=servers, topic=kafka_topic)
        structured = sinks.KafkaSink(bootstrap_servers=servers, topic=kafka_topic, mode="structured")
        try:
            for e in [REPORT[0], BACKUP[0], REPORT[1], REPORT[2]]:
                await binary.send(e)
            # An operator restarted before it recorded the acknowledgements sends them again, same ids.
            for e in [REPORT[1], REPORT[2], REPORT[3]]:
                await binary.send(e)
            for e in [BACKUP[0], BACKUP[1]]:
                await structured.send(e)  # a sink configured for structured mode reads the same
        finally:
            await binary.close()
            await structured.close()

    asyncio.run(publish())
    done = subprocess.run(
        [
            sys.executable,
            str(CONSUMER),
            "--bootstrap-servers",
            servers,
            "--topic",
            kafka_topic,
            "--idle-exit",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    print(done.stdout)  # what the README shows (pytest -s)

    def of(task: str) -> list[tuple[str, ...]]:
        # time, task, #sequence, kind, Job, "attempt", n: everything but the Job name, which is checked below
        return [tuple(ln.split()[i] for i in (0, 2, 3, 6)) for ln in lines if ln.split()[1] == f"shop/{task}"]

    assert of("nightly-report") == [
        ("2026-12-01T10:00:05Z", "#000000000001", "started", "1"),
        ("2026-12-01T10:00:10Z", "#000000000002", "retrying", "1"),
        ("2026-12-01T10:00:15Z", "#000000000003", "started", "2"),
        ("2026-12-01T10:00:20Z", "#000000000004", "succeeded", "2"),
    ]
    assert of("backup") == [
        ("2026-12-01T10:00:05Z", "#000000000001", "started", "1"),
        ("2026-12-01T10:00:10Z", "#000000000002", "failed", "1"),
    ]
    assert sorted(ln.split()[4] for ln in lines) == sorted(e.subject or "" for e in REPORT + BACKUP)
    assert len(lines) == 6
    assert "6 events, 3 repeats dropped" in done.stderr

    # The group's offsets were committed: a second run of the same group prints nothing again.
    again = subprocess.run(
        [
            sys.executable,
            str(CONSUMER),
            "--bootstrap-servers",
            servers,
            "--topic",
            kafka_topic,
            "--idle-exit",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (again.returncode, again.stdout) == (0, ""), again.stderr
