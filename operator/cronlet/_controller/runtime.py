"""Wiring: kopf watches feed the scheduler; the process serves metrics and stops cleanly.

kopf is used for what it does well (watching with reconnects, per-object event handling, signal handling)
and nothing else: only event handlers are registered, so kopf never writes to a ScheduledTask (no finalizers,
no annotations, no status fields of its own). The store is fed from inside kopf's watch streams, and the
listing barrier is ours (``Intake``). All writes go through ``cronlet._controller.kube``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import kopf
from kopf._core.engines import peering
from kubernetes import client, config

from cronlet._common import handlerref
from cronlet._controller import election, health, kube, listings, metrics, publisher, reconciler, sinks
from cronlet._controller.store import Store
from cronlet._core import events, manifests, model, ratelimit
from cronlet._core.views import Tenancy

log = logging.getLogger("cronlet")
# Seconds an idle per-object worker of kopf lingers for more events of its object (kopf's default: 5). Our
# handlers only wake a pass (the store is fed before them), so a worker that stays is only memory: with the
# default, a (re-)list of 10,000 tasks held a worker for every one of them at once (tools/bench_scale.py).
IDLE_WORKER_SECONDS = 0.5
# Seconds between the warnings that name the watches whose first listing has not ended (not ready meanwhile).
LISTING_WAIT_NOTE_SECONDS = 30.0


@dataclass
class Options:
    namespaces: list[str] = field(default_factory=list)
    executor_image: str = "cronlet:0.1.0"
    metrics_port: int = 8080
    log_format: str = "text"
    per_task_metrics: bool = True
    per_task_metrics_limit: int = metrics.PER_TASK_LIMIT
    workers: int = 32
    claim_ahead: float = 60.0  # seconds before a due time its run may be claimed; 0: at the due time
    leader_elect: bool = True
    election: election.Settings = field(default_factory=election.Settings)
    tenancy: Tenancy = field(default_factory=Tenancy)
    events: EventOptions = field(default_factory=lambda: EventOptions())
    kube_api_qps: float = 0.0  # client-side rate limit of API requests; 0: none (the CLI sets its default)
    kube_api_burst: int = 0


@dataclass
class EventOptions:
    """Where task events go (no sink: none are recorded or sent). Credentials come from the environment."""

    kafka_bootstrap_servers: str = ""
    kafka_topic: str = sinks.DEFAULT_TOPIC
    kafka_mode: events.Mode = "binary"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    http_url: str = ""
    http_mode: events.Mode = "binary"
    http_headers_file: str = ""
    http_headers: str = ""
    outbox_max_entries: int = events.MAX_ENTRIES
    outbox_max_bytes: int = events.MAX_BYTES

    def sinks(self) -> list[sinks.Sink]:
        """The configured sinks; raises ``sinks.SinkConfigError`` for options that make no usable sink."""
        return sinks.from_options(
            kafka_bootstrap_servers=self.kafka_bootstrap_servers or None,
            kafka_topic=self.kafka_topic,
            kafka_mode=self.kafka_mode,
            kafka_security_protocol=self.kafka_security_protocol,
            kafka_sasl_mechanism=self.kafka_sasl_mechanism or None,
            kafka_sasl_username=self.kafka_sasl_username or None,
            kafka_sasl_password=self.kafka_sasl_password or None,
            kafka_ssl_cafile=self.kafka_ssl_cafile or None,
            kafka_ssl_certfile=self.kafka_ssl_certfile or None,
            kafka_ssl_keyfile=self.kafka_ssl_keyfile or None,
            http_url=self.http_url or None,
            http_mode=self.http_mode,
            http_headers_file=self.http_headers_file or None,
            http_headers=self.http_headers or None,
        )


def load_kube_config(*, pool: int = 16) -> client.ApiClient:
    """In-cluster service account, else KUBECONFIG, else ~/.kube/config (as the contract says)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


def identity() -> peering.Identity:
    """Who this operator process is, without asking the user database.

    kopf's own default calls ``getpass.getuser()``, which raises KeyError for a uid with no passwd entry: the
    image runs as 65532, which has none, so the operator crash-looped in its own image. The pod name (the
    hostname in a pod) and the pid say who we are just as well.
    """
    return peering.Identity(f"cronlet@{socket.gethostname()}/{os.getpid()}")


