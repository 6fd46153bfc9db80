"""Handler messages of finished attempts, read from their pods once and kept in a bounded cache.

A finished attempt's message (the termination message the executor wrote) is needed by the pass that
records the run, and again if that pass's status write is lost; it never changes, so it is read once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from cronlet._core.views import JobObservation, JobState, TaskView

Reader = Callable[[str, str], Awaitable[tuple[str, int | None]]]
LIMIT = 10000  # entries; old ones are never needed again once their run is recorded


class MessageCache:
    def __init__(self, read: Reader, *, limit: int = LIMIT) -> None:
        self._read = read
        self._limit = limit
        self._cache: dict[tuple[str, str], tuple[str, int | None]] = {}

    async def for_task(self, view: TaskView, jobs: Sequence[JobObservation]) -> dict[str, str]:
        """Messages of the finished attempts that a run of ``view`` still points at, by Job name."""
        by_name = {j.name: j for j in jobs}
        out: dict[str, str] = {}
        for entry in view.status.active:
            job = by_name.get(entry.job_name)
            if job is None or job.state is JobState.ACTIVE:
                continue
            ident = (view.namespace, job.name)
            if ident not in self._cache:
                self._cache[ident] = await self._read(view.namespace, job.name)
                if len(self._cache) > self._limit:
                    self._cache.pop(next(iter(self._cache)))
            out[job.name] = self._cache[ident][0]
        return out
