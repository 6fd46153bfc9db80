"""The scheduler's reconcile against an in-memory API: the order of writes, and lost status writes.

Jobs are deleted only after the status write that no longer needs them, so a lost write never turns a finished
or replaced run into a "vanished attempt" that gets retried.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronlet._common import times
from cronlet._controller import kube, reconciler, store
from cronlet._controller.metrics import Metrics
from cronlet._core import model
from cronlet._core.views import Plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeKube:
    def __init__(self, store: store.Store) -> None:
        self.store = store
        self.jobs: dict[str, dict[str, Any]] = {}
        self.rv = 100
        self.fail_patch = False
        self.conflict = False
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.gone = False  # the task was deleted behind the store's back (a watch gap)
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.launch_writes: list[bool] = []  # per status write: marked as a launch (claims an attempt)

    async def create_job(self, manifest: dict[str, Any], *, not_after: float | None = None) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        if not_after is not None and time.monotonic() > not_after:
            raise kube.ClaimExpired(name)
        if name in self.jobs:
            raise kube.AlreadyExists(self.jobs[name])
        self.rv += 1
        body = {
            **manifest,
            "metadata": {
                **manifest["metadata"],
                "resourceVersion": str(self.rv),
                "creationTimestamp": times.rfc3339(T0),
            },
        }
        self.jobs[name] = body
        self.created.append(name)
        return body

    async def delete_job(self, namespace: str, name: str, *, uid: str = "") -> None:
        body = self.jobs.pop(name, None)
        self.deleted.append(name)
        if body is not None:
            self.store.drop_job(body)  # the DELETED watch event

    async def patch_status(
        self,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        resource_version: str = "",
        launch: bool = False,
        sent: list[float] | None = None,
    ) -> dict[str, Any]:
        self.launch_writes.append(launch)
        if sent is not None:
            sent.append(time.monotonic())
        if self.gone:
            raise kube.ApiFailure(404, "scheduledtasks.cronlet.dev not found")
        if self.conflict:
            raise kube.ApiFailure(409, "the object has been modified")
        if self.fail_patch:
            raise kube.ApiFailure(503, "etcd leader changed")
        key = (namespace, name)
        body = self.store.tasks[key]
        status = {k: v for k, v in {**(body.get("status") or {}), **patch}.items() if v is not None}
        self.rv += 1
        return {**body, "status": status, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}

    async def post_event(self, manifest: dict[str, Any]) -> None:
        pass

    async def attempt_result(self, namespace: str, job_name: str) -> tuple[str, int | None]:
        return "ok", 0

    async def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None if self.gone else self.store.tasks.get((namespace, name))

    async def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return self.pods.get(job_name, [])

    async def job_warnings(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return []


def finish(body: dict[str, Any], ok: bool, at: datetime) -> dict[str, Any]:
    cond = {"type": "Complete" if ok else "Failed", "status": "True", "lastTransitionTime": times.rfc3339(at)}
    version = str(int(body["metadata"]["resourceVersion"]) + 1000)
    return {
        **body,
        "metadata": {**body["metadata"], "resourceVersion": version},
        "status": {"conditions": [cond], **({"completionTime": times.rfc3339(at)} if ok else {})},
    }


def make(spec: dict[str, Any]) -> tuple[reconciler.Reconciler, FakeKube, list[datetime]]:
    clock = [T0]
    sched = reconciler.Reconciler(
        kube_api=None,
        image="img",
        metrics=Metrics(per_task=True),  # type: ignore[arg-type]
        known_handlers=frozenset({"echo"}),
        clock=lambda: clock[0],
    )
    fk = FakeKube(sched.store)
    sched.kube = fk  # type: ignore[assignment]
    sched.store.put_task(
        {
            "apiVersion": model.API_VERSION,
            "kind": model.KIND,
            "metadata": {
                "namespace": "ns",
                "name": "t",
                "uid": "u1",
                "generation": 1,
                "resourceVersion": "1",
                "creationTimestamp": times.rfc3339(T0),
            },
            "spec": {"schedule": "*/10 * * * * *", "handler": "echo", **spec},
        }
    )
    return sched, fk, clock


def test_a_lost_status_write_does_not_rerun_a_succeeded_run() -> None:
    async def go() -> None:
        s, fk, clock = make({"successfulJobsHistoryLimit": 0, "backoff": {"initialDelay": "1s", "jitter": 0}})
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        await s.reconcile(key)  # starts the run of :10
        name = fk.created[-1]
        done = finish(fk.jobs[name], True, T0 + timedelta(seconds=12))
        fk.jobs[name] = done
        s.store.put_job(done)
        clock[0] = T0 + timedelta(seconds=12.5)
        fk.fail_patch = True  # transient 503 on the status write
        with pytest.raises(kube.ApiFailure):
            await s.reconcile(key)
        assert name not in fk.deleted  # not deleted while its success is not recorded
        fk.fail_patch = False
        clock[0] = T0 + timedelta(seconds=13.5)  # worker retries after 1 s
        await s.reconcile(key)
        clock[0] = T0 + timedelta(seconds=15)
        await s.reconcile(key)
        st = s.store.tasks[key]["status"]
        assert fk.created == [name], f"succeeded run started again: {fk.created}; counters={st['counters']}"

    asyncio.run(go())


def test_the_claiming_write_is_a_launch_and_the_finishing_write_is_bookkeeping() -> None:
    # With the client-side rate limit short, the claim (and its Job create) go before finished runs' writes.
    async def go() -> None:
        s, fk, clock = make({"successfulJobsHistoryLimit": 1})
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        await s.reconcile(key)  # claims the run of :10
        done = finish(fk.jobs[fk.created[-1]], True, T0 + timedelta(seconds=11))
        s.store.put_job(done)
        clock[0] = T0 + timedelta(seconds=11.5)
        await s.reconcile(key)  # records its end
        assert fk.launch_writes == [True, False]

    asyncio.run(go())


def test_a_lost_status_write_does_not_bring_back_a_replaced_run() -> None:
    async def go() -> None:
        s, fk, clock = make({"concurrencyPolicy": "Replace", "backoff": {"initialDelay": "1s", "jitter": 0}})
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        await s.reconcile(key)  # run of :10 (keeps running)
        old = fk.created[-1]
        clock[0] = T0 + timedelta(seconds=20.01)
        fk.fail_patch = True
        with pytest.raises(kube.ApiFailure):
            await s.reconcile(key)  # creates :20, deletes :10, status write fails
        fk.fail_patch = False
        for t in (21.0, 23.0, 25.0):
            clock[0] = T0 + timedelta(seconds=t)
            await s.reconcile(key)
        st = s.store.tasks[key]["status"]
        runs = sorted({a["runId"] for a in st["active"]})
        assert len(runs) == 1, (
            f"Replace policy but {len(runs)} runs active: {st['active']}; created={fk.created}"
        )
        assert old in fk.deleted  # the replaced run's Job is deleted once the status is written

    asyncio.run(go())


def test_metrics_without_per_task_labels_work() -> None:
    m = Metrics(per_task=False)
    m.child(m.retries, *m.labels("ns", "t")).inc()
    m.child(m.lag, *m.labels("ns", "t")).observe(0.01)
    text = m.render().decode()
    assert "cronlet_retries_total 1.0" in text
    assert 'cronlet_runs_total{outcome="Failed"} 0.0' in text  # created at 0 up front


def test_without_per_task_labels_the_run_gauges_sum_every_task_when_scraped() -> None:
    def plan(*starts: str) -> Plan:
        active = tuple(
            model.ActiveRun(jobName=f"j{i}", scheduledTime=t, attempt=1, startTime=t)
            for i, t in enumerate(starts)
        )
        status = model.TaskStatus(phase="Running", active=list(active))
        return Plan(create=(), delete=(), status=status, events=(), observations=(), wake_at=None, spec=None)

    m = Metrics(per_task=False)
    m.track(("ns", "a"), plan("2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"))
    m.track(("ns", "b"), plan("2026-01-01T00:00:05Z"))
    text = m.render().decode()
    assert "cronlet_runs_active 3.0" in text
    assert "cronlet_oldest_run_start_time_seconds 1.767225605e+09" in text
    m.forget(("ns", "b"))
    text = m.render().decode()
    assert "cronlet_runs_active 2.0" in text
    assert "cronlet_oldest_run_start_time_seconds 1.76722561e+09" in text
    assert 'cronlet_tasks{namespace="ns",phase="Running"} 1.0' in text


def _slow_writes(fk: FakeKube, *, before: float = 0.0, after: float = 0.0) -> None:
    """Status writes that block the process (as a freeze would) before they go out, or after."""
    write = fk.patch_status

    async def slow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        time.sleep(before)
        answer = await write(*args, **kwargs)
        time.sleep(after)
        return answer

    fk.patch_status = slow  # type: ignore[method-assign]


def test_a_claim_whose_write_answer_came_late_creates_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen (SIGSTOP) with the claim write's answer unread: once thawed the window, which starts when the
    claim was decided, has passed, so nothing is created; another replica may have re-claimed by then. With
    the window measured from the answer instead, the thawed leader created a Job twice on CI."""
    monkeypatch.setattr(reconciler.decision, "CREATE_WINDOW", timedelta(seconds=0.2))

    async def go() -> None:
        s, fk, clock = make({})
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        _slow_writes(fk, after=0.3)  # the claim is written, and the process stops before it reads the answer
        await s.reconcile(key)
        assert fk.created == []
        assert s.timers.pending(key) == clock[0]  # decided again at once, from the written claim

    asyncio.run(go())


