"""The API adapter's hygiene: every request has a timeout, and no answer is retried, counted and reported."""

from __future__ import annotations

import ast
import asyncio
import http.server
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import urllib3.exceptions
from kubernetes import client

from cronlet._controller import kube
from cronlet._controller.metrics import Metrics
from cronlet._core import ratelimit
from cronlet._core.ratelimit import Priority

SOURCE = Path(kube.__file__)


def _api_calls() -> list[ast.Call]:
    """Calls of the Kubernetes client's API objects (self.batch/core/custom.<method>(...)) in kube.py."""
    calls = []
    for node in ast.walk(ast.parse(SOURCE.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr in ("batch", "core", "custom", "coordination"):
                calls.append(node)
    return calls


def test_every_request_carries_a_timeout() -> None:
    calls = _api_calls()
    assert len(calls) >= 11
    missing = [
        f"line {c.lineno}: {ast.unparse(c.func)}"
        for c in calls
        if "_request_timeout" not in {k.arg for k in c.keywords}
    ]
    assert missing == []


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()),
        urllib3.exceptions.MaxRetryError(None, "/apis", reason="connection refused"),  # type: ignore[arg-type]
        urllib3.exceptions.ReadTimeoutError(None, "/apis", "read timed out"),  # type: ignore[arg-type]
        ConnectionRefusedError(),
    ],
)
def test_no_answer_is_retried_then_counted_and_reported(error: Exception) -> None:
    metrics = Metrics()
    adapter = kube.Kube(client.ApiClient(), metrics=metrics)
    tries = []

    def call() -> None:
        tries.append(1)
        raise error

    with pytest.raises(kube.ApiFailure) as failure:
        asyncio.run(adapter._call("patch", "scheduledtasks/status", call))
    assert failure.value.status == 0 and "no answer from the API server" in failure.value.message
    assert len(tries) == 4  # retried
    rendered = metrics.render().decode()
    assert 'cronlet_api_errors_total{resource="scheduledtasks/status",verb="patch"} 1.0' in rendered


def test_a_job_create_is_not_sent_once_its_claim_window_has_passed_however_late_the_thread_runs() -> None:
    """The window is checked in the sending thread just before each try: a create that waited in the thread
    pool, or behind a pause, past its claim's window is never sent (another replica may own it by now)."""
    adapter = kube.Kube(client.ApiClient(), metrics=Metrics())
    sent: list[str] = []

    class Batch:
        def create_namespaced_job(
            self, namespace: str, body: dict[str, object], **_: object
        ) -> SimpleNamespace:
            sent.append(namespace)
            return SimpleNamespace(data=json.dumps(body).encode())  # a raw answer, as kube asks for

    adapter.batch = Batch()  # type: ignore[assignment]
    manifest = {"metadata": {"namespace": "ns", "name": "t-1-1"}}
    with pytest.raises(kube.ClaimExpired):
        asyncio.run(adapter.create_job(manifest, not_after=time.monotonic() - 0.001))
    assert sent == []
    assert asyncio.run(adapter.create_job(manifest, not_after=time.monotonic() + 5)) == manifest
    assert sent == ["ns"]


def test_a_retry_after_no_answer_is_not_sent_past_the_claim_window() -> None:
    adapter = kube.Kube(client.ApiClient(), metrics=Metrics())
    tries: list[float] = []

    class Batch:
        def create_namespaced_job(
            self, namespace: str, body: dict[str, object], **_: object
        ) -> dict[str, object]:
            tries.append(time.monotonic())
            time.sleep(0.3)  # a slow answer that never comes
            raise urllib3.exceptions.ReadTimeoutError(None, "/apis", "read timed out")  # type: ignore[arg-type]

    adapter.batch = Batch()  # type: ignore[assignment]
    with pytest.raises(kube.ClaimExpired):
        asyncio.run(
            adapter.create_job(
                {"metadata": {"namespace": "ns", "name": "t-1-1"}}, not_after=time.monotonic() + 0.2
            )
        )
    assert len(tries) == 1


class _JobsServer:
    """A local HTTP server that answers every POST with the Job it was sent, and counts requests."""

    def __init__(self) -> None:
        posted: list[str] = []
        self.posted = posted

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                posted.append(self.path)
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self) -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return client.ApiClient(cfg)


def test_a_create_frozen_after_its_window_check_sends_no_byte_once_thawed() -> None:
    """The early check passed, then the process froze while the client built the request (serializing the
    body, getting a connection): the connection checks the window again just before writing, and sends
    nothing. Before that check, the thawed thread sent the create, and a Job another replica had re-claimed,
    created and pruned meanwhile was created a second time (the HA chaos test's duplicate)."""
    server = _JobsServer()
    try:
        api = server.client()
        adapter = kube.Kube(api, metrics=Metrics())
        manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "ns", "name": "t-1-1"}}
        assert (
            asyncio.run(adapter.create_job(manifest, not_after=time.monotonic() + 5))["metadata"]
            == (manifest["metadata"])
        )
        assert server.posted == ["/apis/batch/v1/namespaces/ns/jobs?fieldManager=cronlet"]

        serialize = api.sanitize_for_serialization

        def frozen(obj: object) -> object:
            time.sleep(0.3)  # a SIGSTOP between the early check and the socket write
            return serialize(obj)

        api.sanitize_for_serialization = frozen  # type: ignore[method-assign]
        with pytest.raises(kube.ClaimExpired):
            asyncio.run(adapter.create_job(manifest, not_after=time.monotonic() + 0.2))
        assert len(server.posted) == 1  # nothing more arrived
        api.sanitize_for_serialization = serialize  # type: ignore[method-assign]
        asyncio.run(adapter.create_job(manifest, not_after=time.monotonic() + 5))  # the thread is clean again
        assert len(server.posted) == 2
    finally:
        server.server.shutdown()


