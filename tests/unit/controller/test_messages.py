"""Handler messages of finished attempts: read once from their pods, held within a count and a size."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cronlet._controller import messages
from cronlet._core.model import ActiveRun, TaskStatus
from cronlet._core.views import JobObservation, JobState, TaskView

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _view(*jobs: str) -> TaskView:
    active = [ActiveRun(jobName=j, scheduledTime="2026-01-01T00:00:00Z", attempt=1) for j in jobs]
    return TaskView(
        namespace="ns", name="t", uid="u", generation=1, created=T0, spec={}, status=TaskStatus(active=active)
    )


def _job(name: str, state: JobState = JobState.SUCCEEDED) -> JobObservation:
    return JobObservation(
        name=name, owner_uid="u", run_id=name, attempt=1, scheduled_time=T0, created=T0, state=state
    )


class Pods:
    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.reads: list[str] = []

    async def read(self, namespace: str, job: str) -> tuple[str, int | None]:
        self.reads.append(job)
        return job[0] * self.sizes.get(job, 3), 0


def _ask(cache: messages.MessageCache, *names: str) -> dict[str, str]:
    return asyncio.run(cache.for_task(_view(*names), [_job(n) for n in names]))


def test_a_message_is_read_once_and_only_for_finished_attempts() -> None:
    pods = Pods({})
    cache = messages.MessageCache(pods.read)
    view = _view("a", "b")
    found = asyncio.run(cache.for_task(view, [_job("a"), _job("b", JobState.ACTIVE)]))
    assert found == {"a": "aaa"}
    asyncio.run(cache.for_task(view, [_job("a"), _job("b", JobState.ACTIVE)]))
    assert pods.reads == ["a"]


def test_the_oldest_go_first_past_the_count() -> None:
    pods = Pods({})
    cache = messages.MessageCache(pods.read, limit=2)
    for name in ("a", "b", "c"):
        _ask(cache, name)
    _ask(cache, "b")
    _ask(cache, "a")
    assert pods.reads == ["a", "b", "c", "a"]  # b and c were held; a had gone


def test_the_oldest_go_first_past_the_size_and_the_one_just_read_is_kept() -> None:
    pods = Pods({"a": 400, "b": 400, "c": 4096})
    cache = messages.MessageCache(pods.read, max_chars=1000)
    _ask(cache, "a")
    _ask(cache, "b")
    assert cache.chars == 800
    assert _ask(cache, "c") == {"c": "c" * 4096}  # larger than the whole bound: still given, and held alone
    assert cache.chars == 4096
    _ask(cache, "a")
    assert pods.reads == ["a", "b", "c", "a"]
    assert cache.chars == 400
