"""The HTTP sink against a real HTTP receiver on 127.0.0.1 (aiohttp's server, in the test's event loop), and
the sinks' options. What arrives is parsed by the cloudevents SDK, an independent reader of the binding.

The Kafka sink against a real broker: tests/integration/test_sinks_kafka.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cloudevents.core.bindings import http as ce_http
from helpers import sdk_view, task_event

from cronlet._controller import sinks
from cronlet._core import events
from localkube import ports

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    reply: Reply | None = None


@asynccontextmanager
async def receiver(reply: Reply | None = None) -> AsyncIterator[Receiver]:
    """An HTTP server on 127.0.0.1 that records every request and answers with ``reply`` (default 204)."""
    got = Receiver(url="", reply=reply)

    async def handle(request: web.Request) -> web.StreamResponse:
        got.requests.append((dict(request.headers), await request.read()))
        if got.reply is not None:
            return await got.reply(request)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    got.url = f"http://127.0.0.1:{port}/events"
    try:
        yield got
    finally:
        await runner.cleanup()


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers=headers)

    return reply


def run(coroutine: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coroutine

    return asyncio.run(main())


async def send_one(url: str, event: events.CloudEvent, **options: Any) -> None:
    sink = sinks.HttpSink(url=url, **options)
    try:
        await sink.send(event)
    finally:
        await sink.close()


# -- what arrives ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_the_receiver_reads_the_same_event_with_the_cloudevents_sdk(mode: events.Mode) -> None:
    event = task_event(kind="retrying", number=7)

    async def go() -> list[tuple[dict[str, str], bytes]]:
        async with receiver() as r:
            await send_one(r.url, event, mode=mode)
            return r.requests

    [(headers, body)] = run(go())
    parsed = sdk_view(ce_http.from_http_event(ce_http.HTTPMessage(headers=headers, body=body)))
    assert parsed == {
        "attributes": {**event.attributes(), "datacontenttype": "application/json"},
        "data": dict(event.data),
    }
    if mode == "binary":
        assert headers["Content-Type"] == "application/json"
        assert headers["ce-id"] == event.id and headers["ce-sequence"] == "000000000007"
    else:
        assert headers["Content-Type"] == "application/cloudevents+json; charset=UTF-8"
        assert not any(name.lower().startswith("ce-") for name in headers)


def test_events_of_one_sink_share_a_connection() -> None:
    async def go() -> list[tuple[dict[str, str], bytes]]:
        async with receiver() as r:
            sink = sinks.HttpSink(url=r.url)
            try:
                for number in range(1, 4):
                    await sink.send(task_event(number=number))
            finally:
                await sink.close()
            return r.requests

    got = run(go())
    assert [h["ce-sequence"] for h, _ in got] == ["000000000001", "000000000002", "000000000003"]
    assert all(h.get("Connection", "keep-alive").lower() != "close" for h, _ in got)


# -- acknowledged or not, and whether to retry -------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 201, 202, 204])
def test_a_2xx_is_an_acknowledgement(code: int) -> None:
    async def go() -> int:
        async with receiver(status(code)) as r:
            await send_one(r.url, task_event())
            return len(r.requests)

    assert run(go()) == 1


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (413, False),
        (422, False),
        # A redirected POST is a wrong URL; aiohttp would follow 301/302 as a GET without the event.
        (301, False),
        (307, False),
    ],
)
def test_failures_say_whether_a_retry_can_help(code: int, retryable: bool) -> None:
    headers = {"Location": "/elsewhere"} if 300 <= code < 400 else None

    async def go() -> tuple[sinks.SinkError, int]:
        async with receiver(status(code, headers)) as r:
            with pytest.raises(sinks.SinkError) as caught:
                await send_one(r.url, task_event())
            return caught.value, len(r.requests)

    error, requests = run(go())
    assert (error.retryable, requests) == (retryable, 1)  # a redirect was not followed
    assert f"HTTP {code}" in error.reason


def test_429_carries_retry_after_in_seconds() -> None:
    async def go() -> sinks.SinkError:
        async with receiver(status(429, {"Retry-After": "7"})) as r:
            with pytest.raises(sinks.SinkError) as caught:
                await send_one(r.url, task_event())
            return caught.value

    error = run(go())
    assert (error.retryable, error.retry_after) == (True, 7.0)


def test_503_with_an_http_date_in_retry_after() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)

    async def go() -> sinks.SinkError:
        async with receiver(status(503, {"Retry-After": when})) as r:
            with pytest.raises(sinks.SinkError) as caught:
                await send_one(r.url, task_event())
            return caught.value

    error = run(go())
    assert error.retryable and error.retry_after is not None and 25 <= error.retry_after <= 31


def test_a_4xx_gives_no_retry_after_even_if_sent() -> None:
    async def go() -> sinks.SinkError:
        async with receiver(status(400, {"Retry-After": "5"})) as r:
            with pytest.raises(sinks.SinkError) as caught:
                await send_one(r.url, task_event())
            return caught.value

    assert run(go()).retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("Wed, 02 Dec 2026 10:00:30 GMT", 30.0),
        ("Wed, 02 Dec 2026 09:59:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # RFC 9110: delta-seconds are digits only
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 02 Dec 2026 10:00:00 GMT").timestamp()
    assert sinks._retry_after(value, now=now) == expected


def test_no_listener_is_retryable() -> None:
    url = f"http://127.0.0.1:{ports.free_port()}/events"  # free a moment ago: nothing listens there
    with pytest.raises(sinks.SinkError) as caught:
        run(send_one(url, task_event()))
    assert caught.value.retryable and caught.value.retry_after is None


def test_a_receiver_that_does_not_answer_in_time_is_retryable_and_bounded() -> None:
    async def go() -> tuple[sinks.SinkError, float]:
        answer = asyncio.Event()

        async def slow(request: web.Request) -> web.StreamResponse:
            await answer.wait()  # answers only after the sink gave up (and so lets the server shut down)
            return web.Response(status=204)

        async with receiver(slow) as r:
            began = time.monotonic()
            with pytest.raises(sinks.SinkError) as caught:
                await send_one(r.url, task_event(), timeout=0.5)
            took = time.monotonic() - began
            answer.set()
        return caught.value, took

    error, took = run(go())
    assert error.retryable and "within 0.5 s" in error.reason
    assert 0.4 < took < 2.0


def test_a_closed_sink_refuses_to_send() -> None:
    async def go() -> sinks.SinkError:
        async with receiver() as r:
            sink = sinks.HttpSink(url=r.url)
            await sink.close()
            await sink.close()  # twice is fine
            with pytest.raises(sinks.SinkError) as caught:
                await sink.send(task_event())
            return caught.value

    assert run(go()).retryable is False


# -- extra headers (authentication) --------------------------------------------------------------------------


def test_headers_from_options_and_from_a_file_that_changes(tmp_path: Path) -> None:
    secret = tmp_path / "headers"
    secret.write_text("# mounted from a Secret\nAuthorization: Bearer one\n\nX-Tenant: a\n")

    async def go() -> list[tuple[dict[str, str], bytes]]:
        async with receiver() as r:
            sink = sinks.HttpSink(
                url=r.url, headers={"X-Static": "s", "X-Tenant": "from-options"}, headers_file=secret
            )
            try:
                await sink.send(task_event(number=1))
                secret.write_text("Authorization: Bearer two, rotated\n")  # a different size: seen as changed
                await sink.send(task_event(number=2))
                secret.unlink()  # mid-swap of a Secret volume: the last good headers stay
                await sink.send(task_event(number=3))
            finally:
                await sink.close()
            return r.requests

    first, second, third = (h for h, _ in run(go()))
    assert (first["Authorization"], first["X-Tenant"], first["X-Static"]) == ("Bearer one", "a", "s")
    assert (second["Authorization"], second["X-Tenant"]) == ("Bearer two, rotated", "from-options")
    assert third["Authorization"] == "Bearer two, rotated"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Authorization Bearer x\n", "line 1: expected 'Name: value'"),
        ("X-Ok: 1\nBad Name: x\n", "line 2: expected 'Name: value'"),
        ("Content-Type: text/plain\n", "set by the event encoding"),
        ("ce-id: forged\n", "set by the event encoding"),
    ],
)
def test_a_malformed_headers_file_fails_when_the_sink_is_built(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "headers"
    path.write_text(text)
    with pytest.raises(sinks.SinkConfigError, match=message):
        sinks.HttpSink(url="http://127.0.0.1:1/", headers_file=path)


def test_a_missing_headers_file_fails_when_the_sink_is_built(tmp_path: Path) -> None:
    with pytest.raises(sinks.SinkConfigError, match="cannot read"):
        sinks.HttpSink(url="http://127.0.0.1:1/", headers_file=tmp_path / "absent")


# -- building sinks from options -----------------------------------------------------------------------------


def test_from_options_builds_what_is_configured() -> None:
    assert sinks.from_options() == []
    built = sinks.from_options(
        kafka_bootstrap_servers="127.0.0.1:9092, 127.0.0.1:9093",
        kafka_topic="runs",
        http_url="https://hooks.example.com/cronlet",
        http_headers="Authorization: Bearer x",
    )
    assert [s.name for s in built] == ["kafka", "http"]
    kafka, http = built
    assert isinstance(kafka, sinks.KafkaSink) and kafka.topic == "runs"
    assert kafka._servers == ["127.0.0.1:9092", "127.0.0.1:9093"]
    assert isinstance(http, sinks.HttpSink) and http.url == "https://hooks.example.com/cronlet"
    assert sinks.KafkaSink(bootstrap_servers="b:9092").topic == "task-events"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bootstrap_servers": " , "}, "at least one bootstrap server"),
        ({"bootstrap_servers": "b:9092", "mode": "batched"}, "content mode 'batched'"),
        ({"bootstrap_servers": "b:9092", "security_protocol": "TLS"}, "security protocol 'TLS'"),
        ({"bootstrap_servers": "b:9092", "security_protocol": "SASL_SSL"}, "needs a SASL mechanism"),
        (
            {"bootstrap_servers": "b:9092", "security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI",
             "sasl_username": "u", "sasl_password": "p"},
            "needs a SASL mechanism",
        ),
        ({"bootstrap_servers": "b:9092", "sasl_username": "u"}, "SASL options need a SASL security protocol"),
        ({"bootstrap_servers": "b:9092", "ssl_cafile": "/ca.pem"}, "TLS files need security protocol SSL"),
        (
            {"bootstrap_servers": "b:9092", "security_protocol": "SSL", "ssl_certfile": "/c.pem"},
            "both its certificate and its key",
        ),
    ],
)  # fmt: skip
def test_kafka_options_that_make_no_sink(options: dict[str, Any], message: str) -> None:
    with pytest.raises(sinks.SinkConfigError, match=message):
        sinks.KafkaSink(**options)


def test_kafka_sasl_over_tls_is_accepted() -> None:
    sink = sinks.KafkaSink(
        bootstrap_servers="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="cronlet",
        sasl_password="secret",
    )
    assert sink.name == "kafka"


@pytest.mark.parametrize("url", ["ftp://x/", "127.0.0.1:8080/events", ""])
def test_http_urls_that_make_no_sink(url: str) -> None:
    with pytest.raises(sinks.SinkConfigError, match="http:// or https://"):
        sinks.HttpSink(url=url)


def test_the_operator_runs_without_the_kafka_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "aiokafka", None)  # what `import aiokafka` meets when it is absent
    with pytest.raises(sinks.SinkConfigError, match=r"install cronlet\[kafka\]"):
        sinks.KafkaSink(bootstrap_servers="b:9092")
    assert [s.name for s in sinks.from_options(http_url="http://127.0.0.1:1/")] == ["http"]
