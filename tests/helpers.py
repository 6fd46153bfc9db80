"""Helpers shared by Cronlet's tests: waiting for a condition, a throwaway namespace, the pinned kubectl.

For: the few lines every integration test would otherwise repeat. Must not: hold fixtures (those are in
conftest.py), sleep as an assertion (``wait_for`` polls a condition and fails with what it last saw), or
use a kubectl from PATH (it is usually another version than the cluster's).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from localkube import binaries

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.2,
    *,
    message: str | Callable[[], str],
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Exceptions of the types in ``ignore`` count as "not yet" (e.g. a 404 before an object exists).
    On timeout: AssertionError with ``message``, the last value and the last ignored error.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            last = predicate()
            error = None
            if last:
                return last
        except ignore as caught:
            error = caught
        if time.monotonic() >= deadline:
            detail = f"last value: {last!r}" + (f"; last error: {error!r}" if error is not None else "")
            text = message() if callable(message) else message  # a callable is read only on timeout
            raise AssertionError(f"timed out after {timeout} s waiting for: {text} ({detail})")
        time.sleep(interval)


def kubectl(
    kubeconfig: str, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run the pinned kubectl against ``kubeconfig``; with ``check``, a failure is an AssertionError."""
    argv = [str(binaries.find("kubectl")), f"--kubeconfig={kubeconfig}", *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def operator_metrics() -> set[str]:
    """Series names the operator exports (cronlet._controller.metrics), as PromQL sees them."""
    from cronlet._controller.metrics import Metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        if family.name.startswith("cronlet_")
        for suffix in suffixes[family.type]
    }


def tool(name: str) -> Path:
    """A binary built by tools/build.sh; fails the test (not skips) when it is missing."""
    try:
        return binaries.find(name)
    except binaries.MissingBinaryError as error:
        pytest.fail(str(error), pytrace=False)


@contextlib.contextmanager
def throwaway_namespace(kube: Any, name: str, labels: dict[str, str]) -> Iterator[str]:
    """Create namespace ``name``; on exit delete it without waiting for it to go (a 404 is fine)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


def task_event(
    *, namespace: str = "ns", name: str = "report", number: int = 1, kind: str = "started", data: Any = None
) -> Any:
    """A task event as the publisher will hand it to a sink (run ``r<number>``, attempt 1)."""
    from cronlet._core import events

    run_id = f"r{number}"
    return events.CloudEvent(
        id=events.event_id(task_uid=f"uid-{name}", run_id=run_id, attempt=1, kind=kind),  # type: ignore[arg-type]
        source=f"/apis/cronlet.dev/v1alpha1/namespaces/{namespace}/scheduledtasks/{name}",
        type=events.event_type(kind),  # type: ignore[arg-type]
        time=f"2026-12-01T10:00:{number % 60:02d}Z",
        subject=f"{name}-{run_id}-1",
        sequence=events.sequence(number),
        partitionkey=f"{namespace}/{name}",
        data=data if data is not None else {"task": {"namespace": namespace, "name": name}, "runId": run_id},
    )


def sdk_view(parsed: Any) -> dict[str, Any]:
    """What the cloudevents SDK parsed, with ``time`` back as RFC 3339, to compare with ``attributes()``."""
    attributes = dict(parsed.get_attributes())
    attributes["time"] = attributes["time"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"attributes": attributes, "data": parsed.get_data()}


async def kafka_records(servers: str, topic: str, count: int, *, timeout: float = 30.0) -> list[Any]:
    """The first ``count`` records of ``topic`` (all partitions, from the start), or fewer after ``timeout``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers, group_id=f"{topic}-reader", auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got
