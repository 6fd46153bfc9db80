"""The Kafka sink against the real broker (tools/localkube/kafka.py): what a consumer reads is parsed by the
cloudevents SDK's Kafka binding, events of one task stay in one partition in order, and a broker that goes
away and comes back costs a bounded, retryable failure, then the same sink delivers again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from helpers import kafka_records, sdk_view, task_event

from cronlet._controller import sinks
from cronlet._core import events
from localkube import kafka as localkube_kafka
from localkube import ports

pytestmark = pytest.mark.binaries


def parse(record: Any) -> dict[str, Any]:
    message = ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return sdk_view(ce_kafka.from_kafka(message, JSONFormat()))


async def send_all(sink: sinks.KafkaSink, batch: list[events.CloudEvent]) -> None:
    try:
        for event in batch:
            await sink.send(event)
    finally:
        await sink.close()


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_consumer_reads_every_event_as_sent_in_order_per_task(
    kafka_broker: localkube_kafka.KafkaBroker, kafka_topic: str, mode: events.Mode
) -> None:
    sent = [task_event(name=name, number=n) for n in (1, 2, 3) for name in ("report", "backup")]
    sink = sinks.KafkaSink(bootstrap_servers=kafka_broker.bootstrap_servers, topic=kafka_topic, mode=mode)
    asyncio.run(send_all(sink, sent))

    records = asyncio.run(kafka_records(kafka_broker.bootstrap_servers, kafka_topic, len(sent)))
    assert len(records) == len(sent)
    by_id = {e.id: e for e in sent}
    for record in records:
        event = by_id[parse(record)["attributes"]["id"]]
        assert parse(record) == {
            "attributes": {**event.attributes(), "datacontenttype": "application/json"},
            "data": dict(event.data),
        }
        assert record.key == event.partitionkey.encode()
        headers = dict(record.headers)
        if mode == "binary":
            assert headers["content-type"] == b"application/json"
            # The SDK fills partitionkey from the record's key: the header itself is checked here.
            assert headers["ce_partitionkey"] == event.partitionkey.encode()
        else:
            assert headers == {"content-type": b"application/cloudevents+json; charset=UTF-8"}
    for key in (b"ns/report", b"ns/backup"):
        mine = [r for r in records if r.key == key]
        assert len({r.partition for r in mine}) == 1  # one partition per task, so one order
        assert [parse(r)["attributes"]["sequence"] for r in mine] == [events.sequence(n) for n in (1, 2, 3)]


def test_the_broker_away_and_back(kafka_broker: localkube_kafka.KafkaBroker, kafka_topic: str) -> None:
    first, second, third = (task_event(number=n) for n in (1, 2, 3))
    servers = kafka_broker.bootstrap_servers

    async def go() -> tuple[sinks.SinkError, float, int]:
        sink = sinks.KafkaSink(bootstrap_servers=servers, topic=kafka_topic, timeout=2.0)
        try:
            await sink.send(first)
            # Blocking the loop on purpose: the JVM dies with the thread that started it, so not to_thread.
            kafka_broker.stop()
            began = time.monotonic()
            with pytest.raises(sinks.SinkError) as caught:
                await sink.send(second)
            took = time.monotonic() - began
            kafka_broker.start()
            # As the publisher will: the same event again (same id) until it is acknowledged.
            tries = 1
            while True:
                try:
                    await sink.send(second)
                    break
                except sinks.SinkError as error:
                    assert error.retryable and tries < 10, error
                    tries += 1
            await sink.send(third)
        finally:
            await sink.close()
        return caught.value, took, tries

    error, took, tries = asyncio.run(go())
    assert error.retryable, error
    assert took < 5.0  # bounded by the 2 s timeout, not aiokafka's default 40 s
    records = asyncio.run(kafka_records(servers, kafka_topic, 3, timeout=15))
    ids = [parse(r)["attributes"]["id"] for r in records]
    # At least once: the unacknowledged send may have landed too; deduplicated by id, order is kept.
    assert list(dict.fromkeys(ids)) == [first.id, second.id, third.id], (ids, tries)


def test_a_sink_made_while_nothing_listens_fails_retryably_within_its_timeout() -> None:
    sink = sinks.KafkaSink(bootstrap_servers=f"127.0.0.1:{ports.free_port()}", timeout=1.0)

    async def go() -> tuple[sinks.SinkError, float]:
        began = time.monotonic()
        try:
            with pytest.raises(sinks.SinkError) as caught:
                await sink.send(task_event())
        finally:
            await sink.close()
        return caught.value, time.monotonic() - began

    error, took = asyncio.run(go())
    assert error.retryable and "cannot connect" in error.reason
    assert took < 4.0


def test_an_event_too_large_for_the_broker_is_not_retryable(
    kafka_broker: localkube_kafka.KafkaBroker, kafka_topic: str
) -> None:
    huge = task_event(data={"message": "x" * 2_000_000})  # above the 1 MiB request and message limits
    sink = sinks.KafkaSink(bootstrap_servers=kafka_broker.bootstrap_servers, topic=kafka_topic)
    with pytest.raises(sinks.SinkError) as caught:
        asyncio.run(send_all(sink, [huge]))
    assert caught.value.retryable is False, caught.value
