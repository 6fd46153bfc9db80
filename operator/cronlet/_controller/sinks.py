"""Sinks of task events: they move one encoded CloudEvent to Kafka or to an HTTP receiver, and say how it went.

Only I/O. What to send, in which order, when to retry and what to record is the publisher's; the bytes come
from ``cronlet._core.events.encode``. A sink's ``send`` returns once the receiver has acknowledged the
event (Kafka: written to every in-sync replica; HTTP: a 2xx answer) and raises ``SinkError`` otherwise::

    Exception
     ├── SinkError          one event was not acknowledged: .retryable, .reason, .retry_after (seconds)
     └── SinkConfigError    a sink cannot be built from its options (unknown mode, missing extra, ...)

A retryable error is one that a later attempt with the same bytes may get past: no connection, a timeout,
a broker without a leader, HTTP 408, 429 and 5xx. Not retryable: what the same request will meet again
(HTTP 4xx, an unauthorised topic, a record too large). Every send is bounded by a timeout (5 s by default),
so a receiver that is down costs the publisher seconds, never a hang.

Kafka needs the optional extra ``cronlet[kafka]`` (aiokafka), imported only when a Kafka sink starts, so that
an operator without it runs as long as no Kafka sink is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from cronlet._core import events

DEFAULT_TOPIC = "task-events"
DEFAULT_TIMEOUT = 5.0  # seconds per send; aiokafka's own default (40 s) would hold a task's events far longer
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MODES: tuple[events.Mode, ...] = ("binary", "structured")
RETRYABLE_STATUSES = frozenset({408, 429})  # and every 5xx


class SinkError(Exception):
    """One event was not acknowledged. ``retry_after``: seconds the receiver asked to wait (Retry-After)."""

    def __init__(self, *, retryable: bool, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.reason = reason
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"SinkError(retryable={self.retryable}, reason={self.reason!r}, retry_after={self.retry_after})"
        )


class SinkConfigError(ValueError):
    """The options do not make a usable sink; the message says which option and why."""


class Sink(Protocol):
    """Where task events go. ``name`` labels the sink in logs and metrics (``kafka``, ``http``)."""

    @property
    def name(self) -> str: ...

    async def send(self, event: events.CloudEvent) -> None:
        """Return once the receiver acknowledged ``event``; raise SinkError when it did not."""
        ...

    async def close(self) -> None:
        """Release connections. Safe to call more than once, and on a sink that never sent."""
        ...


# -- Kafka ---------------------------------------------------------------------------------------------


class KafkaSink:
    """Task events as Kafka records: key = ``event.partitionkey`` (one partition per task keeps its order).

    The producer is idempotent with acks=all (the broker drops its own retries' duplicates within one
    producer session) and is started on the first send, so that an operator starts while the broker is down.
    A producer whose start failed is discarded and made anew on the next send.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str | Sequence[str],
        topic: str = DEFAULT_TOPIC,
        mode: events.Mode = "binary",
        timeout: float = DEFAULT_TIMEOUT,
        client_id: str = "cronlet",
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        try:
            import aiokafka  # noqa: F401 - here, not at the top: the operator runs without the extra
        except ImportError as error:
            raise SinkConfigError("a Kafka sink needs aiokafka: install cronlet[kafka]") from error
        servers = [bootstrap_servers] if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
        servers = [s.strip() for item in servers for s in item.split(",") if s.strip()]
        if not servers:
            raise SinkConfigError("the Kafka sink needs at least one bootstrap server (host:port)")
        if not topic:
            raise SinkConfigError("the Kafka sink needs a topic")
        _check_mode(mode)
        if security_protocol not in SECURITY_PROTOCOLS:
            raise SinkConfigError(
                f"Kafka security protocol {security_protocol!r}: one of {SECURITY_PROTOCOLS}"
            )
        sasl = security_protocol.startswith("SASL_")
        if sasl and (sasl_mechanism not in SASL_MECHANISMS or not sasl_username or sasl_password is None):
            raise SinkConfigError(
                f"Kafka security protocol {security_protocol} needs a SASL mechanism (one of {SASL_MECHANISMS}), "
                "a username and a password"
            )
        if not sasl and (sasl_mechanism or sasl_username or sasl_password):
            raise SinkConfigError(f"SASL options need a SASL security protocol, not {security_protocol}")
        if not security_protocol.endswith("SSL") and (ssl_cafile or ssl_certfile or ssl_keyfile):
            raise SinkConfigError(
                f"TLS files need security protocol SSL or SASL_SSL, not {security_protocol}"
            )
        if bool(ssl_certfile) != bool(ssl_keyfile):
            raise SinkConfigError("a TLS client certificate needs both its certificate and its key file")
        self._servers = servers
        self._topic = topic
        self._mode = mode
        self._timeout = timeout
        self._client_id = client_id
        self._security_protocol = security_protocol
        self._sasl = (sasl_mechanism, sasl_username, sasl_password) if sasl else None
        self._ssl_files = (ssl_cafile, ssl_certfile, ssl_keyfile)
        self._producer: Any = None  # aiokafka.AIOKafkaProducer, started
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        return "kafka"

    @property
    def topic(self) -> str:
        return self._topic

    async def send(self, event: events.CloudEvent) -> None:
        from aiokafka import errors

        producer = await self._started()
        headers, body = events.encode(event, mode=self._mode, kafka=True)
        try:
            # The producer's own request timeout bounds the send; wait_for only guards a producer that
            # never gets as far as a request (no metadata for the topic, for one).
            await asyncio.wait_for(
                producer.send_and_wait(
                    self._topic,
                    value=body,
                    key=event.partitionkey.encode(),
                    headers=[(name, value.encode()) for name, value in headers],
                ),
                timeout=self._timeout + 1.0,
            )
        except (TimeoutError, errors.KafkaTimeoutError) as error:
            raise SinkError(
                retryable=True, reason=f"Kafka: no acknowledgement within {self._timeout:g} s"
            ) from error
        except errors.ProducerClosed as error:
            raise SinkError(retryable=False, reason="Kafka: the sink is closed") from error
        except errors.KafkaError as error:
            raise SinkError(retryable=bool(error.retriable), reason=f"Kafka: {_describe(error)}") from error

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_producer(producer, timeout=self._timeout)

    async def _started(self) -> Any:
        from aiokafka import errors

        async with self._lock:
            if self._closed:
                raise SinkError(retryable=False, reason="Kafka: the sink is closed")
            if self._producer is not None:
                return self._producer
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), timeout=self._timeout)
            except (TimeoutError, errors.KafkaError, OSError) as error:
                # A producer that failed to start cannot be started again: drop it, make one next time.
                await _stop_producer(producer, timeout=self._timeout)
                reason = "no answer" if isinstance(error, TimeoutError) else _describe(error)
                retryable = not isinstance(error, errors.KafkaError) or bool(error.retriable)
                raise SinkError(
                    retryable=retryable,
                    reason=f"Kafka: cannot connect to {','.join(self._servers)}: {reason}",
                ) from error
            self._producer = producer
            return producer

    def _new_producer(self) -> Any:
        import aiokafka
        from aiokafka import helpers

        timeout_ms = max(1, math.ceil(self._timeout * 1000))
        options: dict[str, Any] = {
            "bootstrap_servers": self._servers,
            "client_id": self._client_id,
            "enable_idempotence": True,
            "acks": "all",
            "request_timeout_ms": timeout_ms,
            "security_protocol": self._security_protocol,
        }
        if self._security_protocol.endswith("SSL"):
            cafile, certfile, keyfile = self._ssl_files
            options["ssl_context"] = helpers.create_ssl_context(
                cafile=cafile, certfile=certfile, keyfile=keyfile
            )
        if self._sasl is not None:
            mechanism, username, password = self._sasl
            options |= {
                "sasl_mechanism": mechanism,
                "sasl_plain_username": username,
                "sasl_plain_password": password,
            }
        return aiokafka.AIOKafkaProducer(**options)


