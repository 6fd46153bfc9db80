"""Read Cronlet's task events from Kafka and print one line per event, each event once.

    pip install aiokafka==0.14.0
    python consumer.py --bootstrap-servers kafka.example.com:9092 [--topic task-events] [--group my-app]

Cronlet publishes at least once: after an operator restart, a leader change or a broker outage it sends
again what it could not confirm, with the same ids. This consumer drops those repeats twice over: by
(source, id), and by keeping the last ``sequence`` seen per task (``partitionkey`` and ``data.uid``):
a task's events share one partition, so they arrive in order and an older sequence is a repeat.
Both binary (``ce_*`` headers) and structured (``application/cloudevents+json``) records are read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer

STRUCTURED = "application/cloudevents+json"
SEEN_LIMIT = 100_000  # (source, id) pairs remembered; the sequence check covers what is forgotten


def parse(headers: list[tuple[str, bytes]], value: bytes) -> dict[str, Any]:
    """A record as a CloudEvent dict: attributes plus ``data`` (CloudEvents Kafka binding, both modes)."""
    named = {name.lower(): raw.decode() for name, raw in headers}
    if named.get("content-type", "").startswith(STRUCTURED):
        event: dict[str, Any] = json.loads(value)
        return event
    event = {name[3:]: text for name, text in named.items() if name.startswith("ce_")}
    event["datacontenttype"] = named.get("content-type")
    event["data"] = json.loads(value) if value else None
    return event


class Deduplicator:
    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._last_sequence: dict[tuple[str, str], str] = {}

    def is_new(self, event: dict[str, Any]) -> bool:
        key = (event["source"], event["id"])
        if key in self._seen:
            return False
        # Per task object: a task deleted and created again under its name starts again at sequence 1.
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        task = (event.get("partitionkey", ""), str(data.get("uid", "")))
        sequence = event.get("sequence", "")
        if sequence and sequence <= self._last_sequence.get(task, ""):  # zero-padded: string order is order
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)
        if sequence:
            self._last_sequence[task] = sequence
        return True


def line(event: dict[str, Any]) -> str:
    kind = event["type"].removeprefix("dev.cronlet.run.").removesuffix(".v1")
    data = event.get("data") or {}
    attempt = f"attempt {data['attempt']}" if "attempt" in data else ""
    return "  ".join(
        part
        for part in (
            event.get("time", "-"),
            f"{event.get('partitionkey', '-'):<24}",
            f"#{event.get('sequence', '-')}",
            f"{kind:<9}",
            event.get("subject") or "-",
            attempt,
        )
        if part
    )


async def consume(args: argparse.Namespace) -> int:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        auto_offset_reset="earliest",  # a new group starts at the oldest event kept
        enable_auto_commit=False,  # committed after printing: a crash re-reads, never skips
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    dedupe = Deduplicator()
    printed = repeats = 0
    await consumer.start()
    try:
        last_record = loop.time()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                if args.idle_exit and loop.time() - last_record >= args.idle_exit:
                    break
                continue
            last_record = loop.time()
            for records in batches.values():
                for record in records:
                    event = parse(list(record.headers), record.value or b"")
                    if dedupe.is_new(event):
                        print(line(event), flush=True)
                        printed += 1
                    else:
                        repeats += 1
                        print(f"repeat dropped: {event['id']} (#{event.get('sequence')})", file=sys.stderr)
            await consumer.commit()
    finally:
        await consumer.stop()
    print(f"{printed} events, {repeats} repeats dropped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    )
    parser.add_argument("--topic", default="task-events")
    parser.add_argument(
        "--group", default="task-events-printer", help="consumer group (offsets are kept per group)"
    )
    parser.add_argument(
        "--idle-exit", type=float, default=0, help="exit after this many seconds without a record"
    )
    return asyncio.run(consume(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
