"""Benchmark: task events to Kafka and HTTP under a burst, next to a bare sender's ceiling in the same run.

    python tools/bench_events.py [--tasks 1000] [--workers 8]

One local control plane (fake kubelet in simulate mode), one real Kafka broker (tools/localkube/kafka.py), one
HTTP receiver in this process. First the ceiling: our own sinks, driven bare from ``--workers`` coroutines,
send 2N events of the same shape (no operator, no status). Then the operator, with both sinks, runs N tasks
due in the same second: each run gives a ``started`` and a ``succeeded`` event. For each sink it prints how
many arrived, the rate from the first to the last, and the latency from each transition (the event's
``time``) to its arrival at the consumer, p50/p99, and the ratio of the rate to the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from benchkit import ROOT, operator_on_local_cluster, wait_until
from kubernetes import client, config

from cronlet._controller import sinks
from cronlet._core import events
from localkube import kafka as localkube_kafka

NS = "bench-events"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Arrivals:
    """What reached one consumer: (arrival time, event time, kind, id)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float, str, str]] = []
        self.lock = threading.Lock()

    def add(self, event_time: str, kind: str, event_id: str) -> None:
        with self.lock:
            self.seen.append((time.time(), _ts(event_time), kind, event_id))

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

    def unique(self) -> list[tuple[float, float, str, str]]:
        first: dict[str, tuple[float, float, str, str]] = {}
        with self.lock:
            for item in self.seen:
                first.setdefault(item[3], item)
        return sorted(first.values())


def http_receiver(arrivals: Arrivals) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = (self.headers.get("ce-type") or "").removeprefix(events.TYPE_PREFIX).removesuffix(".v1")
            arrivals.add(self.headers.get("ce-time") or "", kind, self.headers.get("ce-id") or "")
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/events"


def kafka_consumer(servers: str, topic: str, arrivals: Arrivals, stop: threading.Event) -> threading.Thread:
    async def consume() -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=servers, group_id=f"{topic}-bench", auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        headers = {k: v.decode() for k, v in r.headers}
                        kind = headers.get("ce_type", "").removeprefix(events.TYPE_PREFIX).removesuffix(".v1")
                        arrivals.add(headers.get("ce_time", ""), kind, headers.get("ce_id", ""))
        finally:
            await consumer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(consume()), daemon=True)
    thread.start()
    return thread


def synthetic(count: int) -> list[events.CloudEvent]:
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        kind: events.Kind = "started" if i % 2 == 0 else "succeeded"
        entry_time = (now + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out.append(
            events.CloudEvent(
                id=events.event_id(task_uid=f"u{i // 2}", run_id="r", attempt=1, kind=kind),
                source=events.source(NS, f"t{i // 2}"),
                type=events.event_type(kind),
                time=entry_time,
                subject=f"t{i // 2}-r-1",
                sequence=events.sequence(i % 2 + 1),
                partitionkey=f"{NS}/t{i // 2}",
                data={"namespace": NS, "name": f"t{i // 2}", "attempt": 1, "outcome": kind},
            )
        )
    return out


async def send_bare(sink: sinks.Sink, batch: list[events.CloudEvent], workers: int) -> float:
    """Send ``batch`` from ``workers`` coroutines (each task's two events in order); seconds taken."""
    queue: asyncio.Queue[events.CloudEvent] = asyncio.Queue()
    for e in batch:
        queue.put_nowait(e)

    async def worker() -> None:
        while not queue.empty():
            await sink.send(queue.get_nowait())

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    took = time.monotonic() - started
    await sink.close()
    return took


def summary(name: str, got: list[tuple[float, float, str, str]], expected: int, ceiling: float) -> str:
    if not got:
        return f"{name:6s} 0/{expected} events arrived"
    span = max(got[-1][0] - got[0][0], 1e-6)
    rate = len(got) / span
    lat = sorted(a - t for a, t, _, _ in got)
    started = sorted(a - t for a, t, k, _ in got if k == "started")
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    qs = statistics.quantiles(started, n=100) if len(started) > 1 else [started[0] if started else 0.0] * 99
    return (
        f"{name:6s} {len(got)}/{expected} events, {rate:7.0f}/s (ceiling {ceiling:7.0f}/s, ratio "
        f"{rate / ceiling:4.2f}); latency all p50 {statistics.median(lat) * 1000:6.0f} ms p99 "
        f"{q[98] * 1000:6.0f} ms; started p50 {statistics.median(started or [0]) * 1000:6.0f} ms p99 "
        f"{qs[98] * 1000:6.0f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8, help="concurrent senders of the bare ceiling")
    args = ap.parse_args()
    n = args.tasks
    topic = f"bench-{int(time.time())}"
    on_kafka, on_http = Arrivals(), Arrivals()
    broker = localkube_kafka.KafkaBroker()
    broker.start()
    server, url = http_receiver(on_http)
    stop = threading.Event()
    try:
        kafka_consumer(broker.bootstrap_servers, topic, on_kafka, stop)
        batch = synthetic(2 * n)
        k_took = asyncio.run(
            send_bare(
                sinks.KafkaSink(bootstrap_servers=broker.bootstrap_servers, topic=topic), batch, args.workers
            )
        )
        h_took = asyncio.run(send_bare(sinks.HttpSink(url=url), batch, args.workers))
        ceiling = {"kafka": 2 * n / k_took, "http": 2 * n / h_took}
        wait_until(lambda: len(on_kafka.unique()) >= 2 * n, 60, "the bare events on Kafka")
        on_kafka.clear()
        on_http.clear()
        sink_args = [
            "--events-kafka-bootstrap-servers",
            broker.bootstrap_servers,
            "--events-kafka-topic",
            topic,
        ]
        sink_args += ["--events-http-url", url]
        with operator_on_local_cluster(NS, args=sink_args) as (cp, _operator):
            api = config.new_client_from_config(str(cp.kubeconfig))
            custom = client.CustomObjectsApi(api)
            due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30 + n // 40)
            schedule = f"{due.second} {due.minute} {due.hour} * * *"

            def create(i: int) -> None:
                body = {
                    "apiVersion": "cronlet.dev/v1alpha1",
                    "kind": "ScheduledTask",
                    "metadata": {"name": f"t{i:05d}"},
                    "spec": {"schedule": schedule, "handler": "echo", "successfulJobsHistoryLimit": 0},
                }
                custom.create_namespaced_custom_object("cronlet.dev", "v1alpha1", NS, "scheduledtasks", body)

            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, range(n)))
            if datetime.now(UTC) > due - timedelta(seconds=3):
                raise SystemExit("creating the tasks took too long for the due time; try fewer --tasks")
            print(f"{n} tasks due at {due:%H:%M:%S}; waiting for 2x{n} events on each sink", flush=True)
            deadline = due.timestamp() + 300
            wait_until(
                lambda: (
                    (len(on_kafka.unique()) >= 2 * n and len(on_http.unique()) >= 2 * n)
                    or time.time() > deadline
                ),
                400,
                "the events",
            )
        print(f"burst of {n} runs (2 events each) from one operator, root {ROOT.name}:")
        for name, got in (("kafka", on_kafka.unique()), ("http", on_http.unique())):
            print(summary(name, got, 2 * n, ceiling[name]))
            if got:
                print(f"       due -> last event {got[-1][0] - due.timestamp():6.1f} s")
    finally:
        stop.set()
        server.shutdown()
        broker.close()


if __name__ == "__main__":
    main()
