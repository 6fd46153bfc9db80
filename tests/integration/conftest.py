"""Fixtures for operator tests: the CRD installed once, one operator subprocess shared by the session; and
the task-event tests' Kafka broker (``kafka_broker``, one per session; ``kafka_topic``, a fresh topic name
per test, with the broker running at its start).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from kit import ROOT, OperatorProcess, Tasks
from kubernetes import client

from localkube import crds as localkube_crds
from localkube import kafka as localkube_kafka

CRD_NAME = "scheduledtasks.cronlet.dev"
KAFKA_FIXTURES = frozenset({"kafka_broker", "kafka_topic"})


@pytest.fixture(scope="session")
def cluster_bin() -> Path:
    from localkube import binaries

    return binaries.bin_dir()


@pytest.fixture(scope="session")
def crd(kubeconfig: str, cluster_bin: Path) -> str:
    path = ROOT / "crds" / "scheduledtasks.cronlet.dev.yaml"
    localkube_crds.apply([str(cluster_bin / "kubectl"), "--kubeconfig", kubeconfig], path, name=CRD_NAME)
    return str(path)


@pytest.fixture(scope="session")
def operator_process(
    kubeconfig: str, crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture
def operator(operator_process: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """The shared operator, running at the start of the test (a test may stop or kill it)."""
    operator_process.start()
    yield operator_process
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"--- operator log (tail) ---\n{operator_process.log_tail(120)}")
    operator_process.start()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[localkube_kafka.KafkaBroker]:
    """A real single-node Kafka broker on 127.0.0.1 (``bootstrap_servers``), started once per session.

    A test may ``stop()`` it and ``start()`` it again (same port, same data); ``kafka_topic`` starts it
    again for the next test if one left it stopped. Call both from the test's own thread, never through
    ``asyncio.to_thread``: the kernel kills the JVM when the thread that started it ends.
    """
    broker = localkube_kafka.KafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def kafka_topic(kafka_broker: localkube_kafka.KafkaBroker, request: pytest.FixtureRequest) -> str:
    """A topic name of this test's own (created on first use, 3 partitions); the broker is running."""
    kafka_broker.start()  # no-op when it runs
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:60]
    return f"{base}-{secrets.token_hex(3)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The broker starts a JVM and needs tools/build.sh kafka: never under -m "not binaries" (make unit).
    unmarked = [
        item.nodeid
        for item in items
        if KAFKA_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("binaries") is None
        and item.get_closest_marker("cluster") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the Kafka broker but are not marked @pytest.mark.binaries (or cluster):\n  "
            + "\n  ".join(unmarked)
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    rep = yield
    if call.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


@pytest.fixture
def tasks(kube: client.ApiClient, namespace: str, operator: OperatorProcess) -> Tasks:
    return Tasks(kube, namespace)


__all__ = ["wait_for"]
