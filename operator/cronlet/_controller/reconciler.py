"""Carrying out decisions: a few workers take keys from the work queue, plan, and write.

kopf's watches feed the ``Store`` and touch keys (``runtime``); the ``Timers`` touch keys when a wake-up time
comes. A worker takes a key, reads the task and its Jobs from the store, asks ``decision.plan`` what to do,
sends it through ``kube`` (Jobs first, then one status write, then Job deletions, then Events), and sets the
key's next wake-up from the plan.

A key is handled by one worker at a time (``WorkQueue``), so two decisions about one task never race. The
store is updated from our own write responses at once, so the next decision never reads an older state than
the one we wrote.

The order of writes fences a replica with a stale view: the status write comes first and claims each new
attempt in ``status.active`` under a resourceVersion precondition; Jobs are created only after that write
won. A stale replica's write gets 409 Conflict and it creates nothing, even where the Job's name (the old
lock) is free again because history limits, a TTL or a person deleted that Job. Deletes carry the Job's uid
as a precondition, and only Jobs the task owns are deleted.

A run claimed ahead (``claim_ahead``) was claimed by an earlier write of ours: at its due time its Job is
created with no write first. The reconciler remembers which claims in each status it wrote, and when their
window ends; a claim it did not write is never created by it (``decision`` waits it out).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from cronlet._common import times
from cronlet._controller import kube, messages, publisher, workqueue
from cronlet._controller.metrics import Metrics
from cronlet._controller.store import Key, Store
from cronlet._core import decision, manifests, model, status
from cronlet._core.views import Event, JobObservation, Plan, TaskView, Tenancy

log = logging.getLogger("cronlet.reconciler")
Clock = Callable[[], datetime]
# Seconds before a failed reconcile of one task is tried again: the n-th failure in a row waits the n-th value.
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        *,
        kube_api: kube.Kube,
        image: str,
        metrics: Metrics,
        known_handlers: frozenset[str] | None,
        clock: Clock = utcnow,
        workers: int = 4,
        leading: Callable[[], bool] = lambda: True,
        tenancy: Tenancy | None = None,
        events_publisher: publisher.Publisher | None = None,
        claim_ahead: timedelta | None = None,
    ) -> None:
        self.kube = kube_api
        self.image = image
        self.metrics = metrics
        self.known_handlers = known_handlers
        self.tenancy = tenancy or Tenancy()
        self.clock = clock
        self.store = Store()
        self.queue = workqueue.WorkQueue()
        self.timers = workqueue.Timers()
        self.messages = messages.MessageCache(self._read_message)
        self.n_workers = workers
        self.leading = leading  # only the leader acts; a standby keeps its store warm and waits
        # Under leader election: since when no other replica can have acted (election.acting_alone_since);
        # claims of others due later are not theirs to create. None without election: nothing says so.
        self.alone_since: Callable[[], datetime | None] = lambda: None
        self.publisher = events_publisher  # None: the operator has no event sinks, and keeps no outboxes
        self.claim_ahead = claim_ahead  # None: each run is claimed at its due time
        # The claims this replica wrote that are still in the task's status, (jobName, claimTime) -> the monotonic
        # instant after which their Job may not be created: a claim's Job is created only by its writer.
        self._claims: dict[Key, dict[tuple[str, str], float]] = {}
        self._failures: dict[Key, int] = {}
        self._loops: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        timer = self.timers.run(clock=self.clock, on_due=self.touch)
        self._loops = [asyncio.create_task(timer, name="cronlet-timer")]
        self._loops += [
            asyncio.create_task(self._worker(), name=f"cronlet-worker-{i}") for i in range(self.n_workers)
        ]

    async def stop(self, timeout: float = 20.0) -> None:
        """Let in-flight reconciles finish their writes, then stop."""
        self.queue.closed = True
        deadline = asyncio.get_running_loop().time() + timeout
        while self.queue.busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    # ------------------------------------------------------------------ inputs

    def touch(self, key: Key) -> None:
        """Something about this task changed: look at it soon."""
        self.queue.touch(key)

    def touch_all(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.touch(key)

    def wake_at(self, key: Key, when: datetime | None) -> None:
        self.timers.set(key, when)

    # ------------------------------------------------------------------ the loop

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one task's trouble must not stop the others
                failures = self._failures.get(key, 0)
                self._failures[key] = failures + 1
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                log.warning("reconcile of %s/%s failed (%s); trying again in %ss", *key, exc, delay)
                self.wake_at(key, self.clock() + timedelta(seconds=delay))
            finally:
                self.queue.done(key)

    # ------------------------------------------------------------------ one task

    async def reconcile(self, key: Key) -> None:
        if not self.leading():
            return  # a standby; on becoming the leader every task is looked at (runtime touches them all)
        body = self.store.tasks.get(key)
        if body is None:
            self.wake_at(key, None)
            self._claims.pop(key, None)
            self.metrics.forget(key)
            if self.publisher is not None:
                self.publisher.forget(key)
            return
        self.metrics.reconciles.inc()
        view = manifests.task_view(
            body,
            known_handlers=self.known_handlers,
            tenancy=self.tenancy,
            namespace_labels=self.store.namespace_labels.get(key[0]),
        )
        if view.status_problem is not None:
            # Fail closed: without a status it can read, the decision would forget which due times it handled
            # and take old Jobs for new results. Say so, and act again once the status is fixed or removed.
            text = (
                f"status cannot be read, so no run starts until it is fixed or removed: {view.status_problem}"
            )
            now = self.clock()
            await self._event(view, Event("Warning", "StatusUnreadable", text), now)
            await self._mark_not_ready(key, body, view, reason="StatusUnreadable", message=text)
            self.wake_at(key, None)
            return
        jobs = list(self.store.jobs.get(key, {}).values())
        found = await self.messages.for_task(view, jobs)
        not_started = await self._why_not_started(view, jobs)
        now, decided = self.clock(), time.monotonic()
        outbox = None
        if self.publisher is not None:
            outbox = self.publisher.policy(view.namespace, view.name, view.uid)
        held = self._held(key, view)
        plan = decision.plan(
            view,
            jobs,
            now=now,
            messages=found,
            not_started=not_started,
            outbox=outbox,
            # With task events, at the due time: a run's "started" must not go out before it starts.
            claim_ahead=self.claim_ahead if self.publisher is None else None,
            mine=held.keys(),
            alone_since=self.alone_since(),
        )
        stored = view.status.events
        if self.publisher is not None and stored is not None and stored.pending:
            # Recorded by a write whose answer we never got (it timed out, then a retry met 409): the watch
            # brought it, and no write of ours will touch the publisher for it.
            self.publisher.nudge(key, view.namespace, view.name, view.uid, stored.pending[-1].sequence)
        if not self.leading():
            return  # the lease lapsed while we read: write nothing
        # Each claim's create window (``_create_by``) starts when its write first went out, not when the answer
        # was read (a leader frozen with the answer unread created twice on CI), nor when it was decided (a
        # claim waiting for the rate limit in a large burst would expire unsent).
        sent: list[float] = []
        written = await self._write_status(key, body, view, plan, sent=sent)
        if written is None:
            return
        if written is not body:
            first = sent[0] if sent else decided  # (``sent`` is never empty: the earliest it can be)
            went_out = self.clock() - timedelta(seconds=max(0.0, time.monotonic() - first))
            held = self._wrote(key, view, plan, held, sent=(first, went_out), decided=(decided, now))
        if not await self._create_jobs(key, written, view, plan, now, held=held):
            return
        # The next look is due whatever happens below: a failed delete or Event must not lose it.
        self.wake_at(key, plan.wake_at)
        self.metrics.track(key, plan, now=self.clock())
        # Jobs are deleted only once the status that no longer needs them is written: deleting first and then
        # losing the write would make a finished run look like a vanished attempt, and retry it.
        owned = self.store.jobs.get(key, {})
        for name in plan.delete:
            job = owned.get(name)
            if job is None:
                # Not a Job of this task that we know of (status.active can be written by anyone allowed to
                # patch the status): never delete it on that say-so.
                log.warning("%s/%s: not deleting Job %s: it is not one of the task's Jobs", *key, name)
                continue
            await self.kube.delete_job(key[0], name, uid=job.uid)
            self.store.mark_deleting(key, name)
        for event in plan.events:
            await self._event(view, event, now)

    def _held(self, key: Key, view: TaskView) -> dict[tuple[str, str], float]:
        """The claims of ours still in the task's status (others are forgotten: taken over, or done), each with
        the monotonic instant after which its Job may not be created."""
        mine = self._claims.get(key)
        if not mine:
            return {}
        present = {(a.job_name, a.claim_time) for a in view.status.active if a.claim_time is not None}
        kept = {claim: by for claim, by in mine.items() if claim in present}
        self._hold(key, kept)
        return kept

    def _wrote(
        self,
        key: Key,
        view: TaskView,
        plan: Plan,
        before: dict[tuple[str, str], float],
        *,
        sent: tuple[float, datetime],
        decided: tuple[float, datetime],
    ) -> dict[tuple[str, str], float]:
        """After our status write won: the claims it made are ours, those it kept are ours if they were
        (``before``: ours in the status it replaced)."""
        known = {(a.job_name, a.claim_time) for a in view.status.active}
        held: dict[tuple[str, str], float] = {}
        for entry in plan.status.active:
            if entry.claim_time is None:
                continue
            claim = (entry.job_name, entry.claim_time)
            if claim in before:
                held[claim] = before[claim]
            elif claim not in known:
                held[claim] = _create_by(entry, sent=sent, decided=decided)
        self._hold(key, held)
        return held

    def _hold(self, key: Key, claims: dict[tuple[str, str], float]) -> None:
        if claims:
            self._claims[key] = claims
        else:
            self._claims.pop(key, None)

    async def _create_jobs(
        self,
        key: Key,
        body: dict[str, Any],
        view: TaskView,
        plan: Plan,
        now: datetime,
        *,
        held: dict[tuple[str, str], float],
    ) -> bool:
        """Create the plan's Jobs; False when the pass must end here without an error (namespace going away).

        Each Job is created only under a claim of ours in the status as written, and only within its window
        (``_create_by``)."""
        claims = {a.job_name: a for a in plan.status.active}
        for run in plan.create:
            assert plan.spec is not None
            manifest = manifests.build_job(task=view, spec=plan.spec, run=run, image=self.image)
            name = manifest["metadata"]["name"]
            entry = claims.get(name)
            claim = (name, entry.claim_time or "") if entry is not None else None
            not_after = held.get(claim) if claim is not None else None
            if claim is None or not_after is None:
                # Creating without a claim of ours in the status would undo the fencing: a planner bug.
                log.error("%s/%s: not creating Job %s: no claim of ours for it in the status", *key, name)
                continue
            # A claim is good for one create: the Job may be gone by the next pass (a history limit of 0, another
            # replica recording its end) while our store still shows the claim.
            held.pop(claim)
            self._hold(key, held)
            try:
                # Paused between our claim and the send (GC, SIGSTOP, a queue of API calls, a slow API):
                # another replica may have claimed the attempt anew by now. Then nothing is created, and the
                # next pass decides again. The check is made in the sending thread, just before each try.
                created = await self.kube.create_job(manifest, not_after=not_after)
                lag = max(0.0, (self.clock() - run.scheduled_time).total_seconds())
                self.metrics.child(self.metrics.lag, *self.metrics.labels(*key)).observe(lag)
            except kube.ClaimExpired:
                log.warning("%s/%s: not creating Job %s: its claim is too old now", *key, name)
                self.wake_at(key, self.clock())
                return False
            except kube.AlreadyExists as exists:
                created = exists.body or {}
                if created and not manifests.owned_by(created, view.uid):
                    raise RuntimeError(f"Job {name} exists and is not owned by this task") from None
            except kube.ApiFailure as exc:
                if exc.status == 403 and "being terminated" in exc.message:
                    log.debug("namespace %s is being deleted; not starting runs there", key[0])
                    return False  # the task goes with its namespace; nothing to retry
                if 400 <= exc.status < 500 and exc.status not in (409, 429):
                    # Refused for what the task asks (an invalid podTemplate, a quota, an admission policy):
                    # say so where users look, then retry with backoff; fixing the spec recovers.
                    text = f"could not create Job {name}: {exc.message}"
                    await self._event(view, Event("Warning", "JobCreateFailed", text), now)
                    await self._mark_not_ready(key, body, view, reason="JobCreateFailed", message=text)
                raise
            if created:
                self.store.put_job(created)
        return True

    async def _write_status(
        self, key: Key, body: dict[str, Any], view: TaskView, plan: Plan, *, sent: list[float] | None = None
    ) -> dict[str, Any] | None:
        """The one status write of the pass (only if it changed): the task as written (``body`` itself when
        nothing changed), or None when the task changed meanwhile and nothing may follow."""
        new_status = model.dump(plan.status)
        old_status = body.get("status") or {}
        if new_status == old_status:
            return body
        patch: dict[str, Any] = dict(new_status)
        for gone in set(old_status) - set(new_status):
            patch[gone] = None  # a merge patch removes a field only when told to
        try:
            updated = await self.kube.patch_status(
                key[0],
                key[1],
                patch,
                resource_version=body["metadata"]["resourceVersion"],
                launch=bool(plan.create),
                sent=sent,
            )
        except kube.ApiFailure as exc:
            if exc.status == 404:
                await self._recheck(key)
                return None
            if exc.status == 409:
                # Changed (or recreated) since we read it, or another replica wrote first: nothing of this plan
                # may be carried out. The watch event on its way brings the new version and another pass; the
                # wake-up is only a safety net.
                log.info("task %s/%s changed while reconciling; deciding again", *key)
                self.wake_at(key, self.clock() + timedelta(seconds=1))
                return None
            raise
        if updated.get("metadata", {}).get("uid") == view.uid:
            self.store.put_task(updated)
            if self.publisher is not None and plan.status.events is not None and plan.status.events.pending:
                self.publisher.touch(key)  # the transitions just recorded go out now, off this path
        self.metrics.record(key, plan)
        return updated

    async def _recheck(self, key: Key) -> None:
        """The task was not found where the store has it: ask the API server, never wait for a DELETED event
        (a watch gap loses them). Gone: forget it. There (recreated): decide again on what it is now."""
        current = await self.kube.get_task(*key)
        if current is None:
            log.info("task %s/%s is gone; forgetting it", *key)
            self.store.drop_task(key)
            self.wake_at(key, None)
            self.metrics.forget(key)
            if self.publisher is not None:
                self.publisher.forget(key)
            return
        self.store.put_task(current)
        self.wake_at(key, self.clock() + timedelta(seconds=1))

    async def _why_not_started(self, view: TaskView, jobs: list[JobObservation]) -> dict[str, str]:
        """For each attempt past its start limit: why its pod has not started (read only at that moment)."""
        reasons: dict[str, str] = {}
        for name in decision.overdue_starts(view, jobs, now=self.clock()):
            pods = await self.kube.job_pods(view.namespace, name)
            warnings = [] if pods else await self.kube.job_warnings(view.namespace, name)
            reasons[name] = manifests.start_problem(pods=pods, warnings=warnings)
        return reasons

    async def _mark_not_ready(
        self,
        key: Key,
        body: dict[str, Any],
        view: TaskView,
        *,
        reason: model.ConditionReason,
        message: str,
    ) -> None:
        """Say that no run can start (phase Blocked, Ready=False); nothing else changes, as none started."""
        patch = status.not_ready(view, reason=reason, message=message, now=self.clock())
        if patch is None:
            return
        try:
            updated = await self.kube.patch_status(
                key[0], key[1], patch, resource_version=body["metadata"]["resourceVersion"]
            )
        except kube.ApiFailure as exc:
            log.warning("could not mark %s/%s not ready: %s", *key, exc.message)
            return
        if updated.get("metadata", {}).get("uid") == view.uid:
            self.store.put_task(updated)

    async def _read_message(self, namespace: str, job: str) -> tuple[str, int | None]:
        return await self.kube.attempt_result(namespace, job)

    async def _event(self, view: TaskView, event: Event, now: datetime) -> None:
        await self.kube.post_event(
            manifests.build_event(task=view, event=event, now=now, component="cronlet")
        )


def _create_by(
    entry: model.ActiveRun, *, sent: tuple[float, datetime], decided: tuple[float, datetime]
) -> float:
    """The monotonic instant after which the Job of a claim we just wrote may not be created.

    CREATE_WINDOW from when the claim write first went out (``sent``: monotonic and wall), not from when its
    answer was read: a process frozen with that answer unread (SIGSTOP at a due instant) must not create after
    its thaw. For a run claimed ahead, CREATE_WINDOW from its due time. And never later than CREATE_WINDOW
    before another replica may take the claim over (RECLAIM_AFTER after claimTime, or after the due time of a
    run claimed ahead, by its wall clock), however long the write waited for the rate limit: ``decided`` is
    when (monotonic and wall) the pass read the clock for the claimTime it wrote.
    """
    (first, went_out), (mono_now, now) = sent, decided
    due = times.parse(entry.scheduled_time)
    start = max(due, went_out) if decision.ahead(entry) else went_out
    window = decision.CREATE_WINDOW.total_seconds()
    by_send = first + (start - went_out).total_seconds() + window
    takeover = due if decision.ahead(entry) else times.parse(entry.claim_time or times.rfc3339(now))
    reclaim = decision.RECLAIM_AFTER.total_seconds()
    by_takeover = mono_now + (takeover - now).total_seconds() + reclaim - window  # `window` left for skew
    return min(by_send, by_takeover)
