"""The store is fed from the watch streams in their order, and nothing is decided before every watch listed."""

from __future__ import annotations

import asyncio
from typing import Any

from cronlet._controller import listings, runtime, store
from cronlet._core.views import Tenancy


def task(name: str, version: int, *, uid: str = "") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "a",
            "name": name,
            "uid": uid or f"uid-{name}",
            "resourceVersion": str(version),
        },
        "spec": {"schedule": "@daily", "handler": "echo"},
    }


def job(name: str, version: int, *, labelled: bool = True) -> dict[str, Any]:
    labels = (
        {"cronlet.dev/task": "t", "cronlet.dev/run-id": "1", "cronlet.dev/attempt": "1"} if labelled else {}
    )
    return {
        "metadata": {
            "namespace": "a",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": str(version),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": labels,
            "annotations": {"cronlet.dev/scheduled-time": "2026-01-01T00:00:00Z"},
            "ownerReferences": [
                {"apiVersion": "cronlet.dev/v1alpha1", "kind": "ScheduledTask", "name": "t", "uid": "u"}
            ],
        }
    }


def intake(**kw: Any) -> runtime.Intake:
    return runtime.Intake(store.Store(), expected=kw.get("expected", set()))


# -- what the store holds ------------------------------------------------------------------------------------


def test_a_task_deleted_and_created_again_is_held_as_the_new_one_in_the_streams_order() -> None:
    i = intake()
    i.event("scheduledtasks", {"type": None, "object": task("t", 5, uid="old")})
    i.event("scheduledtasks", {"type": "DELETED", "object": task("t", 9, uid="old")})
    i.event("scheduledtasks", {"type": "ADDED", "object": task("t", 10, uid="new")})
    assert i.store.tasks[("a", "t")]["metadata"]["uid"] == "new"
    assert i.take_news("task", task("t", 10, uid="new"))


def test_the_echo_of_a_held_copy_is_no_news_and_a_newer_one_is() -> None:
    i = intake()
    i.event("scheduledtasks", {"type": None, "object": task("t", 5)})
    assert i.take_news("task", task("t", 5))
    assert not i.take_news("task", task("t", 5))  # taken once
    i.store.put_task(task("t", 7))  # the answer of our own write
    i.event("scheduledtasks", {"type": "MODIFIED", "object": task("t", 7)})  # its echo
    assert not i.take_news("task", task("t", 7))
    i.event("scheduledtasks", {"type": "MODIFIED", "object": task("t", 8)})
    assert i.take_news("task", task("t", 8))


def test_jobs_without_the_task_label_and_bookmarks_are_left_out() -> None:
    i = intake()
    i.event("jobs", {"type": "ADDED", "object": job("other", 3, labelled=False)})
    i.event("jobs", {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "4"}}})
    i.event("jobs", {"type": "ADDED", "object": job("t-1-1", 5)})
    assert set(i.store.jobs.get(("a", "t"), {})) == {"t-1-1"}
    i.event("jobs", {"type": "DELETED", "object": job("t-1-1", 6)})
    assert not i.store.jobs.get(("a", "t"))


# -- the listing barrier -------------------------------------------------------------------------------------


def test_listed_only_once_every_watch_has_listed() -> None:
    opts = runtime.Options(namespaces=["a", "b"], tenancy=Tenancy(pod_template_selector={"x": "y"}))
    expected = runtime.watched(opts)
    assert expected == {
        ("scheduledtasks", "a"),
        ("scheduledtasks", "b"),
        ("jobs", "a"),
        ("jobs", "b"),
        ("namespaces", None),
    }
    i = intake(expected=expected)
    for plural, ns in sorted(expected, key=str)[:-1]:
        i.ended(listings.Listing(plural, ns, frozenset(), 1))
        assert not i.listed.is_set()
    plural, ns = sorted(expected, key=str)[-1]
    i.ended(listings.Listing(plural, ns, frozenset(), 1))
    assert i.listed.is_set()
    i.ended(listings.Listing("jobs", "a", frozenset(), 2))  # a re-list later changes nothing
    assert i.listed.is_set()


def test_cluster_wide_watches_and_none_to_wait_for() -> None:
    assert runtime.watched(runtime.Options()) == {("scheduledtasks", None), ("jobs", None)}
    assert asyncio.run(asyncio.wait_for(intake().listed.wait(), 1)) is True


def test_a_listing_that_never_ends_is_named_in_a_warning_while_not_ready(caplog: Any) -> None:
    i = intake(expected={("scheduledtasks", "a"), ("jobs", "a")})
    i.ended(listings.Listing("jobs", "a", frozenset(), 1))

    async def wait_then_list() -> None:
        waiting = asyncio.create_task(i.wait_listed(say_every=0.02))
        for _ in range(500):  # until it has said so twice (a loaded machine is slow to wake)
            if len(caplog.records) >= 2:
                break
            await asyncio.sleep(0.01)
        assert not waiting.done()
        i.ended(listings.Listing("scheduledtasks", "a", frozenset(), 1))
        await asyncio.wait_for(waiting, 5)

    with caplog.at_level("WARNING", logger="cronlet"):
        asyncio.run(wait_then_list())
    said = [r.getMessage() for r in caplog.records]
    assert len(said) >= 2
    assert all("scheduledtasks in a" in text and "jobs" not in text for text in said)
