"""The test broker itself (tools/localkube/kafka.py): it serves an idempotent producer and a consumer group,
records keep their headers, and a stopped broker started again still has what it had.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiokafka import AIOKafkaProducer
from helpers import kafka_records

from localkube import kafka as localkube_kafka

pytestmark = pytest.mark.binaries


async def _produce(
    servers: str, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=True, request_timeout_ms=10000)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def test_a_record_comes_back_with_its_key_and_headers(
    kafka_broker: localkube_kafka.KafkaBroker, kafka_topic: str
) -> None:
    headers = [("ce_id", b"abc"), ("content-type", b"application/json")]
    asyncio.run(_produce(kafka_broker.bootstrap_servers, kafka_topic, [(b"ns/task", b'{"n":1}', headers)]))
    got = asyncio.run(kafka_records(kafka_broker.bootstrap_servers, kafka_topic, 1))
    assert [(r.key, r.value, list(r.headers)) for r in got] == [(b"ns/task", b'{"n":1}', headers)]


def test_records_survive_a_stop_and_a_start(
    kafka_broker: localkube_kafka.KafkaBroker, kafka_topic: str
) -> None:
    servers = kafka_broker.bootstrap_servers
    asyncio.run(_produce(servers, kafka_topic, [(b"k", b"before", [])]))
    kafka_broker.stop()
    assert kafka_broker.exit_code == 143  # the JVM's exit on SIGTERM after its shutdown hooks: a clean stop
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=1.0).close()
    kafka_broker.start()
    assert kafka_broker.bootstrap_servers == servers  # same port: clients configured before still reach it
    asyncio.run(_produce(servers, kafka_topic, [(b"k", b"after", [])]))
    got = asyncio.run(kafka_records(servers, kafka_topic, 2))
    assert [r.value for r in got] == [b"before", b"after"]