def test_a_conflicting_status_write_is_dropped_and_decided_again() -> None:
    async def go() -> None:
        s, fk, clock = make({})
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        fk.conflict = True  # the task changed since it was read
        await s.reconcile(key)  # no exception: nothing to retry blindly
        assert s.timers.pending(key) == clock[0] + timedelta(seconds=1)
        fk.conflict = False
        clock[0] = T0 + timedelta(seconds=11)
        await s.reconcile(key)
        st = s.store.tasks[key]["status"]
        assert fk.created == [fk.created[0]] and len(st["active"]) == 1  # the Job made before is adopted

    asyncio.run(go())


def test_a_task_deleted_behind_the_stores_back_is_forgotten_at_its_next_write() -> None:
    """No DELETED event came (a watch gap): the 404 of the status write makes the reconciler ask, and forget."""

    async def go() -> None:
        s, fk, clock = make({})
        key = ("ns", "t")
        fk.gone = True
        clock[0] = T0 + timedelta(seconds=10.01)
        await s.reconcile(key)  # creates the run's Job (its owner is gone: the GC removes it), then 404
        assert key not in s.store.tasks
        assert s.timers.pending(key) is None  # never woken again
        created = list(fk.created)
        clock[0] = T0 + timedelta(seconds=20.01)
        await s.reconcile(key)
        assert fk.created == created  # no further runs of a deleted task

    asyncio.run(go())