# -- the client-side rate limit ------------------------------------------------------------------------


class _Recording(kube.Limiter):
    """A limiter that never waits and notes the priority of every request."""

    def __init__(self) -> None:
        super().__init__(kube.UNLIMITED)
        self.seen: list[Priority] = []

    async def acquire(self, priority: Priority) -> float:
        self.seen.append(priority)
        return 0.0


class _Raw:
    """What the client returns with ``_preload_content=False``."""

    def __init__(self, body: dict[str, object]) -> None:
        self.data = json.dumps(body).encode()


def test_launches_and_the_lease_are_marked_ahead_of_bookkeeping() -> None:
    limiter = _Recording()
    adapter = kube.Kube(client.ApiClient(), metrics=Metrics(), limiter=limiter)
    job = {"metadata": {"name": "t-1", "namespace": "ns"}}
    adapter.batch = SimpleNamespace(create_namespaced_job=lambda *a, **k: _Raw(job))  # type: ignore[assignment]
    adapter.custom = SimpleNamespace(  # type: ignore[assignment]
        patch_namespaced_custom_object_status=lambda *a, **k: {"metadata": {}}
    )
    adapter.core = SimpleNamespace(  # type: ignore[assignment]
        list_namespaced_pod=lambda *a, **k: _Raw({"items": []}), create_namespaced_event=lambda *a, **k: None
    )
    adapter.coordination = SimpleNamespace(read_namespaced_lease=lambda *a, **k: {})  # type: ignore[assignment]

    async def run() -> None:
        assert await adapter.create_job(job) == job
        await adapter.patch_status("ns", "t", {}, resource_version="1", launch=True)
        await adapter.patch_status("ns", "t", {}, resource_version="2")
        assert await adapter.job_pods("ns", "t-1") == []
        await adapter.post_event(job)
        await adapter.read_lease("ns", "cronlet")

    asyncio.run(run())
    assert limiter.seen == [
        Priority.LAUNCH,
        Priority.LAUNCH,
        Priority.BOOKKEEPING,
        Priority.BOOKKEEPING,
        Priority.BOOKKEEPING,
        Priority.ELECTION,
    ]


def test_every_retry_takes_a_token_too() -> None:
    limiter = _Recording()
    adapter = kube.Kube(client.ApiClient(), metrics=Metrics(), limiter=limiter)

    def refused() -> None:
        raise ConnectionRefusedError()

    with pytest.raises(kube.ApiFailure):
        asyncio.run(adapter._call("create", "jobs", refused, priority=Priority.LAUNCH))
    assert limiter.seen == [Priority.LAUNCH] * 4


def test_when_the_budget_is_short_waiting_launches_go_first() -> None:
    # A real limiter on the event loop: 500 tokens a second, one at most, so the queue forms at once and
    # drains in a few milliseconds.
    async def run() -> list[str]:
        limiter = kube.Limiter(ratelimit.Limits(qps=500, burst=1))
        await limiter.acquire(Priority.BOOKKEEPING)  # the only token
        order: list[str] = []

        async def request(name: str, priority: Priority) -> None:
            await limiter.acquire(priority)
            order.append(name)

        await asyncio.gather(
            request("finish-1", Priority.BOOKKEEPING),
            request("claim-1", Priority.LAUNCH),
            request("event-1", Priority.BOOKKEEPING),
            request("create-1", Priority.LAUNCH),
        )
        return order

    assert asyncio.run(run()) == ["claim-1", "create-1", "finish-1", "event-1"]


def test_waiting_is_counted_by_priority() -> None:
    metrics = Metrics()
    adapter = kube.Kube(
        client.ApiClient(), metrics=metrics, limiter=kube.Limiter(ratelimit.Limits(qps=2, burst=1))
    )

    async def run() -> None:
        await adapter._call("create", "jobs", lambda: None, priority=Priority.LAUNCH)
        # Waits up to 0.5 s for its token (at 200/s, a first call slower than 5 ms on a busy machine left
        # nothing to wait for, and the test failed).
        await adapter._call("create", "events", lambda: None)

    asyncio.run(run())
    rendered = metrics.render().decode()
    assert 'cronlet_api_throttled_seconds_total{priority="bookkeeping"}' in rendered
    assert 'cronlet_api_throttled_seconds_total{priority="launch"}' not in rendered
