"""Publishing each task's event outbox to the event sinks, in order, off the reconcile path.

The decision records a task's run transitions in ``status.events.pending`` by the same status write that
records the transitions (``cronlet._core.events.fold``). After that write the reconciler touches the task
here; a worker reads the task from the store and sends the entries each sink has not acknowledged yet, oldest
first, one task at a time per worker (``WorkQueue``), so each task's events leave in order. What every sink
acknowledged is kept in memory (``acked``); the next status write of the task, which happens anyway, drops
those entries from the outbox. After a restart or a change of leader nothing is known acknowledged, so what
is still in the outbox is sent again, with the same ids: delivery is at least once.

A sink that fails with a retryable error (broker or receiver down, 429, 5xx) is tried again for that task
with a growing delay, and the entries wait; any other refusal (a 4xx) counts the entry as failed for that
sink and goes on, so one bad event cannot block a task's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cronlet._common import times
from cronlet._controller import workqueue
from cronlet._controller.metrics import Metrics
from cronlet._controller.sinks import Sink, SinkError
from cronlet._controller.store import Key, Store
from cronlet._core import events, model
from cronlet._core.model import EventOutbox, OutboxEntry

log = logging.getLogger("cronlet.publisher")
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds, the n-th failure in a row waits the n-th value


@dataclass
class _Progress:
    uid: str = ""  # a re-created task of the same name starts its sequence anew
    acked: dict[str, int] = field(default_factory=dict)  # sink name -> highest sequence it acknowledged
    failures: int = 0
    pending: dict[str, int] = field(default_factory=dict)  # sink name -> entries it has not acknowledged
    oldest: dict[str, float] = field(default_factory=dict)  # sink name -> Unix time of the oldest of them


class Publisher:
    def __init__(
        self,
        *,
        sinks: Sequence[Sink],
        store: Store,
        metrics: Metrics,
        leading: Callable[[], bool] = lambda: True,
        workers: int = 8,
        max_entries: int = events.MAX_ENTRIES,
        max_bytes: int = events.MAX_BYTES,
    ) -> None:
        self.sinks = list(sinks)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.store = store
        self.metrics = metrics
        self.leading = leading
        self.queue = workqueue.WorkQueue()
        self.n_workers = workers
        self._progress: dict[Key, _Progress] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._retries: dict[Key, asyncio.TimerHandle] = {}
        for sink in self.sinks:  # read when scraped: a publish stays O(1) in the number of tasks
            metrics.events_pending.labels(sink.name).set_function(functools.partial(self._pending, sink.name))
            metrics.events_oldest_pending.labels(sink.name).set_function(
                functools.partial(self._oldest, sink.name)
            )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._worker(), name=f"cronlet-publisher-{i}") for i in range(self.n_workers)
        ]

    async def stop(self, timeout: float = 5.0) -> None:
        """Let sends in flight end (within ``timeout``), then close the sinks. What is unsent stays in the
        outboxes, for the next leader."""
        self.queue.closed = True
        deadline = time.monotonic() + timeout
        while self.queue.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for handle in self._retries.values():
            handle.cancel()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()

    # ------------------------------------------------------------------ inputs

    def touch(self, key: Key) -> None:
        """The task's outbox may hold something new: send it soon."""
        self.queue.touch(key)

    def nudge(self, key: Key, namespace: str, name: str, uid: str, newest: int) -> None:
        """The reconciler saw this task's outbox reach ``newest``: touch it if some sink has not acknowledged
        that and no retry is waiting already (which keeps a failing sink's backoff)."""
        if newest > self.acked(namespace, name, uid) and key not in self._retries:
            self.touch(key)

    def touch_all(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.touch(key)

    def acked(self, namespace: str, name: str, uid: str) -> int:
        """The highest sequence number every sink acknowledged for this task (0 when none is known)."""
        progress = self._progress.get((namespace, name))
        if progress is None or progress.uid != uid:
            return 0
        return min((progress.acked.get(s.name, 0) for s in self.sinks), default=0)

    def policy(self, namespace: str, name: str, uid: str) -> events.Policy:
        """What the decision needs to keep this task's outbox."""
        return events.Policy(
            acked=self.acked(namespace, name, uid), max_entries=self.max_entries, max_bytes=self.max_bytes
        )

    def forget(self, key: Key) -> None:
        self._progress.pop(key, None)
        handle = self._retries.pop(key, None)
        if handle is not None:
            handle.cancel()

    # ------------------------------------------------------------------ the loop

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.publish(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # one task's trouble must not stop the others
                log.exception("publishing the events of %s/%s failed", *key)
                self._retry_later(key, len(RETRY_DELAYS))  # not a sink's answer: the longest wait
            finally:
                self.queue.done(key)

    async def publish(self, key: Key) -> None:
        """Send what the sinks have not acknowledged of this task's outbox, in order."""
        if not self.leading():
            return  # a standby sends nothing; on becoming the leader every task is touched
        body = self.store.tasks.get(key)
        if body is None:
            self.forget(key)
            return
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        outbox = _outbox(body)
        progress = self._progress.get(key)
        if (
            progress is None
            or progress.uid != uid  # an earlier task of this name
            or any(acked > outbox.sequence for acked in progress.acked.values())  # the status was reset
        ):
            progress = self._progress[key] = _Progress(uid=uid)  # numbers start again
        spec = body.get("spec") or {}
        ok = True
        wait: float | None = None
        for sink in self.sinks:
            acked = progress.acked.get(sink.name, 0)
            for entry in outbox.pending:
                if entry.sequence <= acked:
                    continue
                if not self.leading():
                    return
                event = events.cloud_event(
                    entry,
                    namespace=key[0],
                    name=key[1],
                    uid=uid,
                    labels=meta.get("labels") or {},
                    handler=str(spec.get("handler", "")),
                    max_attempts=_max_attempts(spec),
                )
                try:
                    await sink.send(event)
                except SinkError as exc:
                    self.metrics.event_failures.labels(sink.name, "true" if exc.retryable else "false").inc()
                    if exc.retryable:
                        log.info(
                            "%s: event %s of %s/%s not sent (%s); will retry",
                            sink.name,
                            entry.sequence,
                            *key,
                            exc,
                        )
                        ok = False
                        wait = max(wait or 0.0, exc.retry_after or 0.0)
                        break
                    log.warning(
                        "%s refused event %s of %s/%s (%s); it is not sent again",
                        sink.name,
                        entry.sequence,
                        *key,
                        exc,
                    )
                else:
                    self.metrics.events_published.labels(sink.name).inc()
                    latency = max(0.0, time.time() - times.parse(entry.time).timestamp())
                    self.metrics.event_latency.labels(sink.name).observe(latency)
                acked = entry.sequence
                progress.acked[sink.name] = acked
            unacked = [e for e in outbox.pending if e.sequence > acked]
            progress.pending[sink.name] = len(unacked)
            progress.oldest[sink.name] = times.parse(unacked[0].time).timestamp() if unacked else 0.0
        if ok:
            progress.failures = 0
        else:
            progress.failures += 1
            self._retry_later(key, progress.failures, at_least=wait)

    def _retry_later(self, key: Key, failures: int = 1, *, at_least: float | None = None) -> None:
        delay = RETRY_DELAYS[min(failures - 1, len(RETRY_DELAYS) - 1)]
        delay = max(delay, min(at_least or 0.0, 300.0))  # a sink's Retry-After, within reason
        old = self._retries.pop(key, None)
        if old is not None:
            old.cancel()
        self._retries[key] = asyncio.get_running_loop().call_later(delay, self._retry_now, key)

    def _retry_now(self, key: Key) -> None:
        self._retries.pop(key, None)
        self.touch(key)

    def _pending(self, sink: str) -> float:
        return float(sum(p.pending.get(sink, 0) for p in list(self._progress.values())))

    def _oldest(self, sink: str) -> float:
        return min((t for p in list(self._progress.values()) if (t := p.oldest.get(sink, 0.0))), default=0.0)


def _outbox(body: dict[str, Any]) -> EventOutbox:
    raw = (body.get("status") or {}).get("events")
    if not raw:
        return EventOutbox()
    try:
        return EventOutbox.model_validate(raw)
    except ValueError:
        log.warning(
            "the event outbox of %s cannot be read; nothing of it is sent",
            (body.get("metadata") or {}).get("name"),
        )
        return EventOutbox()


def _max_attempts(spec: dict[str, Any]) -> int:
    retries = spec.get("maxRetries", model.TaskSpec.model_fields["max_retries"].default)
    return int(retries) + 1 if isinstance(retries, int) else 0


__all__ = ["OutboxEntry", "Publisher"]
