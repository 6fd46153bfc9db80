"""The only module that talks to the Kubernetes API for writes and point reads.

Each call is one request with a (connect, read) timeout, retried briefly on transient errors with tenacity
(429, 5xx, and no answer at all: refused, reset or half-open connections, timeouts), and run in a worker
thread so the event loop never blocks. A call that fails for good raises ``ApiFailure`` and counts in
``cronlet_api_errors_total``. Watching is kopf's; deciding is ``_core.decision``'s; this module only sends.

Every request, retries included, first takes a token from one client-side bucket (``--kube-api-qps``,
``--kube-api-burst``, as kube-controller-manager's): when it is short, the lease goes first, then launches
(the claiming status write and the Job create), then the rest (``_core.ratelimit``). Answers are read as
plain JSON, never through the client's generated models (that costs more CPU than the request itself).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity
import urllib3
import urllib3.connection
import urllib3.exceptions
from kubernetes import client
from kubernetes.client.rest import ApiException

from cronlet._controller.metrics import Metrics
from cronlet._core import manifests, model, ratelimit
from cronlet._core.ratelimit import Priority

log = logging.getLogger("cronlet.kube")
FIELD_MANAGER = "cronlet"
T = TypeVar("T")
# Seconds to connect, and to wait for each read of the answer. A half-open connection then fails a call
# instead of holding a worker forever; the retries below make a blip invisible.
TIMEOUTS = (5.0, 30.0)
# Errors of the transport, not of the API: no answer (refused, reset, half-open, timed out).
_NO_ANSWER = (OSError, ConnectionError, urllib3.exceptions.HTTPError)


class AlreadyExists(Exception):
    def __init__(self, body: dict[str, Any] | None) -> None:
        super().__init__("already exists")
        self.body = body


class ClaimExpired(Exception):
    """A Job create not sent: the claim it follows is older than the create window (the process was paused
    between its claim and this send, or the API server was slow to answer an earlier try)."""


# The create window of the request this thread is sending (monotonic seconds), read by the connection just
# before each write to its socket: a process frozen after the early check in `create_job` (serializing the
# body, waiting for a connection, a TLS handshake: milliseconds, not microseconds) sends nothing once thawed.
_window = threading.local()


def _check_window() -> None:
    not_after: float | None = getattr(_window, "not_after", None)
    if not_after is not None and time.monotonic() > not_after:
        raise ClaimExpired(getattr(_window, "name", ""))


class _FencedHTTPConnection(urllib3.connection.HTTPConnection):
    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()  # the handshake before the check: what may follow it is one write call
        _check_window()  # headers and body are separate writes: a request cut after its headers creates nothing
        super().send(data)


class _FencedHTTPSConnection(_FencedHTTPConnection, urllib3.connection.HTTPSConnection):
    """TLS, with the same check (the MRO puts the fenced send first, then HTTPSConnection's own)."""


class _FencedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _FencedHTTPConnection


class _FencedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _FencedHTTPSConnection


def fence_connections(api: client.ApiClient) -> None:
    """Make the client's connections check the create window of the request under way (`_window`)."""
    manager = api.rest_client.pool_manager
    manager.pool_classes_by_scheme = {"http": _FencedHTTPPool, "https": _FencedHTTPSPool}
    manager.clear()  # pools made before this (none in practice) would keep the plain connections


class ApiFailure(Exception):
    """A request that failed for good (after retries). ``status`` is the HTTP status, 0 for no answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Limiter:
    """Waits on the event loop for a token of a ``ratelimit.Bucket``; ``clock`` is monotonic seconds."""

    def __init__(self, limits: ratelimit.Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._bucket: ratelimit.Bucket[asyncio.Future[None]] = ratelimit.Bucket(limits, now=clock())
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, priority: Priority) -> float:
        """Wait for a token; the seconds waited."""
        began = self._clock()
        if self._bucket.take(priority, began):
            return 0.0
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._bucket.wait(granted, priority)
        self._arm()
        try:
            await granted
        except asyncio.CancelledError:
            self._bucket.cancel(granted)
            raise
        return self._clock() - began

    def _arm(self) -> None:
        if self._timer is not None:
            return
        delay = self._bucket.next_release(self._clock())
        if delay is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        for granted in self._bucket.release(self._clock()):
            if not granted.done():
                granted.set_result(None)
        self._arm()


UNLIMITED = ratelimit.Limits(qps=0, burst=0)


def _json(response: Any) -> dict[str, Any]:
    """The body of a raw (``_preload_content=False``) answer."""
    decoded: dict[str, Any] = json.loads(response.data)
    return decoded


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (0, 429, 500, 502, 503, 504) or exc.status is None
    return isinstance(exc, _NO_ANSWER)


class Kube:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        metrics: Metrics,
        timeouts: tuple[float, float] = TIMEOUTS,
        limiter: Limiter | None = None,
    ) -> None:
        self.api = api
        fence_connections(api)
        self.limiter = limiter if limiter is not None else Limiter(UNLIMITED)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.metrics = metrics
        self.timeouts = timeouts

    async def _call(
        self, verb: str, resource: str, fn: Callable[[], T], *, priority: Priority = Priority.BOOKKEEPING
    ) -> T:
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_transient),
            wait=tenacity.wait_exponential(multiplier=0.2, max=3),
            stop=tenacity.stop_after_attempt(4),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    waited = await self.limiter.acquire(priority)
                    if waited:
                        self.metrics.api_throttled.labels(priority.name.lower()).inc(waited)
                    return await asyncio.to_thread(fn)
        except ApiException as exc:
            if exc.status not in (404, 409):
                self.metrics.api_errors.labels(verb, resource).inc()
            raise
        except _NO_ANSWER as exc:
            self.metrics.api_errors.labels(verb, resource).inc()
            raise ApiFailure(0, f"no answer from the API server: {exc}") from exc
        raise AssertionError("unreachable")

    async def create_job(self, manifest: dict[str, Any], *, not_after: float | None = None) -> dict[str, Any]:
        """Create a Job. ``not_after`` (monotonic seconds) ends its claim's create window: it is checked in the
        sending thread just before each try goes out, so a pause anywhere before the send (a queue of API
        calls, GC, SIGSTOP, a retry after a slow answer) cannot create the Job late; ``ClaimExpired`` then."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]

        def send() -> dict[str, Any]:
            if not_after is not None and time.monotonic() > not_after:
                raise ClaimExpired(name)
            _window.not_after, _window.name = not_after, name  # checked again at each socket write
            try:
                answer = self.batch.create_namespaced_job(
                    ns,
                    manifest,
                    field_manager=FIELD_MANAGER,
                    _request_timeout=self.timeouts,
                    _preload_content=False,
                )
            finally:
                _window.not_after = None
            return _json(answer)

        try:
            return await self._call("create", "jobs", send, priority=Priority.LAUNCH)
        except ApiException as exc:
            if exc.status == 409:
                try:
                    existing = await self._call(
                        "get",
                        "jobs",
                        lambda: _json(
                            self.batch.read_namespaced_job(
                                name, ns, _request_timeout=self.timeouts, _preload_content=False
                            )
                        ),
                        priority=Priority.LAUNCH,
                    )
                except ApiException:
                    existing = None
                raise AlreadyExists(existing) from exc
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc

    async def delete_job(self, namespace: str, name: str, *, uid: str = "") -> None:
        """Delete a Job (its pods in the background), only if it is still the object with ``uid``: a Job
        created again under the same name since is left alone."""
        options = client.V1DeleteOptions(
            propagation_policy="Background", preconditions=client.V1Preconditions(uid=uid) if uid else None
        )
        try:
            await self._call(
                "delete",
                "jobs",
                lambda: self.batch.delete_namespaced_job(
                    name, namespace, body=options, _request_timeout=self.timeouts
                ),
            )
        except ApiException as exc:
            if exc.status == 409:
                log.info(
                    "Job %s/%s is another object now (uid precondition); not deleting it", namespace, name
                )
                return
            if exc.status != 404:
                raise ApiFailure(exc.status or 0, api_message(exc)) from exc

    async def patch_status(
        self,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        resource_version: str,
        launch: bool = False,
        sent: list[float] | None = None,
    ) -> dict[str, Any]:
        """Merge-patch status, only if the object is still the version we decided on (else 409 Conflict).
        ``launch``: this write claims attempts to start, so it goes ahead of bookkeeping when the budget is
        short. ``sent`` gets the monotonic instant each try went out (after any wait for the rate limit): a
        claim cannot have been written before its first try, so its create window may start there.

        A resourceVersion precondition, not a uid one: the status subresource drops metadata from the patch
        before checking a uid, but honours the resourceVersion. It also refuses a decision taken on a spec
        that has changed since, or on an object deleted and created again under the same name.
        """
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}

        def send() -> Any:
            if sent is not None:
                sent.append(time.monotonic())
            return self.custom.patch_namespaced_custom_object_status(
                model.GROUP,
                model.VERSION,
                namespace,
                model.PLURAL,
                name,
                body,
                field_manager=FIELD_MANAGER,
                _request_timeout=self.timeouts,
            )

        try:
            result = await self._call(
                "patch",
                "scheduledtasks/status",
                send,
                priority=Priority.LAUNCH if launch else Priority.BOOKKEEPING,
            )
        except ApiException as exc:
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc
        return dict(result)

    async def post_event(self, manifest: dict[str, Any]) -> None:
        """Post an Event (best effort: a failure is logged, never raised; the status is already written)."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            await self._call(
                "create",
                "events",
                lambda: self.core.create_namespaced_event(ns, manifest, _request_timeout=self.timeouts),
            )
        except ApiFailure as exc:
            log.warning("could not post event %s/%s: %s", ns, name, exc.message)
        except ApiException as exc:
            if exc.status != 409:
                log.warning("could not post event %s/%s: %s", ns, name, api_message(exc))
                return
            await self._count_again(manifest)

    async def _count_again(self, manifest: dict[str, Any]) -> None:
        """The same event again: count it on the existing one instead of adding another."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            old = await self._call(
                "get",
                "events",
                lambda: self.core.read_namespaced_event(name, ns, _request_timeout=self.timeouts),
            )
            patch = {"count": (old.count or 1) + 1, "lastTimestamp": manifest["lastTimestamp"]}
            await self._call(
                "patch",
                "events",
                lambda: self.core.patch_namespaced_event(name, ns, patch, _request_timeout=self.timeouts),
            )
        except ApiException as exc:
            log.warning("could not update event %s/%s: %s", ns, name, api_message(exc))
        except ApiFailure as exc:
            log.warning("could not update event %s/%s: %s", ns, name, exc.message)

    async def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ScheduledTask as the API server has it now, or None when it is gone."""
        try:
            found = await self._call(
                "get",
                "scheduledtasks",
                lambda: self.custom.get_namespaced_custom_object(
                    model.GROUP, model.VERSION, namespace, model.PLURAL, name, _request_timeout=self.timeouts
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc
        return dict(found)

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease as JSON, or None when it does not exist."""
        try:
            lease = await self._call(
                "get",
                "leases",
                lambda: self.coordination.read_namespaced_lease(
                    name, namespace, _request_timeout=self.timeouts
                ),
                priority=Priority.ELECTION,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc
        result: dict[str, Any] = self.api.sanitize_for_serialization(lease)
        return result

    async def write_lease(
        self, namespace: str, name: str, spec: dict[str, Any], *, resource_version: str
    ) -> dict[str, Any] | None:
        """Create the Lease (no ``resource_version``) or replace the version read; None when another
        writer came first (409 Conflict, or AlreadyExists)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": namespace,
                **({"resourceVersion": resource_version} if resource_version else {}),
            },
            "spec": spec,
        }
        try:
            if resource_version:
                lease = await self._call(
                    "update",
                    "leases",
                    lambda: self.coordination.replace_namespaced_lease(
                        name, namespace, body, field_manager=FIELD_MANAGER, _request_timeout=self.timeouts
                    ),
                    priority=Priority.ELECTION,
                )
            else:
                lease = await self._call(
                    "create",
                    "leases",
                    lambda: self.coordination.create_namespaced_lease(
                        namespace, body, field_manager=FIELD_MANAGER, _request_timeout=self.timeouts
                    ),
                    priority=Priority.ELECTION,
                )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc
        result: dict[str, Any] = self.api.sanitize_for_serialization(lease)
        return result

    async def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        """The pods of one Job, as plain JSON, newest first."""
        pods = await self._list(
            "pods",
            lambda: self.core.list_namespaced_pod(
                namespace,
                label_selector=f"batch.kubernetes.io/job-name={job_name}",
                _request_timeout=self.timeouts,
                _preload_content=False,
            ),
        )
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)

    async def job_warnings(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        """Warning Events about one Job (the Job controller's FailedCreate says why no pod exists)."""
        return await self._list(
            "events",
            lambda: self.core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=Job,involvedObject.name={job_name},type=Warning",
                _request_timeout=self.timeouts,
                _preload_content=False,
            ),
        )

    async def _list(self, resource: str, fn: Callable[[], Any]) -> list[dict[str, Any]]:
        """One list request (``fn`` asks for the raw answer); its items as plain JSON."""
        try:
            found = await self._call("list", resource, lambda: _json(fn()))
        except ApiException as exc:
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    async def attempt_result(self, namespace: str, job_name: str) -> tuple[str, int | None]:
        """The handler's message and exit code from the newest pod of a finished Job ("" when it left none).

        Raises ApiFailure when the pods cannot be read now: the run is then recorded on a later pass, with its
        message, rather than now without it.
        """
        for pod in await self.job_pods(namespace, job_name):
            msg, code = manifests.termination_message(pod)
            if msg or code is not None:
                return msg, code
        return "", None


def api_message(exc: ApiException) -> str:
    """The API server's own message from a failed request (its Status body), else the HTTP reason."""
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
