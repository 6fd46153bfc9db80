"""Liveness that means something: /healthz fails when the event loop or a worker is wedged."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from cronlet._controller import health, reconciler
from cronlet._controller.metrics import Metrics


def test_alive_while_the_loop_beats_and_no_worker_is_stuck() -> None:
    now = [100.0]
    state = health.HealthState(monotonic=lambda: now[0], loop_stall=30, worker_stall=300)
    busy: list[float | None] = [None]
    state.watch_workers(lambda: busy[0])
    assert state.alive()
    now[0] = 129.0
    assert state.alive()
    now[0] = 131.0
    assert state.problem() == "the event loop has not run for 31 s"
    state.beat()
    assert state.alive()
    busy[0] = 131.0  # a worker took a task at 131
    now[0] = 400.0
    state.beat()
    assert state.alive()  # 269 s: a slow reconcile, not yet a stuck one
    now[0] = 432.0
    state.beat()
    assert state.problem() == "a worker has been reconciling one task for 301 s"


class HangingKube:
    """An API whose writes never answer (a half-open connection without timeouts)."""

    async def patch_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def attempt_result(self, namespace: str, job_name: str) -> tuple[str, int | None]:
        return "", None


def test_a_worker_stuck_in_a_call_makes_the_operator_not_alive() -> None:
    async def go() -> str | None:
        sched = reconciler.Reconciler(
            kube_api=HangingKube(),  # type: ignore[arg-type]
            image="img",
            metrics=Metrics(),
            known_handlers=frozenset({"echo"}),
            clock=lambda: datetime(2026, 1, 1, 0, 0, 10, 10000, tzinfo=UTC),
        )
        sched.store.put_task(
            {
                "metadata": {
                    "namespace": "ns",
                    "name": "t",
                    "uid": "u",
                    "generation": 1,
                    "resourceVersion": "1",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {"schedule": "*/10 * * * * *", "handler": "echo"},
            }
        )
        state = health.HealthState(worker_stall=0.2)
        state.watch_workers(sched.queue.busy_since)
        beating = asyncio.create_task(state.beat_forever())
        sched.start()
        sched.touch(("ns", "t"))  # due at 0:00:10: the worker claims the run, and the write hangs
        await asyncio.sleep(0.5)
        problem = state.problem()
        beating.cancel()
        await sched.stop(timeout=0.1)
        return problem

    assert (asyncio.run(go()) or "").startswith("a worker has been reconciling one task for")


def test_healthz_answers_503_with_the_reason() -> None:
    now = [0.0]
    state = health.HealthState(monotonic=lambda: now[0])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = health.serve(metrics=Metrics(), health=state, port=port, host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
        now[0] = 1000.0
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        except urllib.error.HTTPError as error:
            assert error.code == 503
            assert b"event loop has not run" in error.read()
        else:
            raise AssertionError("/healthz answered 200 for a wedged loop")
    finally:
        server.shutdown()