def test_an_attempt_past_its_start_limit_is_failed_with_the_pods_reason() -> None:
    async def go() -> None:
        s, fk, clock = make({"startTimeout": "5s", "maxRetries": 0})
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        await s.reconcile(key)
        name = fk.created[-1]
        waiting = {"reason": "ErrImagePull", "message": "pull access denied"}
        fk.pods[name] = [
            {
                "metadata": {"name": name + "-x"},
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [{"name": "executor", "state": {"waiting": waiting}}],
                },
            }
        ]
        # The fake API stamps every object with creationTimestamp T0, so the next pass (as the Job's ADDED
        # event would start it) is already past the 5 s limit; when it comes is test_decision's business.
        clock[0] = T0 + timedelta(seconds=10.02)
        await s.reconcile(key)
        status = s.store.tasks[key]["status"]
        assert status["history"][0]["outcome"] == "Failed"
        assert "ErrImagePull: pull access denied" in status["history"][0]["message"]
        assert name in fk.deleted

    asyncio.run(go())


class Server:
    """A minimal API server for two replicas: resourceVersion preconditions on status writes, derived-name
    Jobs, deletes. Each replica has its own store, fed only by its own write responses (a stale view)."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        self.rv = int(task["metadata"]["resourceVersion"])
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []

    def client(self) -> Any:
        server = self

        class Client(FakeKube):
            async def create_job(
                self, manifest: dict[str, Any], *, not_after: float | None = None
            ) -> dict[str, Any]:
                name = manifest["metadata"]["name"]
                if not_after is not None and time.monotonic() > not_after:
                    raise kube.ClaimExpired(name)
                if name in server.jobs:
                    raise kube.AlreadyExists(server.jobs[name])
                server.rv += 1
                meta = {
                    **manifest["metadata"],
                    "resourceVersion": str(server.rv),
                    "uid": f"job-{server.rv}",
                    "creationTimestamp": times.rfc3339(T0),
                }
                server.jobs[name] = {**manifest, "metadata": meta}
                server.created.append(name)
                return server.jobs[name]

            async def delete_job(self, namespace: str, name: str, *, uid: str = "") -> None:
                if name in server.jobs and (not uid or server.jobs[name]["metadata"]["uid"] == uid):
                    del server.jobs[name]

            async def patch_status(
                self,
                namespace: str,
                name: str,
                patch: dict[str, Any],
                *,
                resource_version: str = "",
                launch: bool = False,
                sent: list[float] | None = None,
            ) -> dict[str, Any]:
                if resource_version != server.task["metadata"]["resourceVersion"]:
                    raise kube.ApiFailure(409, "the object has been modified")
                status = {
                    k: v for k, v in {**(server.task.get("status") or {}), **patch}.items() if v is not None
                }
                server.rv += 1
                server.task = {
                    **server.task,
                    "status": status,
                    "metadata": {**server.task["metadata"], "resourceVersion": str(server.rv)},
                }
                return server.task

        return Client


def test_a_replica_with_a_stale_view_creates_nothing_once_the_job_is_gone() -> None:
    """Fencing, not the Job name: replica A runs the due time, records it and prunes its Job (history limit
    0); replica B, paused meanwhile, wakes with its old view. The Job's name is free again, yet B's claim
    write is refused (409) and it creates nothing."""

    async def go() -> None:
        a, _, clock = make({"successfulJobsHistoryLimit": 0})
        b, _, _ = make({"successfulJobsHistoryLimit": 0})
        b.clock = a.clock
        server = Server(dict(a.store.tasks[("ns", "t")]))
        a.kube = server.client()(a.store)  # type: ignore[assignment]
        b.kube = server.client()(b.store)  # type: ignore[assignment]
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        await a.reconcile(key)  # A claims the run of :10 and creates its Job
        name = server.created[0]
        done = finish(server.jobs[name], True, T0 + timedelta(seconds=11))
        server.jobs[name] = done
        a.store.put_job(done)
        clock[0] = T0 + timedelta(seconds=11.5)
        await a.reconcile(key)  # A records the success and deletes the Job
        assert name not in server.jobs
        clock[0] = T0 + timedelta(seconds=12)
        await b.reconcile(key)  # B's view: the task at its first version, no Jobs, the run of :10 due
        assert server.created == [name], f"a stale replica created {server.created[1:]}"
        assert server.task["status"]["counters"]["succeeded"] == 1

    asyncio.run(go())


def test_a_job_the_api_server_refuses_leaves_the_task_blocked_not_without_a_phase() -> None:
    sched, fk, clock = make({})

    async def refuse(manifest: dict[str, Any], **_: object) -> dict[str, Any]:
        raise kube.ApiFailure(403, 'jobs "t-1" is forbidden: exceeded quota: pods')

    fk.create_job = refuse  # type: ignore[method-assign]

    async def go() -> None:
        clock[0] = T0 + timedelta(seconds=10.01)
        with pytest.raises(kube.ApiFailure):
            await sched.reconcile(("ns", "t"))

    asyncio.run(go())
    status = sched.store.tasks[("ns", "t")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["status"], ready["reason"]) == ("Blocked", "False", "JobCreateFailed")
    assert "exceeded quota" in ready["message"]


@pytest.mark.parametrize(
    "broken", [{"active": "not a list"}, {"phase": "Running", "history": [{"outcome": "Exploded"}]}]
)
def test_an_unreadable_status_leaves_the_task_blocked_not_without_a_phase(broken: dict[str, Any]) -> None:
    sched, fk, _ = make({})
    body = sched.store.tasks[("ns", "t")]
    sched.store.put_task({**body, "status": broken})
    asyncio.run(sched.reconcile(("ns", "t")))
    status = sched.store.tasks[("ns", "t")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["status"], ready["reason"]) == ("Blocked", "False", "StatusUnreadable")
    assert fk.created == []


def test_an_unreadable_status_is_stalled_at_the_tasks_generation() -> None:
    # kstatus reads Stalled=True as Failed and needs observedGeneration == generation to trust the conditions.
    async def go() -> None:
        s, _, clock = make({})
        key = ("ns", "t")
        body = s.store.tasks[key]
        s.store.put_task(
            {**body, "metadata": {**body["metadata"], "generation": 3}, "status": {"active": "not a list"}}
        )
        clock[0] = T0 + timedelta(seconds=10.01)
        await s.reconcile(key)
        st = s.store.tasks[key]["status"]
        assert st["observedGeneration"] == 3
        kinds = {c["type"]: (c["status"], c["reason"], c["observedGeneration"]) for c in st["conditions"]}
        assert kinds == {
            "Ready": ("False", "StatusUnreadable", 3),
            "Stalled": ("True", "StatusUnreadable", 3),
        }

    asyncio.run(go())


# --------------------------------------------------------------------------- claiming ahead


def _writes_per_run(ahead: timedelta | None, runs: int = 3) -> tuple[int, list[str]]:
    """Status writes over ``runs`` runs of a task every 10 s whose Jobs succeed a second after they start."""
    s, fk, clock = make({"successfulJobsHistoryLimit": 5})
    s.claim_ahead = ahead
    key = ("ns", "t")
    writes: list[datetime] = []
    write = fk.patch_status

    async def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        writes.append(clock[0])
        return await write(*args, **kwargs)

    fk.patch_status = counted  # type: ignore[method-assign]

    async def go() -> None:
        clock[0] = T0 + timedelta(seconds=1)
        await s.reconcile(key)  # the first status
        for n in range(1, runs + 1):
            clock[0] = T0 + timedelta(seconds=10 * n + 0.01)
            await s.reconcile(key)  # due: the Job
            name = fk.created[-1]
            s.store.put_job(fk.jobs[name])
            await s.reconcile(key)  # its watch event
            done = finish(fk.jobs[name], True, T0 + timedelta(seconds=10 * n + 1))
            fk.jobs[name] = done
            s.store.put_job(done)
            clock[0] = T0 + timedelta(seconds=10 * n + 1.5)
            await s.reconcile(key)  # its end

    asyncio.run(go())
    assert fk.created == [
        f"t-{int((T0 + timedelta(seconds=10 * n)).timestamp())}-1" for n in range(1, runs + 1)
    ]
    return len(writes) - 1, fk.created


def test_claiming_ahead_leaves_one_status_write_per_run() -> None:
    """The end of each run also claims the next; at the due time only the Job is created. Without the lead,
    each run needs its claim and its end."""
    assert _writes_per_run(timedelta(seconds=60)) == (3, _writes_per_run(None)[1])
    assert _writes_per_run(None)[0] == 6


def test_a_run_claimed_ahead_by_another_replica_is_created_by_it_alone() -> None:
    async def go() -> None:
        a, _, clock = make({"schedule": "0 * * * * *"})
        b, _, _ = make({"schedule": "0 * * * * *"})
        b.clock = a.clock
        a.claim_ahead = b.claim_ahead = timedelta(seconds=60)
        server = Server(dict(a.store.tasks[("ns", "t")]))
        a.kube = server.client()(a.store)  # type: ignore[assignment]
        b.kube = server.client()(b.store)  # type: ignore[assignment]
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=30)
        await a.reconcile(key)  # A's first write claims the run of :60
        b.store.put_task(server.task)  # B sees it (a standby that just took over)
        clock[0] = T0 + timedelta(seconds=60.01)
        await b.reconcile(key)
        assert server.created == []  # not B's claim: B waits RECLAIM_AFTER
        assert b.timers.pending(key) == T0 + timedelta(seconds=60) + reconciler.decision.RECLAIM_AFTER
        await a.reconcile(key)
        assert server.created == ["t-1767225660-1"]  # A's claim: created, with no write first
        assert server.task["metadata"]["resourceVersion"] == "2"

    asyncio.run(go())


def test_a_claimant_frozen_past_the_due_time_does_not_create_after_its_thaw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its create window ends CREATE_WINDOW after the due time by its monotonic clock, counted from its claim
    write: a pass whose clock reading came before the freeze still sends nothing after it."""
    monkeypatch.setattr(reconciler.decision, "CREATE_WINDOW", timedelta(seconds=0.2))

    async def go() -> None:
        s, fk, clock = make({"schedule": "0 * * * * *"})
        s.claim_ahead = timedelta(seconds=60)
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=59.9)
        await s.reconcile(key)  # claims :60, 0.1 s ahead
        assert fk.created == []
        time.sleep(0.4)  # frozen: the due time and its window pass
        clock[0] = T0 + timedelta(seconds=60.01)  # read before the freeze
        await s.reconcile(key)
        assert fk.created == []

    asyncio.run(go())


