"""Re-lists reach the store: kopf's own continuous_watch, run through our wrapper, and the store converging.

kopf's list and watch requests are faked at the seams kopf itself has (``fetching.fetch_objs`` and
``watching.watch_objs``); everything between them is kopf's code of the pinned version, so a change there
fails this test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import fetching, watching
from kopf._cogs.structs import references

from cronlet._controller import listings, store

TASKS = references.Resource(group="cronlet.dev", version="v1alpha1", plural="scheduledtasks", namespaced=True)


def _body(namespace: str, name: str, version: int) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": str(version),
        }
    }


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[dict[str, Any]], str]]:
    """What the next list returns: chunks of objects and the list's resourceVersion."""
    pages: list[tuple[list[dict[str, Any]], str]] = []

    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        for chunk, version in pages:
            yield chunk, version

    async def watch_objs(**_: Any) -> AsyncIterator[dict[str, Any]]:
        return
        yield {}  # an async generator that ends at once

    monkeypatch.setattr(fetching, "fetch_objs", fetch_objs)
    monkeypatch.setattr(watching, "watch_objs", watch_objs)
    yield pages
    listings.uninstall()


async def _drain() -> list[Any]:
    paused = asyncio.get_running_loop().create_future()
    paused.set_result(None)  # makes kopf's watch loop end right after its listing
    items = []
    async for item in watching.continuous_watch(
        settings=kopf.OperatorSettings(), resource=TASKS, namespace=None, operator_pause_waiter=paused
    ):
        items.append(item)
    return items


def test_each_listing_is_reported_with_what_it_returned_and_its_version(
    fake_api: list[tuple[list[dict[str, Any]], str]],
) -> None:
    seen: list[listings.Listing] = []
    listings.install(seen.append)
    fake_api[:] = [([_body("a", "one", 5), _body("a", "two", 7)], "90"), ([_body("b", "three", 8)], "91")]
    items = asyncio.run(_drain())
    assert [i["type"] for i in items if isinstance(i, dict)] == [
        None,
        None,
        None,
    ]  # kopf's events pass through
    assert watching.Bookmark.LISTED in items
    assert seen == [
        listings.Listing("scheduledtasks", None, frozenset({("a", "one"), ("a", "two"), ("b", "three")}), 91)
    ]


def test_every_event_is_handed_over_in_stream_order_before_its_listing_is_reported(
    fake_api: list[tuple[list[dict[str, Any]], str]],
) -> None:
    order: list[Any] = []
    listings.install(
        lambda listing: order.append(("listed", sorted(listing.listed))),
        lambda plural, event: order.append((plural, event["type"], event["object"]["metadata"]["name"])),
    )
    fake_api[:] = [([_body("a", "one", 5)], "90"), ([_body("a", "two", 8)], "91")]
    asyncio.run(_drain())
    assert order == [
        ("scheduledtasks", None, "one"),
        ("scheduledtasks", None, "two"),
        ("listed", [("a", "one"), ("a", "two")]),
    ]


def test_an_empty_listing_is_reported_too(fake_api: list[tuple[list[dict[str, Any]], str]]) -> None:
    seen: list[listings.Listing] = []
    listings.install(seen.append)
    fake_api[:] = [([], "120")]
    asyncio.run(_drain())
    assert seen == [listings.Listing("scheduledtasks", None, frozenset(), 120)]


def test_the_store_drops_what_a_list_did_not_return_unless_it_is_newer() -> None:
    s = store.Store()
    s.put_task({**_body("a", "kept", 10), "spec": {}})
    s.put_task({**_body("a", "deleted-in-the-gap", 11), "spec": {}})
    s.put_task({**_body("a", "created-after-the-list", 200), "spec": {}})
    s.put_task({**_body("b", "other-namespace", 12), "spec": {}})
    gone = s.converge_tasks(namespace="a", listed=frozenset({("a", "kept")}), list_version=100)
    assert gone == [("a", "deleted-in-the-gap")]
    assert set(s.tasks) == {("a", "kept"), ("a", "created-after-the-list"), ("b", "other-namespace")}


def test_the_store_drops_jobs_deleted_in_a_gap_and_names_their_tasks() -> None:
    s = store.Store()

    def job(name: str, version: int) -> dict[str, Any]:
        return {
            "metadata": {
                "namespace": "a",
                "name": name,
                "resourceVersion": str(version),
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"cronlet.dev/run-id": "1", "cronlet.dev/attempt": "1"},
                "annotations": {"cronlet.dev/scheduled-time": "2026-01-01T00:00:00Z"},
                "ownerReferences": [
                    {"apiVersion": "cronlet.dev/v1alpha1", "kind": "ScheduledTask", "name": "t", "uid": "u"}
                ],
            }
        }

    s.put_job(job("t-1-1", 10))
    s.put_job(job("t-2-1", 300))
    affected = s.converge_jobs(namespace=None, listed=frozenset(), list_version=100)
    assert affected == [("a", "t")]
    assert set(s.jobs[("a", "t")]) == {"t-2-1"}  # created after the list: kept
