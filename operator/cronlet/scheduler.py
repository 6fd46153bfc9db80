"""The scheduler loop: one heap of wake-up times, one work queue, a few workers; no per-task timers, no polling.

kopf's watches feed ``Store`` (tasks and their Jobs) and call ``touch(key)``. A worker takes a key, reads the
task and its Jobs from the store, asks ``plan.plan`` what to do, sends it through ``kube`` (Jobs first, then
one status write, then Events), and puts the key back on the heap at the plan's wake-up time.

A key is handled by one worker at a time (touches while it is being handled mark it dirty and it is handled
again afterwards), so two decisions about one task never race. The store is updated from our own write
responses at once, so the next decision never reads an older state than the one we wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from cronlet import kube, manifests, model, plan
from cronlet.metrics import Metrics

log = logging.getLogger("cronlet.scheduler")
Key = tuple[str, str]  # (namespace, task name)
Clock = Callable[[], datetime]
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _rv(body: dict[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Store:
    """The latest known state of every task and its Jobs."""

    def __init__(self) -> None:
        self.tasks: dict[Key, dict[str, Any]] = {}
        self.jobs: dict[Key, dict[str, plan.JobObservation]] = {}
        self.job_rv: dict[tuple[str, str], int] = {}

    def put_task(self, body: dict[str, Any]) -> Key:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self.tasks.get(key)
        same_object = old is not None and old["metadata"].get("uid") == meta.get("uid")
        if not same_object or old is None or _rv(body) >= _rv(old):
            self.tasks[key] = body
        return key

    def drop_task(self, key: Key) -> None:
        self.tasks.pop(key, None)

    def put_job(self, body: dict[str, Any]) -> Key | None:
        key = manifests.task_key_of_job(body)
        obs = manifests.observe_job(body)
        if key is None or obs is None:
            return key
        ident = (key[0], obs.name)
        if _rv(body) < self.job_rv.get(ident, 0):
            return key  # an older copy than one we already hold
        self.job_rv[ident] = _rv(body)
        self.jobs.setdefault(key, {})[obs.name] = obs
        return key

    def drop_job(self, body: dict[str, Any]) -> Key | None:
        key = manifests.task_key_of_job(body)
        name = body["metadata"]["name"]
        if key is not None:
            self.jobs.get(key, {}).pop(name, None)
            if not self.jobs.get(key):
                self.jobs.pop(key, None)
            self.job_rv.pop((key[0], name), None)
        return key

    def mark_deleting(self, key: Key, name: str) -> None:
        jobs = self.jobs.get(key, {})
        if name in jobs:
            old = jobs[name]
            jobs[name] = plan.JobObservation(**{**old.__dict__, "deleting": True})


class Scheduler:
    def __init__(self, *, kube_api: kube.Kube, image: str, metrics: Metrics,
                 known_handlers: frozenset[str] | None, clock: Clock = utcnow, workers: int = 4) -> None:
        self.kube = kube_api
        self.image = image
        self.metrics = metrics
        self.known_handlers = known_handlers
        self.clock = clock
        self.store = Store()
        self.n_workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._heap: list[tuple[datetime, int, Key]] = []
        self._wake: dict[Key, datetime] = {}
        self._seq = 0
        self._heap_changed = asyncio.Event()
        self._failures: dict[Key, int] = {}
        self._messages: dict[tuple[str, str], tuple[str, int | None]] = {}
        self._phases: dict[Key, str] = {}
        self._active: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._timer(), name="cronlet-timer")]
        self._tasks += [asyncio.create_task(self._worker(i), name=f"cronlet-worker-{i}")
                        for i in range(self.n_workers)]

    async def stop(self, timeout: float = 20.0) -> None:
        """Let in-flight reconciles finish their writes, then stop."""
        self._stopping = True
        deadline = asyncio.get_running_loop().time() + timeout
        while self._processing and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ inputs

    def touch(self, key: Key) -> None:
        """Something about this task changed: look at it soon."""
        if self._stopping:
            return
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def touch_all(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.touch(key)

    def wake_at(self, key: Key, when: datetime | None) -> None:
        if when is None:
            self._wake.pop(key, None)
            return
        if self._wake.get(key) == when:
            return
        self._wake[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        self._heap_changed.set()

    # ------------------------------------------------------------------ loops

    async def _timer(self) -> None:
        while True:
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._wake.get(key) == when:  # else superseded by a later wake-up
                    del self._wake[key]
                    self.touch(key)
            self._heap_changed.clear()
            delay = (self._heap[0][0] - now).total_seconds() if self._heap else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heap_changed.wait(), timeout=max(delay, 0.0) + 0.002)

    async def _worker(self, index: int) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            try:
                await self.reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one task's trouble must not stop the others
                n = self._failures.get(key, 0)
                self._failures[key] = n + 1
                delay = RETRY_DELAYS[min(n, len(RETRY_DELAYS) - 1)]
                log.warning("reconcile of %s/%s failed (%s); trying again in %ss", *key, exc, delay)
                self.wake_at(key, self.clock() + _seconds(delay))
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.touch(key)

    # ------------------------------------------------------------------ one task

    async def reconcile(self, key: Key) -> None:
        body = self.store.tasks.get(key)
        if body is None:
            self._forget(key)
            return
        self.metrics.reconciles.inc()
        view = manifests.task_view(body, known_handlers=self.known_handlers)
        jobs = list(self.store.jobs.get(key, {}).values())
        messages = await self._messages_for(view, jobs)
        now = self.clock()
        p = plan.plan(view, jobs, now=now, messages={k: v[0] for k, v in messages.items()})

        for run in p.create:
            assert p.spec is not None
            manifest = manifests.build_job(task=view, spec=p.spec, run=run, image=self.image)
            try:
                created = await self.kube.create_job(manifest)
                self.metrics.child(self.metrics.lag, *self.metrics.labels(*key)).observe(
                    max(0.0, (self.clock() - run.scheduled_time).total_seconds()))
            except kube.AlreadyExists as exists:
                created = exists.body or {}
                if created and not _owned_by(created, view.uid):
                    raise RuntimeError(f"Job {manifest['metadata']['name']} exists and is not owned by this "
                                       "task") from None
            except kube.ApiFailure as exc:
                if exc.status == 403 and "being terminated" in exc.message:
                    log.debug("namespace %s is being deleted; not starting runs there", key[0])
                    return  # the task goes with its namespace; nothing to retry
                if 400 <= exc.status < 500 and exc.status not in (409, 429):
                    # Refused for what the task asks (an invalid podTemplate, a quota, an admission policy):
                    # say so where users look, then retry with backoff; fixing the spec recovers.
                    text = f"could not create Job {manifest['metadata']['name']}: {exc.message}"
                    await self._event(view, plan.Event("Warning", "JobCreateFailed", text), now)
                    await self._mark_not_ready(key, body, view, reason="JobCreateFailed", message=text)
                raise
            if created:
                self.store.put_job(created)
        new_status = model.dump(p.status)
        old_status = body.get("status") or {}
        if new_status != old_status:
            patch: dict[str, Any] = dict(new_status)
            for gone in set(old_status) - set(new_status):
                patch[gone] = None  # a merge patch removes a field only when told to
            try:
                updated = await self.kube.patch_status(key[0], key[1], patch,
                                                       resource_version=body["metadata"]["resourceVersion"])
            except kube.ApiFailure as exc:
                if exc.status in (404, 409):
                    # Changed (or deleted, or recreated) since we read it: the watch event on its way brings the
                    # new version and another pass; the wake-up is only a safety net. Jobs already created
                    # are adopted by that pass.
                    log.info("task %s/%s changed while reconciling; deciding again", *key)
                    self.wake_at(key, self.clock() + timedelta(seconds=1))
                    return
                raise
            if updated.get("metadata", {}).get("uid") == view.uid:
                self.store.put_task(updated)
            self._observe(key, p)
        # Jobs are deleted only once the status that no longer needs them is written: deleting first and then
        # losing the write would make a finished run look like a vanished attempt, and retry it.
        for name in p.delete:
            await self.kube.delete_job(key[0], name)
            self.store.mark_deleting(key, name)
        for event in p.events:
            await self._event(view, event, now)
        self._gauges(key, p)
        self.wake_at(key, p.wake_at)

    async def _mark_not_ready(self, key: Key, body: dict[str, Any], view: plan.TaskView, *, reason: str,
                              message: str) -> None:
        """Set only the Ready condition to False (the run was not started, so nothing else changes)."""
        ready = next((c for c in view.status.conditions if c.type == "Ready"), None)
        if ready is not None and (ready.status, ready.reason, ready.message) == ("False", reason, message[:1024]):
            return
        since = self.clock() if ready is None or ready.status != "False" else manifests.parse_time(
            ready.last_transition_time)
        new = model.Condition(type="Ready", status="False", reason=reason, message=message[:1024],
                              last_transition_time=model.rfc3339(since), observed_generation=view.generation)
        conditions = [new, *(c for c in view.status.conditions if c.type != "Ready")]
        try:
            updated = await self.kube.patch_status(
                key[0], key[1], {"conditions": [model.dump(c) for c in conditions]},
                resource_version=body["metadata"]["resourceVersion"])
        except kube.ApiFailure as exc:
            log.warning("could not mark %s/%s not ready: %s", *key, exc.message)
            return
        if updated.get("metadata", {}).get("uid") == view.uid:
            self.store.put_task(updated)

    async def _messages_for(self, view: plan.TaskView, jobs: list[plan.JobObservation]
                            ) -> dict[str, tuple[str, int | None]]:
        """Handler messages of finished attempts that a run still points at (read once per Job)."""
        by_name = {j.name: j for j in jobs}
        out: dict[str, tuple[str, int | None]] = {}
        for entry in view.status.active:
            job = by_name.get(entry.job_name)
            if job is None or job.state is plan.JobState.ACTIVE:
                continue
            ident = (view.namespace, job.name)
            if ident not in self._messages:
                self._messages[ident] = await self.kube.attempt_result(view.namespace, job.name)
                if len(self._messages) > 10000:  # bounded: old entries are never needed again
                    self._messages.pop(next(iter(self._messages)))
            out[job.name] = self._messages[ident]
        return out

    async def _event(self, view: plan.TaskView, event: plan.Event, now: datetime) -> None:
        await self.kube.post_event(manifests.build_event(task=view, event=event, now=now, component="cronlet"))

    def _observe(self, key: Key, p: plan.Plan) -> None:
        m, labels = self.metrics, self.metrics.labels(*key)
        for o in p.observations:
            if isinstance(o, plan.RunFinished):
                m.runs.labels(*labels, o.outcome).inc(o.count)
                if o.outcome == "Missed":
                    m.child(m.missed, *labels).inc(o.count)
                elif o.outcome == "Skipped":
                    m.child(m.skipped, *labels).inc(o.count)
                if o.duration is not None:
                    m.child(m.run_duration, *labels).observe(o.duration)
            elif isinstance(o, plan.AttemptFinished):
                m.attempts.labels(*labels, o.outcome).inc()
            elif isinstance(o, plan.RetryStarted):
                m.child(m.retries, *labels).inc()

    def _gauges(self, key: Key, p: plan.Plan) -> None:
        phase = p.status.phase or "Scheduled"
        old = self._phases.get(key)
        if old is None and self.metrics.per_task:
            self.metrics.start_series(*key)
        if old != phase:
            if old is not None:
                self.metrics.tasks.labels(key[0], old).dec()
            self.metrics.tasks.labels(key[0], phase).inc()
            self._phases[key] = phase
        active = len(p.status.active)
        if self.metrics.per_task:
            self.metrics.active.labels(*key).set(active)
        else:
            self._active[key] = active
            self.metrics.active.set(sum(self._active.values()))

    def _forget(self, key: Key) -> None:
        self.wake_at(key, None)
        old = self._phases.pop(key, None)
        if old is not None:
            self.metrics.tasks.labels(key[0], old).dec()
        if self.metrics.per_task:
            with contextlib.suppress(KeyError):
                self.metrics.active.remove(*key)
        else:
            self._active.pop(key, None)
            self.metrics.active.set(sum(self._active.values()))


def _owned_by(job: dict[str, Any], uid: str) -> bool:
    return any(o.get("uid") == uid for o in (job.get("metadata") or {}).get("ownerReferences") or [])


def _seconds(s: float) -> timedelta:
    return timedelta(seconds=s)
