"""The API adapter's hygiene: every request has a timeout, and no answer is retried, counted and reported."""

from __future__ import annotations

import ast
import asyncio
import time
from pathlib import Path

import pytest
import urllib3.exceptions
from kubernetes import client

from cronlet._controller import kube
from cronlet._controller.metrics import Metrics

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
        ) -> dict[str, object]:
            sent.append(namespace)
            return body

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