def test_a_claim_write_that_waited_too_long_to_go_out_creates_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its window starts when it went out, but another replica may take over RECLAIM_AFTER after its
    claimTime: the Job is never created later than CREATE_WINDOW before that, however long the write waited
    (for the rate limit, in a burst)."""
    monkeypatch.setattr(reconciler.decision, "CREATE_WINDOW", timedelta(seconds=0.1))
    monkeypatch.setattr(reconciler.decision, "RECLAIM_AFTER", timedelta(seconds=0.3))

    async def go() -> None:
        s, fk, clock = make({})
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=10.01)
        _slow_writes(fk, before=0.25)  # the claim write waits for the rate limit, then goes out
        await s.reconcile(key)
        assert fk.created == []

    asyncio.run(go())


def test_a_claim_ahead_is_created_once_even_when_its_job_is_gone_before_the_status_says_so() -> None:
    """Another replica saw the Job end, recorded it and pruned it (history limit 0); our store already has the
    Job's deletion but not yet that status write. Within the window the claim still looks ours: it must not
    be created a second time (found by the fencing chaos test: a name created twice)."""

    async def go() -> None:
        s, fk, clock = make({"schedule": "0 * * * * *", "successfulJobsHistoryLimit": 0})
        s.claim_ahead = timedelta(seconds=60)
        key = ("ns", "t")
        clock[0] = T0 + timedelta(seconds=30)
        await s.reconcile(key)  # claims :60
        clock[0] = T0 + timedelta(seconds=60.01)
        await s.reconcile(key)  # creates it, with no write
        [name] = fk.created
        s.store.drop_job(fk.jobs.pop(name))  # the DELETED event, before the status write that explains it
        clock[0] = T0 + timedelta(seconds=60.5)
        await s.reconcile(key)
        assert fk.created == [name]

    asyncio.run(go())
