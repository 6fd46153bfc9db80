"""The only module that talks to the Kubernetes API for writes and point reads.

Each call is one request (retried briefly on transient errors with tenacity), run in a worker thread so the
event loop never blocks. Watching is kopf's; deciding is ``_core.decision``'s; this module only sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity
from cronlet._controller.metrics import Metrics
from cronlet._core import manifests, model
from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("cronlet.kube")
FIELD_MANAGER = "cronlet"
T = TypeVar("T")


class AlreadyExists(Exception):
    def __init__(self, body: dict[str, Any] | None) -> None:
        super().__init__("already exists")
        self.body = body


class ApiFailure(Exception):
    """A request that failed for good (after retries). ``status`` is the HTTP status, 0 for no answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (0, 429, 500, 502, 503, 504) or exc.status is None
    return isinstance(exc, (OSError, ConnectionError))


class Kube:
    def __init__(self, api: client.ApiClient, *, metrics: Metrics) -> None:
        self.api = api
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.metrics = metrics

    async def _call(self, verb: str, resource: str, fn: Callable[[], T]) -> T:
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_transient),
            wait=tenacity.wait_exponential(multiplier=0.2, max=3),
            stop=tenacity.stop_after_attempt(4),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await asyncio.to_thread(fn)
        except ApiException as exc:
            if exc.status not in (404, 409):
                self.metrics.api_errors.labels(verb, resource).inc()
            raise
        except (OSError, ConnectionError) as exc:
            self.metrics.api_errors.labels(verb, resource).inc()
            raise ApiFailure(0, str(exc)) from exc
        raise AssertionError("unreachable")

    async def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            return await self._call(
                "create",
                "jobs",
                lambda: self.api.sanitize_for_serialization(
                    self.batch.create_namespaced_job(ns, manifest, field_manager=FIELD_MANAGER)
                ),
            )
        except ApiException as exc:
            if exc.status == 409:
                try:
                    existing = await self._call(
                        "get",
                        "jobs",
                        lambda: self.api.sanitize_for_serialization(self.batch.read_namespaced_job(name, ns)),
                    )
                except ApiException:
                    existing = None
                raise AlreadyExists(existing) from exc
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc

    async def delete_job(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                "delete",
                "jobs",
                lambda: self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background"),
            )
        except ApiException as exc:
            if exc.status != 404:
                raise ApiFailure(exc.status or 0, api_message(exc)) from exc

    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any], *, resource_version: str
    ) -> dict[str, Any]:
        """Merge-patch status, only if the object is still the version we decided on (else 409 Conflict).

        A resourceVersion precondition, not a uid one: the status subresource drops metadata from the patch
        before checking a uid, but honours the resourceVersion. It also refuses a decision taken on a spec
        that has changed since, or on an object deleted and created again under the same name.
        """
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        try:
            result = await self._call(
                "patch",
                "scheduledtasks/status",
                lambda: self.custom.patch_namespaced_custom_object_status(
                    model.GROUP,
                    model.VERSION,
                    namespace,
                    model.PLURAL,
                    name,
                    body,
                    field_manager=FIELD_MANAGER,
                ),
            )
        except ApiException as exc:
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc
        return dict(result)

    async def post_event(self, manifest: dict[str, Any]) -> None:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            await self._call("create", "events", lambda: self.core.create_namespaced_event(ns, manifest))
        except (
            ApiFailure
        ) as exc:  # no answer: an Event is not worth failing a reconcile whose status is written
            log.warning("could not post event %s/%s: %s", ns, name, exc.message)
            return
        except ApiException as exc:
            if exc.status != 409:
                log.warning("could not post event %s/%s: %s", ns, name, api_message(exc))
                return
            # The same event again: count it on the existing one instead of adding another.
            try:
                old = await self._call("get", "events", lambda: self.core.read_namespaced_event(name, ns))
                patch = {"count": (old.count or 1) + 1, "lastTimestamp": manifest["lastTimestamp"]}
                await self._call("patch", "events", lambda: self.core.patch_namespaced_event(name, ns, patch))
            except ApiException as exc2:
                log.warning("could not update event %s/%s: %s", ns, name, api_message(exc2))

    async def attempt_result(self, namespace: str, job_name: str) -> tuple[str, int | None]:
        """The handler's message and exit code from the newest pod of a finished Job ("" when it left none).

        Raises ApiFailure when the pods cannot be read now: the run is then recorded on a later pass, with its
        message, rather than now without it.
        """
        try:
            pods = await self._call(
                "list",
                "pods",
                lambda: self.core.list_namespaced_pod(
                    namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
                ),
            )
        except ApiException as exc:
            raise ApiFailure(exc.status or 0, api_message(exc)) from exc
        items = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp, reverse=True)
        for pod in items:
            msg, code = manifests.termination_message(self.api.sanitize_for_serialization(pod))
            if msg or code is not None:
                return msg, code
        return "", None


def api_message(exc: ApiException) -> str:
    """The API server's own message from a failed request (its Status body), else the HTTP reason."""
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
