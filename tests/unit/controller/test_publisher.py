"""The publisher: each task's outbox goes to every sink in order; a retryable failure holds the task's later
events back (order), a final refusal skips only that event; what every sink acknowledged is what the next
status write may drop; a standby sends nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from cronlet._controller import publisher, sinks, store
from cronlet._controller.metrics import Metrics
from cronlet._core import events


class FakeSink:
    def __init__(self, name: str, failures: list[sinks.SinkError | None] | None = None) -> None:
        self.name = name
        self.sent: list[str] = []
        self.failures = list(failures or [])

    async def send(self, event: events.CloudEvent) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.sent.append(event.sequence)

    async def close(self) -> None:
        pass


def _task(pending: int, *, uid: str = "u1") -> dict[str, Any]:
    entries = [
        {
            "sequence": n,
            "kind": "started",
            "time": "2026-01-01T00:00:00Z",
            "runId": f"r{n}",
            "attempt": 1,
            "scheduledTime": "2026-01-01T00:00:00Z",
        }
        for n in range(1, pending + 1)
    ]
    return {
        "metadata": {
            "namespace": "ns",
            "name": "t",
            "uid": uid,
            "resourceVersion": "1",
            "labels": {"a": "b"},
        },
        "spec": {"schedule": "* * * * *", "handler": "echo"},
        "status": {"events": {"sequence": pending, "pending": entries}},
    }


def _publisher(*sinks_: FakeSink, leading: bool = True) -> publisher.Publisher:
    s = store.Store()
    s.put_task(_task(3))
    return publisher.Publisher(sinks=list(sinks_), store=s, metrics=Metrics(), leading=lambda: leading)


def test_every_sink_gets_the_outbox_in_order_and_the_acknowledged_position_is_the_lowest() -> None:
    kafka, web = FakeSink("kafka"), FakeSink("http", [None, sinks.SinkError(retryable=True, reason="503")])
    pub = _publisher(kafka, web)

    async def go() -> None:
        await pub.publish(("ns", "t"))
        for handle in pub._retries.values():
            handle.cancel()

    asyncio.run(go())
    assert kafka.sent == [events.sequence(n) for n in (1, 2, 3)]
    assert web.sent == [events.sequence(1)]  # 2 failed retryably: 3 waits behind it
    assert pub.acked("ns", "t", "u1") == 1
    assert pub.policy("ns", "t", "u1").acked == 1
    assert pub.acked("ns", "t", "another-uid") == 0  # a re-created task starts from nothing

    asyncio.run(go())  # the retry
    assert web.sent == [events.sequence(n) for n in (1, 2, 3)]
    assert kafka.sent == [events.sequence(n) for n in (1, 2, 3)]  # nothing twice to the sink that had them
    assert pub.acked("ns", "t", "u1") == 3


def test_a_final_refusal_skips_that_event_only() -> None:
    web = FakeSink("http", [sinks.SinkError(retryable=False, reason="400 Bad Request")])
    pub = _publisher(web)
    asyncio.run(pub.publish(("ns", "t")))
    assert web.sent == [events.sequence(2), events.sequence(3)]
    assert pub.acked("ns", "t", "u1") == 3
    assert 'cronlet_events_failed_total{retryable="false",sink="http"} 1.0' in pub.metrics.render().decode()


def test_a_standby_sends_nothing() -> None:
    web = FakeSink("http")
    pub = _publisher(web, leading=False)
    asyncio.run(pub.publish(("ns", "t")))
    assert web.sent == [] and pub.acked("ns", "t", "u1") == 0


def test_a_reset_outbox_is_sent_again_from_its_first_event() -> None:
    web = FakeSink("http")
    pub = _publisher(web)
    asyncio.run(pub.publish(("ns", "t")))
    pub.store.tasks[("ns", "t")] = {**_task(5), "status": {"events": {"sequence": 5, "pending": []}}}
    asyncio.run(pub.publish(("ns", "t")))
    assert pub.acked("ns", "t", "u1") == 3
    pub.store.tasks[("ns", "t")] = _task(2)  # the status was removed: counting starts again at 1
    web.sent.clear()
    asyncio.run(pub.publish(("ns", "t")))
    assert web.sent == [events.sequence(1), events.sequence(2)]


def test_a_nudge_keeps_a_failing_sinks_backoff() -> None:
    web = FakeSink("http", [sinks.SinkError(retryable=True, reason="503")])
    pub = _publisher(web)

    async def go() -> tuple[int, int]:
        await pub.publish(("ns", "t"))  # fails: a retry is scheduled
        pub.nudge(("ns", "t"), "ns", "t", "u1", 3)
        waiting = len(pub.queue)
        pub.forget(("ns", "t"))
        pub.nudge(("ns", "t"), "ns", "t", "u1", 3)
        return waiting, len(pub.queue)

    assert asyncio.run(go()) == (0, 1)


def _gauge(pub: publisher.Publisher, name: str) -> float:
    for line in pub.metrics.render().decode().splitlines():
        if line.startswith(f'{name}{{sink="http"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


def test_the_pending_gauges_count_what_no_sink_acknowledged_across_tasks_when_scraped() -> None:
    web = FakeSink("http", [None, sinks.SinkError(retryable=True, reason="503")])
    pub = _publisher(web)
    other = _task(2, uid="u2")
    other["metadata"]["name"] = "u"
    pub.store.put_task(other)

    async def go() -> None:
        await pub.publish(("ns", "t"))  # 1 sent, 2 failed: 2 and 3 pending
        await pub.publish(("ns", "u"))  # both sent
        for handle in pub._retries.values():
            handle.cancel()

    asyncio.run(go())
    assert _gauge(pub, "cronlet_events_pending") == 2
    assert _gauge(pub, "cronlet_events_oldest_pending_time_seconds") == 1767225600.0  # 2026-01-01T00:00:00Z
    pub.forget(("ns", "t"))  # deleted: its pending events are gone with it
    assert _gauge(pub, "cronlet_events_pending") == 0
    assert _gauge(pub, "cronlet_events_oldest_pending_time_seconds") == 0


def test_a_task_re_created_under_the_same_name_is_sent_from_its_first_event() -> None:
    web = FakeSink("http")
    pub = _publisher(web)
    asyncio.run(pub.publish(("ns", "t")))
    pub.store.put_task(_task(1, uid="u2"))
    web.sent.clear()
    asyncio.run(pub.publish(("ns", "t")))
    assert web.sent == [events.sequence(1)]
    assert pub.acked("ns", "t", "u2") == 1 and pub.acked("ns", "t", "u1") == 0
