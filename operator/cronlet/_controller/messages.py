"""Handler messages of finished attempts, read from their pods once and kept in a bounded cache.

A finished attempt's message (the termination message the executor wrote) is needed by the pass that
records the run, and again if that pass's status write is lost; it never changes, so it is read once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from cronlet._core.views import JobObservation, JobState, TaskView

Reader = Callable[[str, str], Awaitable[tuple[str, int | None]]]
LIMIT = 10000  # entries; old ones are never needed again once their run is recorded
# Characters of messages held in all: a termination message can be 4 KiB, so 10,000 of them could hold 40 MiB.
# 2 MiB hold 500 such messages, far more than a burst has finished and not yet recorded at one time.
MAX_CHARS = 2 * 1024 * 1024


class MessageCache:
    """Oldest first out, past ``limit`` entries or ``max_chars`` characters of messages in all."""

    def __init__(self, read: Reader, *, limit: int = LIMIT, max_chars: int = MAX_CHARS) -> None:
        self._read = read
        self._limit = limit
        self._max_chars = max_chars
        self._chars = 0
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
            found = self._cache.get(ident)
            if found is None:
                found = await self._read(view.namespace, job.name)
                self._keep(ident, found)
            out[job.name] = found[0]
        return out

    def _keep(self, ident: tuple[str, str], found: tuple[str, int | None]) -> None:
        self._cache[ident] = found
        self._chars += len(found[0])
        while len(self._cache) > 1 and (len(self._cache) > self._limit or self._chars > self._max_chars):
            dropped = self._cache.pop(next(iter(self._cache)))
            self._chars -= len(dropped[0])

    @property
    def chars(self) -> int:
        """Characters of messages held now."""
        return self._chars
