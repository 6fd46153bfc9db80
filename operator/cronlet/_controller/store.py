"""The latest known state of every task and its Jobs, fed by the watches and by our own write responses.

Keeps the newest copy of each object (by resourceVersion), so a late watch event never replaces what a
write response already told us. Holds task bodies without what the planner never reads (``slim``) and the
planner's view of each Job. Converges to each list of a watch (``converge_tasks``, ``converge_jobs``): nothing
relies on a DELETED event arriving. No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

from cronlet._core import manifests
from cronlet._core.views import JobObservation

Key = tuple[str, str]  # (namespace, task name)
# The API server's and kubectl's bookkeeping, about half of a task's body: nothing of Cronlet reads it.
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """A task body without ``metadata.managedFields`` and kubectl's last-applied copy of the whole object."""
    meta = body.get("metadata") or {}
    kept = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and not _DROPPED_ANNOTATIONS.isdisjoint(annotations):
        kept["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
    return {**body, "metadata": kept}


def resource_version(body: dict[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class TaskBodies(MutableMapping[Key, dict[str, Any]]):
    """Task bodies by key, each held as its compact JSON text with its uid and resourceVersion beside it.

    Parsed, a task's body costs several times its JSON in dicts and strings: tracemalloc found 7 KiB a task
    of 1 KiB parameters held as dicts (its JSON: about 2.1 KiB), and holding text took the operator at rest
    with 10,000 such tasks from 209 to 157 MiB RSS (``tools/bench_scale.py --phases rest --sizes 10000``).
    A body is read once per decision and parsed anew then (about 12 us; writing it, 15 us); what the store
    looks at in every event (uid, resourceVersion, namespace) needs no parse. Each read is a fresh copy:
    changing it changes nothing held.
    """

    def __init__(self) -> None:
        self._held: dict[Key, tuple[str | None, int, str]] = {}

    def __getitem__(self, key: Key) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self._held[key][2])
        return body

    def __setitem__(self, key: Key, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        text = json.dumps(body, separators=(",", ":"))  # ASCII only (escaped): one byte a character
        self._held[key] = (meta.get("uid"), resource_version(body), text)

    def __delitem__(self, key: Key) -> None:
        del self._held[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def uid(self, key: Key) -> str | None:
        """The uid of the task held under ``key`` (None: none held, or one without a uid)."""
        held = self._held.get(key)
        return held[0] if held is not None else None

    def version(self, key: Key) -> int | None:
        """The resourceVersion of the task held under ``key``, or None when none is held."""
        held = self._held.get(key)
        return held[1] if held is not None else None

    def versions(self) -> Iterator[tuple[Key, int]]:
        for key, (_, version, _) in self._held.items():
            yield key, version


class Store:
    """Tasks by key, and each task's Jobs by name."""

    def __init__(self) -> None:
        self.tasks = TaskBodies()
        self.jobs: dict[Key, dict[str, JobObservation]] = {}
        self.job_rv: dict[tuple[str, str], int] = {}
        # Namespace labels, watched only when the operator allows podTemplate by namespace label.
        self.namespace_labels: dict[str, dict[str, str]] = {}

    def put_task(self, body: dict[str, Any]) -> Key:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        held = self.tasks.version(key)
        same_object = held is not None and self.tasks.uid(key) == meta.get("uid")
        if not same_object or held is None or resource_version(body) >= held:
            self.tasks[key] = slim(body)
        return key

    def task_is_news(self, body: dict[str, Any]) -> bool:
        """Whether this copy of a task is newer than the one held (or the first of its object): the echo of
        our own write, whose answer is held already, is not."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        held = self.tasks.version(key)
        if held is None or self.tasks.uid(key) != meta.get("uid"):
            return True
        return resource_version(body) > held

    def job_is_news(self, body: dict[str, Any]) -> bool:
        """Whether this copy of a Job tells the planner something it does not hold: most of a Job's updates
        (pod counts, finalizers, the echo of our create) change nothing it reads."""
        key = manifests.task_key_of_job(body)
        observed = manifests.observe_job(body)
        if key is None or observed is None:
            return False
        held = self.jobs.get(key, {}).get(observed.name)
        if held is None:
            return True
        if resource_version(body) < self.job_rv.get((key[0], observed.name), 0):
            return False
        return observed != held

    def drop_task(self, key: Key, *, uid: str | None = None) -> None:
        """Forget a task; with ``uid``, only that object of the name (a DELETED event of a task deleted and
        created again can be handled after the new one's ADDED: kopf handles objects by uid, not in order)."""
        if key in self.tasks and (uid is None or self.tasks.uid(key) == uid):
            del self.tasks[key]

    def put_job(self, body: dict[str, Any]) -> Key | None:
        key = manifests.task_key_of_job(body)
        observed = manifests.observe_job(body)
        if key is None or observed is None:
            return key
        ident = (key[0], observed.name)
        if resource_version(body) < self.job_rv.get(ident, 0):
            return key  # an older copy than one we already hold
        self.job_rv[ident] = resource_version(body)
        self.jobs.setdefault(key, {})[observed.name] = observed
        return key

    def drop_job(self, body: dict[str, Any]) -> Key | None:
        """Forget a deleted Job, unless the Job held under its name is another object (created again)."""
        key = manifests.task_key_of_job(body)
        name = body["metadata"]["name"]
        held = self.jobs.get(key, {}).get(name) if key is not None else None
        if held is not None and held.uid and held.uid != body["metadata"].get("uid"):
            return None
        if key is not None:
            self.jobs.get(key, {}).pop(name, None)
            if not self.jobs.get(key):
                self.jobs.pop(key, None)
            self.job_rv.pop((key[0], name), None)
        return key

    def put_namespace(self, body: dict[str, Any]) -> None:
        """Keep a namespace's labels (the namespace's event handler wakes its tasks: their podTemplate may be
        allowed now, or no longer)."""
        meta = body["metadata"]
        self.namespace_labels[meta["name"]] = dict(meta.get("labels") or {})

    def drop_namespace(self, name: str) -> None:
        self.namespace_labels.pop(name, None)

    def converge_namespaces(self, listed: frozenset[str]) -> list[Key]:
        """Forget the namespaces a list did not return; return the keys of their tasks."""
        gone = {n for n in self.namespace_labels if n not in listed}
        for name in gone:
            self.drop_namespace(name)
        return [key for key in self.tasks if key[0] in gone] if gone else []

    def tasks_in(self, namespace: str) -> list[Key]:
        return [key for key in self.tasks if key[0] == namespace]

    def mark_deleting(self, key: Key, name: str) -> None:
        jobs = self.jobs.get(key, {})
        if name in jobs:
            old = jobs[name]
            jobs[name] = JobObservation(**{**old.__dict__, "deleting": True})

    def converge_tasks(
        self, *, namespace: str | None, listed: frozenset[Key], list_version: int
    ) -> list[Key]:
        """Drop the tasks a list did not return (in its namespace, or all for None) that are not newer than
        the list; return their keys."""
        gone = [
            key
            for key, version in self.tasks.versions()
            if (namespace is None or key[0] == namespace) and key not in listed and version <= list_version
        ]
        for key in gone:
            self.drop_task(key)
        return gone

    def converge_jobs(
        self, *, namespace: str | None, listed: frozenset[tuple[str, str]], list_version: int
    ) -> list[Key]:
        """Drop the Jobs a list did not return and that are not newer than it; return their tasks' keys."""
        affected: list[Key] = []
        for key, jobs in list(self.jobs.items()):
            if namespace is not None and key[0] != namespace:
                continue
            for name in list(jobs):
                ident = (key[0], name)
                if ident not in listed and self.job_rv.get(ident, 0) <= list_version:
                    del jobs[name]
                    self.job_rv.pop(ident, None)
                    if key not in affected:
                        affected.append(key)
            if not jobs:
                del self.jobs[key]
        return affected
