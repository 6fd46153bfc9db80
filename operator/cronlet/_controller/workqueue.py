"""Which task to look at next: a work queue with one worker per key, and a heap of wake-up times.

``WorkQueue``: a key is queued at most once; while a worker handles it, touches only mark it dirty, and it
is queued again when the worker is done. So two decisions about one task never race, and no touch is lost.
``Timers``: one wake-up time per key, the latest request wins (an earlier heap entry for the key is then
superseded and ignored when it comes up). No per-task timers, no polling.

Everything here runs on the event loop; nothing is shared with threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable
from datetime import datetime

from cronlet._controller.store import Key

Clock = Callable[[], datetime]
IDLE_WAIT = 3600.0  # seconds the timer loop sleeps with nothing scheduled (a new wake-up interrupts it)


class WorkQueue:
    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: dict[Key, float] = {}  # key -> since when (monotonic)
        self._dirty: set[Key] = set()
        self._monotonic = monotonic
        self.closed = False

    def touch(self, key: Key) -> None:
        """Something about this task changed: look at it soon (once, whatever the number of touches)."""
        if self.closed:
            return
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def get(self) -> Key:
        """The next key to handle; it counts as being handled until ``done(key)``."""
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing[key] = self._monotonic()
        return key

    def done(self, key: Key) -> None:
        """The worker finished ``key``; a touch that came meanwhile queues it again."""
        self._processing.pop(key, None)
        if key in self._dirty:
            self._dirty.discard(key)
            self.touch(key)

    @property
    def busy(self) -> bool:
        """Whether a worker is handling a key now."""
        return bool(self._processing)

    def busy_since(self) -> float | None:
        """Since when (monotonic) the longest-held key is held; None when no worker holds one."""
        return min(self._processing.values(), default=None)

    def __len__(self) -> int:
        return len(self._queued)


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, Key]] = []
        self._wake: dict[Key, datetime] = {}
        self._seq = 0
        self._changed = asyncio.Event()

    def set(self, key: Key, when: datetime | None) -> None:
        """Wake ``key`` at ``when`` instead of any earlier request; None cancels."""
        if when is None:
            self._wake.pop(key, None)
            return
        if self._wake.get(key) == when:
            return
        self._wake[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        self._changed.set()

    def pending(self, key: Key) -> datetime | None:
        return self._wake.get(key)

    def pop_due(self, now: datetime) -> list[Key]:
        """Keys whose wake-up time is at or before ``now``, in time order; each is then forgotten."""
        due: list[Key] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._wake.get(key) == when:  # else superseded by a later request
                del self._wake[key]
                due.append(key)
        return due

    def next_at(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    async def run(self, *, clock: Clock, on_due: Callable[[Key], None]) -> None:
        """Call ``on_due`` for each key as its time comes, forever."""
        while True:
            now = clock()
            for key in self.pop_due(now):
                on_due(key)
            self._changed.clear()
            head = self.next_at()
            delay = (head - now).total_seconds() if head is not None else IDLE_WAIT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(delay, 0.0) + 0.002)
