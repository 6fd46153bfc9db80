"""The work queue and the timers: no touch is lost, no key is handled twice at once, the latest wake-up wins."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cronlet._controller import workqueue

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B = ("ns", "a"), ("ns", "b")


def run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- touch, dirty, requeue


def test_touches_of_a_waiting_key_queue_it_once() -> None:
    async def go() -> None:
        queue = workqueue.WorkQueue()
        queue.touch(A)
        queue.touch(A)
        queue.touch(B)
        assert len(queue) == 2
        assert [await queue.get(), await queue.get()] == [A, B]

    run(go())


def test_a_touch_while_the_key_is_handled_queues_it_again_when_done() -> None:
    async def go() -> None:
        queue = workqueue.WorkQueue()
        queue.touch(A)
        key = await queue.get()
        queue.touch(A)  # something changed while a worker decides: not a second worker, but a second pass
        assert len(queue) == 0 and queue.busy
        queue.done(key)
        assert len(queue) == 1 and not queue.busy
        assert await queue.get() == A

    run(go())


def test_done_without_a_touch_meanwhile_queues_nothing() -> None:
    async def go() -> None:
        queue = workqueue.WorkQueue()
        queue.touch(A)
        queue.done(await queue.get())
        assert len(queue) == 0 and not queue.busy

    run(go())


def test_a_closed_queue_takes_no_more_touches() -> None:
    queue = workqueue.WorkQueue()
    queue.closed = True
    queue.touch(A)
    assert len(queue) == 0


def test_workers_never_handle_one_key_at_once_and_lose_no_touch() -> None:
    """Many touches from outside while two workers run: each key's passes never overlap, and a touch that
    came during a pass is followed by another pass."""

    async def go() -> None:
        queue = workqueue.WorkQueue()
        running: set[tuple[str, str]] = set()
        passes: dict[tuple[str, str], int] = {A: 0, B: 0}
        overlaps: list[tuple[str, str]] = []

        async def worker() -> None:
            while True:
                key = await queue.get()
                if key in running:
                    overlaps.append(key)
                running.add(key)
                await asyncio.sleep(0.001)
                passes[key] += 1
                running.discard(key)
                queue.done(key)

        workers = [asyncio.create_task(worker()) for _ in range(2)]
        for _ in range(50):
            queue.touch(A)
            queue.touch(B)
            await asyncio.sleep(0)
        last = dict(passes)
        queue.touch(A)  # a last touch: it must bring one more pass of A
        for _ in range(200):
            await asyncio.sleep(0.002)
            if passes[A] > last[A] and not queue.busy and len(queue) == 0:
                break
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        assert overlaps == []
        assert passes[A] > last[A]

    run(go())


# --------------------------------------------------------------------------- timers


def test_a_later_request_supersedes_an_earlier_one() -> None:
    timers = workqueue.Timers()
    timers.set(A, T0 + timedelta(seconds=5))
    timers.set(A, T0 + timedelta(seconds=10))
    assert timers.pop_due(T0 + timedelta(seconds=6)) == []  # the 5 s entry is superseded
    assert timers.pop_due(T0 + timedelta(seconds=10)) == [A]
    assert timers.pending(A) is None


def test_an_earlier_request_supersedes_a_later_one() -> None:
    timers = workqueue.Timers()
    timers.set(A, T0 + timedelta(seconds=10))
    timers.set(A, T0 + timedelta(seconds=5))
    assert timers.pop_due(T0 + timedelta(seconds=5)) == [A]
    assert timers.pop_due(T0 + timedelta(seconds=10)) == []  # the 10 s entry no longer counts


def test_none_cancels_and_due_keys_come_in_time_order() -> None:
    timers = workqueue.Timers()
    timers.set(A, T0 + timedelta(seconds=2))
    timers.set(B, T0 + timedelta(seconds=1))
    timers.set(("ns", "c"), T0 + timedelta(seconds=1, milliseconds=500))
    timers.set(("ns", "c"), None)
    assert timers.pop_due(T0 + timedelta(seconds=3)) == [B, A]
    assert timers.next_at() is None


def test_the_same_request_twice_is_one_entry() -> None:
    timers = workqueue.Timers()
    timers.set(A, T0)
    timers.set(A, T0)
    assert timers.pop_due(T0) == [A]
    assert timers.pop_due(T0) == []


def test_the_timer_loop_wakes_for_a_request_made_while_it_sleeps() -> None:
    """With nothing scheduled the loop sleeps for an hour; a new wake-up must interrupt that sleep."""

    async def go() -> None:
        timers = workqueue.Timers()
        fired: list[tuple[str, str]] = []
        now = [T0]
        loop = asyncio.create_task(timers.run(clock=lambda: now[0], on_due=fired.append))
        await asyncio.sleep(0.05)  # the loop is now in its idle wait
        timers.set(A, T0)  # due at once
        for _ in range(100):
            if fired:
                break
            await asyncio.sleep(0.01)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        assert fired == [A]

    run(go())
