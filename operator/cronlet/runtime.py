"""Wiring: kopf watches feed the scheduler; the process serves metrics and stops cleanly.

kopf is used for what it does well (watching with reconnects, the initial listing barrier, signal handling)
and nothing else: only index and event handlers are registered, so kopf never writes to a ScheduledTask
(no finalizers, no annotations, no status fields of its own). All writes go through ``cronlet.kube``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client, config

from cronlet import kube, metrics, model, scheduler

log = logging.getLogger("cronlet")


@dataclass
class Options:
    namespaces: list[str] = field(default_factory=list)
    executor_image: str = "cronlet:0.1.0"
    metrics_port: int = 8080
    log_format: str = "text"
    per_task_metrics: bool = True
    workers: int = 8


def known_handlers() -> frozenset[str]:
    return frozenset(ep.name for ep in importlib.metadata.entry_points(group="cronlet.handlers"))


def load_kube_config(*, pool: int = 16) -> client.ApiClient:
    """In-cluster service account, else KUBECONFIG, else ~/.kube/config (as the contract says)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


def build_registry(sched: scheduler.Scheduler, health: metrics.HealthState) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    store = sched.store

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same resolution as our own client: in-cluster service account, else the kubeconfig.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    # Index handlers run for every event *before* kopf lifts its initial-listing barrier, so the store holds
    # every task and every Job before the first decision is taken: a restart cannot mistake a Job it has not
    # listed yet for a missing one.
    @kopf.index(model.GROUP, model.VERSION, model.PLURAL, registry=registry)
    def tasks_seen(body: Any, **_: Any) -> None:
        store.put_task(_raw(body))

    @kopf.index("batch", "v1", "jobs", labels={model.TASK_LABEL: kopf.PRESENT},
                registry=registry)
    def jobs_seen(body: Any, **_: Any) -> None:
        store.put_job(_raw(body))

    @kopf.on.event(model.GROUP, model.VERSION, model.PLURAL, registry=registry)
    def task_event(type: str | None, body: Any, **_: Any) -> None:
        health.ready = True
        sched.metrics.ready.set(1)
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if type == "DELETED":
            store.drop_task(key)
        sched.touch(key)

    @kopf.on.event("batch", "v1", "jobs", labels={model.TASK_LABEL: kopf.PRESENT},
                   registry=registry)
    def job_event(type: str | None, body: Any, **_: Any) -> None:
        key = store.drop_job(_raw(body)) if type == "DELETED" else store.put_job(_raw(body))
        if key is not None:
            sched.touch(key)

    return registry


def _raw(body: Any) -> dict[str, Any]:
    # kopf hands out a read-only view over the parsed JSON of this event; a shallow copy keeps it.
    return dict(body)


async def run(opts: Options) -> None:
    # API calls run in threads (the Kubernetes client blocks). asyncio's default pool has cpu+4 threads, six
    # on two cores, which made a burst of due runs queue behind each other: size it for the workers, each of
    # which has at most one call in flight, plus room for the metrics server and kopf.
    threads = opts.workers * 2 + 4
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cronlet-api"))
    api = load_kube_config(pool=threads)
    m = metrics.Metrics(per_task=opts.per_task_metrics)
    health = metrics.HealthState()
    server = metrics.serve(metrics=m, health=health, port=opts.metrics_port)
    sched = scheduler.Scheduler(kube_api=kube.Kube(api, metrics=m), image=opts.executor_image, metrics=m,
                                known_handlers=known_handlers(), workers=opts.workers)
    registry = build_registry(sched, health)
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # Events are ours: only what a user must see
    settings.scanning.disabled = True  # no CRD/namespace watching needed: fewer permissions
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    sched.start()
    # kopf readiness: when the first watch events arrive (after the listing barrier) we mark ready; with no
    # tasks at all, ready once kopf has started its watchers.
    ready_flag: asyncio.Event = asyncio.Event()

    async def mark_ready() -> None:
        await ready_flag.wait()
        await asyncio.sleep(0.5)
        health.ready = True
        m.ready.set(1)

    marker = asyncio.create_task(mark_ready())
    log.info("cronlet operator starting: namespaces=%s executor-image=%s metrics-port=%s",
             opts.namespaces or "all", opts.executor_image, opts.metrics_port)
    try:
        await kopf.operator(registry=registry, settings=settings, standalone=True,
                            clusterwide=not opts.namespaces, namespaces=opts.namespaces, ready_flag=ready_flag)
    finally:
        health.ready = False
        m.ready.set(0)
        marker.cancel()
        await sched.stop()
        server.shutdown()
        api.close()
        log.info("cronlet operator stopped")