def converge(sched: reconciler.Reconciler, listing: listings.Listing) -> None:
    """A watch listed again: forget what the list did not return, and look again at the tasks concerned."""
    store = sched.store
    if listing.plural == model.PLURAL:
        keys = store.converge_tasks(
            namespace=listing.namespace, listed=listing.listed, list_version=listing.resource_version
        )
    elif listing.plural == "jobs":
        keys = store.converge_jobs(
            namespace=listing.namespace, listed=listing.listed, list_version=listing.resource_version
        )
    elif listing.plural == "namespaces":
        keys = store.converge_namespaces(frozenset(name for _, name in listing.listed))
    else:
        return
    if keys:
        log.info(
            "a new list of %s showed %d task(s) with objects deleted meanwhile", listing.plural, len(keys)
        )
    sched.touch_all(keys)


class Intake:
    """Every watch event into the store, in the order the API server sent it, before kopf's per-object workers
    see it (``listings`` calls ``event`` from inside kopf's watch stream); and when every watch has listed once.

    This is the listing barrier: nothing is decided until the store holds every task and every Job (a restart
    must not mistake a Job it has not listed yet for a missing one). kopf's own barrier, index handlers, costs
    a wake-up of every waiting object per object listed: a restart with 10,000 tasks spent over 17 minutes of
    CPU in it (tools/bench_scale.py). Here it is one set per watch. An event whose object tells the planner
    nothing new (the echo of our own status write or Job create, whose answers the store holds; a Job's pod
    counts) wakes no pass: ``news`` notes what is, for the event handlers.
    """

    def __init__(self, store: Store, *, expected: set[tuple[str, str | None]]) -> None:
        self.store = store
        self.news: set[tuple[str, str, str]] = set()  # (kind, namespace, name)
        self.pending = set(expected)  # (plural, namespace or None) whose first listing has not ended
        self.listed = asyncio.Event()
        if not self.pending:
            self.listed.set()

    def event(self, plural: str, raw_event: dict[str, Any]) -> None:
        kind = raw_event.get("type")
        if kind not in (None, "ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK, ERROR: no object of ours
        raw = dict(raw_event["object"])
        meta = raw.get("metadata") or {}
        if plural == model.PLURAL:
            ident = ("task", meta.get("namespace", ""), meta.get("name", ""))
            if kind == "DELETED":
                self.news.discard(ident)
                self.store.drop_task((ident[1], ident[2]), uid=meta.get("uid"))
                return
            if self.store.task_is_news(raw):
                self.news.add(ident)
            self.store.put_task(raw)
        elif plural == "jobs":
            if model.TASK_LABEL not in (meta.get("labels") or {}):
                return
            ident = ("job", meta.get("namespace", ""), meta.get("name", ""))
            if kind == "DELETED":
                self.news.discard(ident)
                self.store.drop_job(raw)
                return
            if self.store.job_is_news(raw):
                self.news.add(ident)
            self.store.put_job(raw)
        elif plural == "namespaces":
            if kind == "DELETED":
                self.store.drop_namespace(meta.get("name", ""))
            else:
                self.store.put_namespace(raw)

    def take_news(self, kind: str, raw: dict[str, Any]) -> bool:
        ident = (kind, raw["metadata"]["namespace"], raw["metadata"]["name"])
        if ident in self.news:
            self.news.discard(ident)
            return True
        return False

    def waiting_for(self) -> list[str]:
        """The watches whose first listing has not ended, as a person reads them."""
        return sorted(
            f"{plural} in {ns}" if ns else f"{plural} (all namespaces)" for plural, ns in self.pending
        )

    async def wait_listed(self, *, say_every: float) -> None:
        """Wait until every watch has listed, saying every ``say_every`` seconds which ones it still waits for
        (an uninstalled CRD or a missing permission keeps a listing from ever ending, and the operator
        not ready)."""
        while True:
            try:
                await asyncio.wait_for(self.listed.wait(), timeout=say_every)
                return
            except TimeoutError:
                log.warning(
                    "not ready: still waiting for the first listing of %s (is the CRD installed, and may the "
                    "operator list and watch it?)",
                    ", ".join(self.waiting_for()),
                )

    def ended(self, listing: listings.Listing) -> None:
        """A listing ended: the store holds what it returned (its events were taken in before its end)."""
        self.pending.discard((listing.plural, listing.namespace))
        if not self.pending and not self.listed.is_set():
            log.info("every watch has listed: tasks and Jobs are all known")
            self.listed.set()


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base for handlers that act on changes (``on.update``, daemons): we have none, only event
    handlers. kopf's own storage deep-copies every object of every event to build it, 6% of the operator's
    samples in a burst of 1,000 runs (py-spy); this one keeps and builds nothing."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # Events are ours: only what a user must see
    settings.scanning.disabled = True  # no CRD/namespace watching needed: fewer permissions
    settings.watching.server_timeout = 300
    # The initial list (and every re-list) in pages: 10,000 tasks in one answer are ~25 MB of JSON and
    # ~110 MB as dicts at once, which set the start-up peak; a page of 500 is a few MB.
    settings.watching.chunk_size = 500
    settings.networking.request_timeout = 60
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    settings.persistence.diffbase_storage = NoDiffBase()
    return settings


def watched(opts: Options) -> set[tuple[str, str | None]]:
    """The (plural, namespace) of every watch kopf runs for us: one per namespace, or one cluster-wide."""
    spaces: list[str | None] = list(opts.namespaces) if opts.namespaces else [None]
    found = {(plural, ns) for plural in (model.PLURAL, "jobs") for ns in spaces}
    if opts.tenancy.pod_template_selector is not None:
        found.add(("namespaces", None))
    return found


def build_registry(sched: reconciler.Reconciler, intake: Intake) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    store = sched.store

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same resolution as our own client: in-cluster service account, else the kubeconfig.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    # The store is fed by ``intake`` before these run; they only wake passes. All handlers are `async def`:
    # kopf runs plain `def` handlers in its thread pool, and the store and the work queue are the event loop's
    # alone.
    @kopf.on.event(model.GROUP, model.VERSION, model.PLURAL, registry=registry)
    async def task_event(type: str | None, body: Any, **_: Any) -> None:
        raw = _raw(body)
        key = (raw["metadata"]["namespace"], raw["metadata"]["name"])
        if type == "DELETED" or intake.take_news("task", raw):
            sched.touch(key)

    @kopf.on.event("batch", "v1", "jobs", labels={model.TASK_LABEL: kopf.PRESENT}, registry=registry)
    async def job_event(type: str | None, body: Any, **_: Any) -> None:
        raw = _raw(body)
        if type == "DELETED" or intake.take_news("job", raw):
            key = manifests.task_key_of_job(raw)
            if key is not None:
                sched.touch(key)

    if sched.tenancy.pod_template_selector is not None:
        # Which namespaces allow a podTemplate (--pod-template-namespace-selector): their labels are known
        # before the first decision like tasks and Jobs, and a changed label looks at their tasks.
        @kopf.on.event("v1", "namespaces", registry=registry)
        async def namespace_event(type: str | None, body: Any, **_: Any) -> None:
            sched.touch_all(store.tasks_in(body["metadata"]["name"]))

    return registry


def _raw(body: Any) -> dict[str, Any]:
    # kopf hands out a read-only view over the parsed JSON of this event; a shallow copy keeps it.
    return dict(body)


async def run(opts: Options, event_sinks: list[sinks.Sink] | None = None) -> None:
    """Run until kopf stops (SIGTERM). ``event_sinks``: built by the caller from ``opts.events`` (so that a bad
    option fails before anything starts)."""
    # API calls run in threads (the Kubernetes client blocks). asyncio's default pool has cpu+4 threads, six
    # on two cores, which made a burst of due runs queue behind each other: size it for the workers, each of
    # which has at most one call in flight, plus room for the metrics server and kopf.
    threads = opts.workers * 2 + 4
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cronlet-api")
    )
    api = load_kube_config(pool=threads)
    m = metrics.Metrics(per_task=opts.per_task_metrics, per_task_limit=opts.per_task_metrics_limit)
    state = health.HealthState()
    limits = ratelimit.Limits(qps=opts.kube_api_qps, burst=opts.kube_api_burst)
    adapter = kube.Kube(api, metrics=m, limiter=kube.Limiter(limits))
    sched = reconciler.Reconciler(
        kube_api=adapter,
        image=opts.executor_image,
        metrics=m,
        known_handlers=frozenset(handlerref.registered()),
        workers=opts.workers,
        tenancy=opts.tenancy,
        claim_ahead=timedelta(seconds=opts.claim_ahead) if opts.claim_ahead > 0 else None,
    )
    outbox: publisher.Publisher | None = None
    if event_sinks:
        outbox = publisher.Publisher(
            sinks=event_sinks,
            store=sched.store,
            metrics=m,
            max_entries=opts.events.outbox_max_entries,
            max_bytes=opts.events.outbox_max_bytes,
        )
        sched.publisher = outbox
    intake = Intake(sched.store, expected=watched(opts))
    elector: election.Elector | None = None
    if opts.leader_elect:

        def lead() -> None:
            m.leader.set(1)
            sched.touch_all(list(sched.store.tasks))  # a warm store: every task is looked at now
            if outbox is not None:
                outbox.touch_all(list(sched.store.tasks))  # what the last leader left unacknowledged

        elector = election.Elector(adapter, opts.election, on_lead=lead, on_lose=lambda: m.leader.set(0))
        sched.leading = elector.leading
        sched.alone_since = lambda: elector.since if elector.leading() else None
        if outbox is not None:
            outbox.leading = elector.leading
    else:
        m.leader.set(1)
        sched.leading = intake.listed.is_set  # no decision before every watch has listed
    state.watch_workers(sched.queue.busy_since)
    server = health.serve(metrics=m, health=state, port=opts.metrics_port)
    registry = build_registry(sched, intake)

    def listed(listing: listings.Listing) -> None:
        try:
            converge(sched, listing)
        finally:
            intake.ended(listing)  # the store holds the listing's events whatever converging did

    listings.install(listed, intake.event)
    settings = kopf_settings()
    sched.start()
    if outbox is not None:
        outbox.start()
    # Ready once kopf has started and every watch has listed (the store holds every task and Job).
    ready_flag: asyncio.Event = asyncio.Event()

    async def mark_ready() -> None:
        await ready_flag.wait()
        await intake.wait_listed(say_every=LISTING_WAIT_NOTE_SECONDS)
        state.ready = True  # ready as the leader or as a warm standby: both have listed everything
        m.ready.set(1)
        if elector is not None:
            # Only once everything is listed: a new leader must not mistake a Job it has not seen yet for a
            # missing one.
            await elector.run()
        else:
            sched.touch_all(list(sched.store.tasks))  # every task is looked at now, with everything listed
            if outbox is not None:
                outbox.touch_all(list(sched.store.tasks))  # sent again after a restart: not acknowledged

    marker = asyncio.create_task(mark_ready())
    heartbeat = asyncio.create_task(state.beat_forever(), name="cronlet-heartbeat")
    log.info(
        "cronlet operator starting: namespaces=%s executor-image=%s metrics-port=%s leader-elect=%s "
        "allowed-service-accounts=%s pod-template-namespace-selector=%s event-sinks=%s "
        "kube-api-qps=%s kube-api-burst=%s",
        opts.namespaces or "all",
        opts.executor_image,
        opts.metrics_port,
        f"{opts.election.namespace}/{opts.election.name} as {opts.election.identity}" if elector else "off",
        "*"
        if opts.tenancy.allowed_service_accounts is None
        else ",".join(sorted(opts.tenancy.allowed_service_accounts)),
        ",".join(f"{k}={v}" for k, v in (opts.tenancy.pod_template_selector or {}).items()) or "off",
        ",".join(sink.name for sink in event_sinks or []) or "none",
        opts.kube_api_qps if opts.kube_api_qps > 0 else "unlimited",
        opts.kube_api_burst,
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            identity=identity(),
            clusterwide=not opts.namespaces,
            namespaces=opts.namespaces,
            ready_flag=ready_flag,
        )
    finally:
        state.ready = False
        m.ready.set(0)
        marker.cancel()
        heartbeat.cancel()
        await sched.stop()
        if outbox is not None:
            await outbox.stop()
        if elector is not None:
            await elector.release()  # after the last write: a standby takes over at its next round
        server.shutdown()
        api.close()
        log.info("cronlet operator stopped")