async def _stop_producer(producer: Any, *, timeout: float) -> None:
    # stop() flushes what is still queued; with the broker gone that waits for the request timeout. Closing
    # never fails the caller: what was not acknowledged was reported so by its send.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), timeout=timeout + 1.0)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# -- HTTP ----------------------------------------------------------------------------------------------


class HttpSink:
    """Task events as HTTP POSTs, binary content mode by default (``ce-*`` headers, the data as the body).

    Extra request headers (say ``Authorization``) come from ``headers`` and from ``headers_file``: lines of
    ``Name: value``, as a mounted Secret holds them, read again whenever the file changes (a rotated token
    is used without a restart). Redirects are not followed: a POST redirected is a misconfigured URL.
    """

    def __init__(
        self,
        *,
        url: str,
        mode: events.Mode = "binary",
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        headers_file: Path | str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise SinkConfigError(f"the HTTP sink's URL must start with http:// or https://, not {url!r}")
        _check_mode(mode)
        self._url = url
        self._mode = mode
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._headers_file = Path(headers_file) if headers_file is not None else None
        self._file_headers: dict[str, str] = {}
        self._file_stamp: tuple[int, int] | None = None
        if self._headers_file is not None:
            self._read_headers_file()  # a missing or malformed file fails at start, not at the first event
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return "http"

    @property
    def url(self) -> str:
        return self._url

    async def send(self, event: events.CloudEvent) -> None:
        if self._closed:
            raise SinkError(retryable=False, reason="HTTP: the sink is closed")
        encoded, body = events.encode(event, mode=self._mode, kafka=False)
        headers = {**self._headers, **self._current_file_headers(), **dict(encoded)}
        session = self._session_for_loop()
        try:
            async with session.post(self._url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"), now=time.time())
                await response.read()  # so that the connection goes back to the pool
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise SinkError(retryable=True, reason=f"HTTP: no answer within {self._timeout:g} s") from error
        except aiohttp.ClientError as error:
            raise SinkError(retryable=True, reason=f"HTTP: {_describe(error)}") from error
        if 200 <= status < 300:
            return
        retryable = status in RETRYABLE_STATUSES or status >= 500
        raise SinkError(
            retryable=retryable,
            reason=f"HTTP {status} from {self._url}",
            retry_after=retry_after if retryable else None,
        )

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": "cronlet"},
            )
        return self._session

    def _current_file_headers(self) -> dict[str, str]:
        if self._headers_file is None:
            return {}
        try:
            info = self._headers_file.stat()
        except OSError:
            return self._file_headers  # a Secret volume is swapped atomically; keep the last good headers
        if (info.st_mtime_ns, info.st_size) != self._file_stamp:
            try:
                self._read_headers_file()
            except (OSError, SinkConfigError):
                return self._file_headers
        return self._file_headers

    def _read_headers_file(self) -> None:
        assert self._headers_file is not None
        try:
            info = self._headers_file.stat()
            text = self._headers_file.read_text()
        except OSError as error:
            raise SinkConfigError(
                f"cannot read the HTTP sink's headers file {self._headers_file}: {error}"
            ) from error
        self._file_headers = parse_headers(text, origin=str(self._headers_file))
        self._file_stamp = (info.st_mtime_ns, info.st_size)


def parse_headers(text: str, *, origin: str) -> dict[str, str]:
    """``Name: value`` lines (blank lines and ``#`` comments skipped) as a dict; SinkConfigError if malformed."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, value = stripped.partition(":")
        name = name.strip()
        if not colon or not name or any(c in name for c in ' \t"(),/;<=>?@[\\]{}'):
            raise SinkConfigError(f"{origin}, line {number}: expected 'Name: value'")
        if name.lower() == "content-type" or name.lower().startswith("ce-"):
            raise SinkConfigError(f"{origin}, line {number}: {name} is set by the event encoding")
        out[name] = value.strip()
    return out


def _retry_after(value: str | None, *, now: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise SinkConfigError(f"content mode {mode!r}: one of {MODES}")


# -- from the operator's options -------------------------------------------------------------------------


def from_options(
    *,
    kafka_bootstrap_servers: str | None = None,
    kafka_topic: str = DEFAULT_TOPIC,
    kafka_mode: events.Mode = "binary",
    kafka_security_protocol: str = "PLAINTEXT",
    kafka_sasl_mechanism: str | None = None,
    kafka_sasl_username: str | None = None,
    kafka_sasl_password: str | None = None,
    kafka_ssl_cafile: str | None = None,
    kafka_ssl_certfile: str | None = None,
    kafka_ssl_keyfile: str | None = None,
    http_url: str | None = None,
    http_mode: events.Mode = "binary",
    http_headers_file: str | None = None,
    http_headers: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Sink]:
    """The sinks that the options configure: Kafka when bootstrap servers are given, HTTP when a URL is.

    ``http_headers`` is ``Name: value`` lines (as an environment variable from a Secret carries them).
    No sink at all is an empty list: events are then not published. Raises SinkConfigError.
    """
    sinks: list[Sink] = []
    if kafka_bootstrap_servers:
        sinks.append(
            KafkaSink(
                bootstrap_servers=kafka_bootstrap_servers,
                topic=kafka_topic,
                mode=kafka_mode,
                timeout=timeout,
                security_protocol=kafka_security_protocol,
                sasl_mechanism=kafka_sasl_mechanism or None,
                sasl_username=kafka_sasl_username or None,
                sasl_password=kafka_sasl_password,
                ssl_cafile=kafka_ssl_cafile or None,
                ssl_certfile=kafka_ssl_certfile or None,
                ssl_keyfile=kafka_ssl_keyfile or None,
            )
        )
    if http_url:
        sinks.append(
            HttpSink(
                url=http_url,
                mode=http_mode,
                timeout=timeout,
                headers=parse_headers(http_headers, origin="the HTTP sink's headers")
                if http_headers
                else None,
                headers_file=http_headers_file or None,
            )
        )
    return sinks
