"""Task events end to end: the operator on the real control plane publishing to a real Kafka broker and a
real HTTP receiver. What arrives is parsed by the cloudevents SDK (an independent reader of the bindings).

- every transition of a retried-then-successful run and of an exhausted run arrives, in order per task, with
  the documented type, id, source, subject and sequence;
- an event recorded but not acknowledged when the operator is SIGKILLed arrives after the restart, with the
  same id;
- the broker stopped for 60 s while runs happen: every event arrives once it is back;
- a full outbox drops the oldest, counts them in the metric, and posts a Warning Event.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from helpers import wait_for
from kit import ROOT, OperatorProcess, Tasks, stopped
from kubernetes import client

from cronlet._core import events
from localkube import kafka as localkube_kafka

pytestmark = pytest.mark.cluster


class Receiver:
    """An HTTP receiver in a thread: records every request; ``status`` is what it answers (204, or 503 to
    play a receiver that is down)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.status < 300:
                    outer.received.append((dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def parsed(self) -> list[dict[str, Any]]:
        out = []
        for headers, body in list(self.received):
            event = ce_http.from_http_event(ce_http.HTTPMessage(headers=headers, body=body))
            out.append({**event.get_attributes(), "data": event.get_data()})
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _publishing(
    operator_process: OperatorProcess, kubeconfig: str, log_dir: Path, tasks: Tasks, args: list[str]
) -> OperatorProcess:
    """An operator with sinks, for this test's namespace only: tasks other tests left in namespaces still
    going away have events pending too (an operator without sinks keeps them), and would be sent here."""
    assert not operator_process.running, "the shared operator is stopped meanwhile"
    op = OperatorProcess(kubeconfig, log_dir, ["--no-leader-elect", "--namespace", tasks.ns, *args])
    op.start()
    return op


async def _records(servers: str, topic: str, count: int, timeout: float) -> list[Any]:
    """Every record of ``topic`` from the start, read without a consumer group (so nothing is committed and
    each read sees all), until ``count`` distinct event ids or ``timeout``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    got: list[Any] = []
    ids: set[bytes] = set()
    try:
        deadline = time.monotonic() + timeout
        while len(ids) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
                ids.update(dict(r.headers).get("ce_id", b"") for r in records)
    finally:
        await consumer.stop()
    return got


def _kafka(servers: str, topic: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    """What arrived on Kafka, parsed; waits for ``count`` distinct ids (at least once: there may be repeats)."""
    out = []
    for record in asyncio.run(_records(servers, topic, count, timeout)):
        message = ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
        event = ce_kafka.from_kafka(message, JSONFormat())
        out.append({**event.get_attributes(), "data": event.get_data(), "_key": record.key})
    return out


def _of(received: list[dict[str, Any]], tasks: Tasks, name: str) -> list[dict[str, Any]]:
    mine = [e for e in received if (e["data"]["namespace"], e["data"]["name"]) == (tasks.ns, name)]
    first: dict[str, dict[str, Any]] = {}
    for e in mine:
        first.setdefault(e["id"], e)  # at least once: a consumer dedupes by id
    return sorted(first.values(), key=lambda e: e["sequence"])


def _steps(received: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [
        (e["type"].removeprefix("dev.cronlet.run.").removesuffix(".v1"), e["data"]["attempt"])
        for e in received
    ]


def _run_now(tasks: Tasks, name: str) -> None:
    tasks.annotate(name, {"cronlet.dev/run-now": f"t-{time.time_ns()}"})


RETRIED = [("started", 1), ("retrying", 1), ("started", 2), ("succeeded", 2)]
EXHAUSTED = [("started", 1), ("retrying", 1), ("started", 2), ("failed", 2)]


def test_every_transition_of_a_retried_and_of_an_exhausted_run_arrives_in_order_on_kafka_and_http(
    operator_process: OperatorProcess,
    kubeconfig: str,
    tmp_path: Path,
    tasks: Tasks,
    kube: client.ApiClient,
    kafka_broker: localkube_kafka.KafkaBroker,
    kafka_topic: str,
    receiver: Receiver,
) -> None:
    with stopped(operator_process):
        op = _publishing(
            operator_process,
            kubeconfig,
            tmp_path,
            tasks,
            [
                "--events-kafka-bootstrap-servers",
                kafka_broker.bootstrap_servers,
                "--events-kafka-topic",
                kafka_topic,
                "--events-http-url",
                receiver.url,
            ],
        )
        try:
            retry = {"initialDelay": "1s", "jitter": 0}
            common = {"schedule": "@yearly", "handler": "fail", "maxRetries": 1, "backoff": retry}
            tasks.create("retried", {**common, "parameters": {"succeedOnAttempt": 2}})
            tasks.create("exhausted", common)
            for name in ("retried", "exhausted"):
                _run_now(tasks, name)
            wait_for(
                lambda: len({e["id"] for e in receiver.parsed()}) >= 8,
                timeout=120,  # a sink that failed a few times waits up to 30 s between tries
                message=lambda: f"not every event arrived by HTTP: {_steps(receiver.parsed())}",
            )
            on_kafka = _kafka(kafka_broker.bootstrap_servers, kafka_topic, 8)
        finally:
            op.stop()

    try:
        _check_both_runs(tasks, receiver, on_kafka)
    except AssertionError as exc:
        log = op.log_path.read_text()[-6000:] if op.log_path.exists() else "(no log)"
        raise AssertionError(f"{exc}\n--- operator log (tail):\n{log}") from None
    _check_consumer(tasks, kafka_broker, kafka_topic)


def _check_both_runs(tasks: Tasks, receiver: Receiver, on_kafka: list[dict[str, Any]]) -> None:
    for received in (receiver.parsed(), on_kafka):
        for name, expected in (("retried", RETRIED), ("exhausted", EXHAUSTED)):
            mine = _of(received, tasks, name)
            assert _steps(mine) == expected
            assert [e["sequence"] for e in mine] == [events.sequence(n) for n in range(1, 5)]
            task = tasks.get(name)
            uid = task["metadata"]["uid"]
            for e in mine:
                kind = e["type"].removeprefix("dev.cronlet.run.").removesuffix(".v1")
                run_id = e["data"]["runId"]
                assert e["id"] == events.event_id(
                    task_uid=uid, run_id=run_id, attempt=e["data"]["attempt"], kind=kind
                )
                assert (
                    e["source"] == f"/apis/cronlet.dev/v1alpha1/namespaces/{tasks.ns}/scheduledtasks/{name}"
                )
                assert e["subject"] == f"{name}-{run_id}-{e['data']['attempt']}"
                assert e["partitionkey"] == f"{tasks.ns}/{name}"
                assert e["data"]["manual"] is True and e["data"]["maxAttempts"] == 2
                assert "parameters" not in e["data"]
            assert mine[-1]["data"]["reason"] == ("Succeeded" if name == "retried" else "RetriesExhausted")
    for name in ("retried", "exhausted"):
        keys = {e["_key"] for e in on_kafka if e["data"]["name"] == name}
        assert keys == {f"{tasks.ns}/{name}".encode()}
    assert all(h.get("Content-Type") == "application/json" for h, _ in receiver.received)


def _check_consumer(tasks: Tasks, kafka_broker: localkube_kafka.KafkaBroker, kafka_topic: str) -> None:
    # The example's consumer, as its README runs it, reads what the operator published: one line per event.
    consumer = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "08-task-events" / "consumer.py"),
            "--bootstrap-servers",
            kafka_broker.bootstrap_servers,
            "--topic",
            kafka_topic,
            "--idle-exit",
            "10",  # a fresh consumer group can take seconds to be assigned its partitions on a loaded machine
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(consumer.stdout)
    lines = [line.split() for line in consumer.stdout.splitlines() if f"{tasks.ns}/" in line]
    for name, expected in (("retried", RETRIED), ("exhausted", EXHAUSTED)):
        got = [line[3] for line in lines if line[1] == f"{tasks.ns}/{name}"]
        assert got == [k for k, _ in expected], (
            f"the consumer printed {consumer.stdout!r}; {consumer.stderr[-2000:]}"
        )


def test_an_event_not_acknowledged_when_the_operator_is_killed_arrives_after_the_restart_with_its_id(
    operator_process: OperatorProcess,
    kubeconfig: str,
    tmp_path: Path,
    tasks: Tasks,
    receiver: Receiver,
) -> None:
    receiver.status = 503  # recorded in the outbox, not acknowledged
    with stopped(operator_process):
        op = _publishing(operator_process, kubeconfig, tmp_path, tasks, ["--events-http-url", receiver.url])
        try:
            tasks.create("once", {"schedule": "@yearly", "handler": "echo"})
            _run_now(tasks, "once")
            wait_for(
                lambda: len((tasks.status("once").get("events") or {}).get("pending") or []) >= 2,
                timeout=30,
                message="the run's events were not recorded",
            )
            pending = tasks.status("once")["events"]["pending"]
            assert op.proc is not None
            os.killpg(op.proc.pid, signal.SIGKILL)
            op.proc.wait()
            op.proc = None
            receiver.status = 204
            op.start()
            wait_for(
                lambda: len({e["id"] for e in receiver.parsed()}) >= 2,
                timeout=30,
                message="nothing sent after the restart",
            )
        finally:
            op.stop()
    uid = tasks.get("once")["metadata"]["uid"]
    expected = [
        events.event_id(task_uid=uid, run_id=e["runId"], attempt=e["attempt"], kind=e["kind"])
        for e in pending
    ]
    assert [e["id"] for e in _of(receiver.parsed(), tasks, "once")][: len(expected)] == expected


def test_the_broker_stopped_for_a_minute_loses_no_event(
    operator_process: OperatorProcess,
    kubeconfig: str,
    tmp_path: Path,
    tasks: Tasks,
    kafka_broker: localkube_kafka.KafkaBroker,
    kafka_topic: str,
) -> None:
    with stopped(operator_process):
        op = _publishing(
            operator_process,
            kubeconfig,
            tmp_path,
            tasks,
            [
                "--events-kafka-bootstrap-servers",
                kafka_broker.bootstrap_servers,
                "--events-kafka-topic",
                kafka_topic,
            ],
        )
        try:
            tasks.create(
                "steady",
                {"schedule": "*/5 * * * * *", "handler": "echo", "successfulJobsHistoryLimit": 0},
            )
            wait_for(
                lambda: tasks.status("steady").get("counters", {}).get("succeeded", 0) >= 1,
                timeout=30,
                message="no run succeeded",
            )
            kafka_broker.stop()
            stopped_at = time.monotonic()
            time.sleep(60)
            during = tasks.status("steady")["counters"]["succeeded"]
            kafka_broker.start()
            print(f"broker away {time.monotonic() - stopped_at:.0f} s; {during} runs succeeded by then")
            tasks.patch_spec("steady", {"suspend": True})
            wait_for(  # a run under way when suspended still ends, with an event of its own
                lambda: (lambda st: st.get("phase") == "Suspended" and not st.get("active"))(
                    tasks.status("steady")
                ),
                timeout=30,
                message="not suspended with no run under way",
            )
            final = tasks.status("steady")
            total = final["events"]["sequence"]
            # Every event of the task: the consumer dedupes by id (a send that timed out may have landed).
            got = wait_for(
                lambda: (lambda r: r if len(r) >= total else None)(
                    _of(
                        _kafka(kafka_broker.bootstrap_servers, kafka_topic, total, timeout=10),
                        tasks,
                        "steady",
                    )
                ),
                timeout=120,
                interval=1,
                message="events missing after the broker came back",
            )
        finally:
            op.stop()
    assert during >= 8  # runs went on while the broker was away (one every 5 s)
    assert [e["sequence"] for e in got] == [events.sequence(n) for n in range(1, total + 1)]
    assert final["events"]["dropped"] == 0


def test_a_full_outbox_drops_the_oldest_counts_them_and_warns(
    operator_process: OperatorProcess,
    kubeconfig: str,
    tmp_path: Path,
    tasks: Tasks,
    receiver: Receiver,
) -> None:
    receiver.status = 503
    with stopped(operator_process):
        op = _publishing(
            operator_process,
            kubeconfig,
            tmp_path,
            tasks,
            ["--events-http-url", receiver.url, "--events-outbox-max-entries", "3"],
        )
        try:
            tasks.create("full", {"schedule": "* * * * * *", "handler": "echo", "concurrencyPolicy": "Allow"})
            warned = tasks.wait_event("full", "Warning", "EventsDropped", timeout=30)
            status = tasks.status("full")
            metric = wait_for(
                lambda: (lambda m: float(m.group(1)) if m else None)(
                    re.search(r"^cronlet_events_dropped_total ([0-9.e+]+)$", op.metrics(), re.MULTILINE)
                ),
                timeout=10,
                message="no cronlet_events_dropped_total",
            )
            pending = wait_for(
                lambda: (lambda m: float(m.group(1)) if m and float(m.group(1)) > 0 else None)(
                    re.search(
                        r'^cronlet_events_pending\{sink="http"\} ([0-9.e+]+)$', op.metrics(), re.MULTILINE
                    )
                ),
                timeout=10,
                message="no events pending for the http sink",
            )
        finally:
            op.stop()
    assert "outbox is full" in warned[0].message
    assert len(status["events"]["pending"]) <= 3 and status["events"]["dropped"] >= 1
    assert metric >= 1 and pending >= 1
    assert receiver.received == []
